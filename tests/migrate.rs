//! `pgsplit migrate` (issue 19, SPEC §10) against the real clusters: order, records, failures rolled back with file
//! and line, cross-target refusal, changed files, no-transaction files, concurrent runs, an unreachable target, single
//! mode, and the command line's exit codes and JSON.
//!
//! Each test has its own record table (`migrations.table`) and objects, so they run side by side.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{clusters, config_yaml, direct};
use pgsplit::config::Config;
use pgsplit::migrate::{self, MigrateError};

/// The test configuration with `migrations: { table: TABLE }` and `extra`.
fn config(table: &str, extra: &str) -> (Config, PathBuf) {
    let yaml = config_yaml("verify-full", &format!("migrations: {{ table: {table} }}\n{extra}"));
    let dir = clusters().dir.join(format!("migrate-{table}-{}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("routing.yaml");
    std::fs::write(&path, &yaml).unwrap();
    (pgsplit::config::load_file(&path).expect("config loads"), dir)
}

/// Writes migration files under `dir/migrations`.
fn files(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    let root = dir.join("migrations");
    for (name, sql) in files {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, sql).unwrap();
    }
    root
}

async fn primary(sql: &str) -> String {
    direct(&clusters().primary, "handled_primary", sql).await
}

async fn data(sql: &str) -> String {
    direct(&clusters().data, "handled_data", sql).await
}

fn applied(runs: &[migrate::TargetRun], target: &str) -> Vec<String> {
    runs.iter().filter(|r| r.target == target).flat_map(|r| r.applied.iter().map(|a| a.file.clone())).collect()
}

fn states(st: &[migrate::TargetStatus], target: &str) -> Vec<(String, &'static str)> {
    st.iter().filter(|s| s.target == target).flat_map(|s| s.migrations.iter().map(|m| (m.file.clone(), m.state))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_in_order_once_each_on_their_target_and_are_recorded() {
    let (config, dir) = config("mig1_records", "");
    let root = files(
        &dir,
        &[
            ("primary/001_table.sql", "create table config.mig1 (id int);"),
            ("primary/002_two.sql", "insert into config.mig1 values (2);"),
            ("primary/10_ten.sql", "insert into config.mig1 values (10);"),
            ("data/001_table.sql", "create table workspace.mig1 (id int);\ninsert into workspace.mig1 values (1);"),
        ],
    );
    let runs = migrate::apply(&config, &root, &migrate::Options::default()).await.unwrap();
    assert!(runs.iter().all(|r| r.error.is_none()), "{runs:?}");
    assert_eq!(applied(&runs, "primary"), ["primary/001_table.sql", "primary/002_two.sql", "primary/10_ten.sql"]);
    assert_eq!(applied(&runs, "data"), ["data/001_table.sql"]);
    assert_eq!(primary("select string_agg(id::text, ',' order by id) from config.mig1").await, "2,10");
    assert_eq!(data("select count(*) from workspace.mig1").await, "1");
    // Recorded on each target, in the first schema it owns, with checksum, time and duration.
    assert_eq!(
        primary("select string_agg(target || '/' || version || '_' || name, ',' order by version::int) from config.mig1_records where length(checksum) = 64 and applied_at <= now() and duration_ms >= 0").await,
        "primary/001_table,primary/002_two,primary/10_ten"
    );
    assert_eq!(data("select target || '/' || version from workspace.mig1_records").await, "data/001");
    // Again: nothing to do.
    let runs = migrate::apply(&config, &root, &migrate::Options::default()).await.unwrap();
    assert!(runs.iter().all(|r| r.applied.is_empty() && r.error.is_none()), "{runs:?}");
    let st = migrate::status(&config, &root, &migrate::Options::default()).await.unwrap();
    assert!(st.iter().all(|s| !s.needs_attention()), "{st:?}");
    assert_eq!(states(&st, "primary").iter().filter(|(_, s)| *s == "applied").count(), 3);

    // A new file: pending; a dry run says so and applies nothing.
    files(&dir, &[("primary/011_eleven.sql", "insert into config.mig1 values (11);")]);
    let st = migrate::status(&config, &root, &migrate::Options::default()).await.unwrap();
    assert_eq!(states(&st, "primary").last(), Some(&("primary/011_eleven.sql".to_owned(), "pending")));
    assert!(st.iter().any(|s| s.needs_attention()));
    let dry = migrate::apply(&config, &root, &migrate::Options { dry_run: true, target: None }).await.unwrap();
    assert_eq!(applied(&dry, "primary"), ["primary/011_eleven.sql"]);
    assert_eq!(primary("select count(*) from config.mig1").await, "2", "a dry run runs nothing");
    migrate::apply(&config, &root, &migrate::Options::default()).await.unwrap();
    assert_eq!(primary("select count(*) from config.mig1").await, "3");

    // A file changed since it was applied: status says so; migrate refuses that target.
    files(&dir, &[("primary/002_two.sql", "insert into config.mig1 values (22);")]);
    let st = migrate::status(&config, &root, &migrate::Options::default()).await.unwrap();
    assert!(states(&st, "primary").contains(&("primary/002_two.sql".to_owned(), "changed")), "{st:?}");
    files(&dir, &[("primary/012_twelve.sql", "insert into config.mig1 values (12);")]);
    let runs = migrate::apply(&config, &root, &migrate::Options::default()).await.unwrap();
    let p = runs.iter().find(|r| r.target == "primary").unwrap();
    assert!(p.applied.is_empty() && p.error.as_deref().is_some_and(|e| e.contains("primary/002_two.sql")), "{p:?}");
    assert_eq!(primary("select count(*) from config.mig1").await, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_migration_is_rolled_back_not_recorded_and_stops_the_run_with_file_and_line() {
    let (config, dir) = config("mig2_records", "");
    let root = files(
        &dir,
        &[
            ("primary/001_table.sql", "create table config.mig2 (id int);"),
            ("primary/002_bad.sql", "insert into config.mig2 values (1);\ninsert into config.mig2 values (2);\n\nselect * from\n  config.mig2_nope;\n"),
            ("primary/003_after.sql", "insert into config.mig2 values (3);"),
            ("data/001_table.sql", "create table workspace.mig2 (id int);"),
        ],
    );
    let runs = migrate::apply(&config, &root, &migrate::Options::default()).await.unwrap();
    assert_eq!(applied(&runs, "primary"), ["primary/001_table.sql"]);
    let error = runs.iter().find(|r| r.target == "primary").and_then(|r| r.error.clone()).unwrap();
    assert!(error.starts_with("primary/002_bad.sql line 5: "), "{error}");
    assert!(error.contains("mig2_nope") && error.contains("42P01"), "{error}");
    assert_eq!(primary("select count(*) from config.mig2").await, "0", "rolled back");
    assert_eq!(primary("select string_agg(version, ',') from config.mig2_records").await, "001", "not recorded");
    let d = runs.iter().find(|r| r.target == "data").unwrap();
    assert!(d.applied.is_empty() && d.error.as_deref().is_some_and(|e| e.contains("earlier")), "the run stopped: {d:?}");
    assert_eq!(data("select to_regclass('workspace.mig2') is null").await, "t");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_naming_another_targets_schema_is_refused_before_anything_runs() {
    let (config, dir) = config("mig3_records", "");
    let root = files(
        &dir,
        &[
            ("primary/001_table.sql", "create table config.mig3 (id int);"),
            (
                "data/001_table.sql",
                "create table workspace.mig3 (id int);\n\ninsert into workspace.mig3\n  select id from config.users;",
            ),
        ],
    );
    match migrate::apply(&config, &root, &migrate::Options::default()).await {
        Err(e @ MigrateError::CrossTarget(_)) => {
            let text = e.to_string();
            assert!(
                text.starts_with("data/001_table.sql line 3: `insert into workspace.mig3 select id from config.users`"),
                "{text}"
            );
            assert!(text.contains("config.users, which target primary owns, but data/001_table.sql runs on data"), "{text}");
        }
        other => panic!("expected a refusal: {other:?}"),
    }
    assert_eq!(primary("select to_regclass('config.mig3') is null").await, "t", "nothing ran, on any target");
    assert_eq!(data("select to_regclass('workspace.mig3_records') is null").await, "t");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_transaction_migrations_run_statement_by_statement_and_are_recorded_after_the_last() {
    let (config, dir) = config("mig4_records", "");
    let root = files(
        &dir,
        &[
            ("primary/001_table.sql", "create table config.mig4 (id int, n int);"),
            ("primary/002_index.sql", "-- pgsplit: no-transaction\ncreate index concurrently mig4_id on config.mig4 (id);\ncreate index concurrently mig4_n on config.mig4 (n);\n"),
        ],
    );
    let runs = migrate::apply(&config, &root, &migrate::Options::default()).await.unwrap();
    assert!(runs.iter().all(|r| r.error.is_none()), "{runs:?}");
    assert_eq!(primary("select count(*) from pg_indexes where indexname in ('mig4_id', 'mig4_n')").await, "2");
    // Without the marker, the same statement fails as PostgreSQL fails it in a transaction, and nothing stays.
    files(
        &dir,
        &[(
            "primary/003_in_tx.sql",
            "create table config.mig4_b (id int);\ncreate index concurrently mig4_b_id on config.mig4_b (id);\n",
        )],
    );
    let runs = migrate::apply(&config, &root, &migrate::Options::default()).await.unwrap();
    let error = runs[0].error.clone().unwrap_or_default();
    assert!(error.starts_with("primary/003_in_tx.sql line 2: ") && error.contains("25001"), "{error}");
    assert_eq!(primary("select to_regclass('config.mig4_b') is null").await, "t");
    // A no-transaction file that fails half-way: what ran stays (as PostgreSQL leaves it), nothing is recorded.
    std::fs::remove_file(root.join("primary/003_in_tx.sql")).unwrap();
    files(&dir, &[("primary/003_half.sql", "-- pgsplit: no-transaction\ncreate index concurrently mig4_both on config.mig4 (id, n);\n\ncreate index concurrently mig4_x on config.mig4_nope (id);\n")]);
    let runs = migrate::apply(&config, &root, &migrate::Options::default()).await.unwrap();
    let error = runs[0].error.clone().unwrap_or_default();
    assert!(error.starts_with("primary/003_half.sql line 4: "), "{error}");
    assert_eq!(primary("select count(*) from pg_indexes where indexname = 'mig4_both'").await, "1");
    assert_eq!(primary("select string_agg(version, ',' order by version) from config.mig4_records").await, "001,002");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_at_once_apply_each_migration_once() {
    let (config, dir) = config("mig5_records", "");
    let root = files(
        &dir,
        &[
            ("primary/001_table.sql", "create table config.mig5 (id int);"),
            ("primary/002_slow.sql", "insert into config.mig5 values (1); select pg_sleep(0.5);"),
            ("primary/003_more.sql", "insert into config.mig5 values (3);"),
        ],
    );
    let options = migrate::Options::default();
    let (a, b) = tokio::join!(migrate::apply(&config, &root, &options), migrate::apply(&config, &root, &options));
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut all = applied(&a, "primary");
    all.extend(applied(&b, "primary"));
    all.sort();
    assert_eq!(all, ["primary/001_table.sql", "primary/002_slow.sql", "primary/003_more.sql"], "{a:?} {b:?}");
    assert_eq!(primary("select string_agg(id::text, ',' order by id) from config.mig5").await, "1,3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_is_skipped_and_reported_while_the_others_apply() {
    let c = clusters();
    let (config, dir) = config("mig6_records", "");
    // PRIMARY's URL on a port nobody listens on.
    let yaml = std::fs::read_to_string(dir.join("routing.yaml")).unwrap().replace(&format!(":{}/", c.primary.port()), ":1/");
    std::fs::write(dir.join("routing.yaml"), yaml).unwrap();
    let root = files(
        &dir,
        &[
            ("primary/001_table.sql", "create table config.mig6 (id int);"),
            ("data/001_table.sql", "create table workspace.mig6 (id int);"),
        ],
    );
    let out = Command::new(env!("CARGO_BIN_EXE_pgsplit"))
        .args(["migrate", "--config"])
        .arg(dir.join("routing.yaml"))
        .arg("--dir")
        .arg(&root)
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let primary_run = runs.as_array().unwrap().iter().find(|r| r["target"] == "primary").unwrap();
    assert_eq!(primary_run["skipped"], true);
    assert!(primary_run["error"].as_str().unwrap().contains("cannot reach primary"), "{primary_run}");
    let data_run = runs.as_array().unwrap().iter().find(|r| r["target"] == "data").unwrap();
    assert_eq!(data_run["applied"][0]["file"], "data/001_table.sql");
    assert_eq!(data("select to_regclass('workspace.mig6') is not null").await, "t");
    // `--target data` alone (the runbook's db:migrate:data): nothing to do there, PRIMARY not tried, exit 0.
    let out = Command::new(env!("CARGO_BIN_EXE_pgsplit"))
        .args(["migrate", "--target", "data", "--config"])
        .arg(dir.join("routing.yaml"))
        .arg("--dir")
        .arg(&root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "data (workspace.mig6_records): nothing to apply");
    let _ = config;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_single_mode_everything_applies_to_the_single_target_and_status_shows_it() {
    let (config, dir) = config("mig7_records", "mode: single\n");
    let root = files(
        &dir,
        &[
            ("primary/001_table.sql", "create table config.mig7 (id int);"),
            ("data/001_table.sql", "create table config.mig7_from_data (id int);"),
        ],
    );
    let runs = migrate::apply(&config, &root, &migrate::Options::default()).await.unwrap();
    assert_eq!(runs.len(), 1, "one target: {runs:?}");
    assert_eq!(applied(&runs, "primary"), ["primary/001_table.sql", "data/001_table.sql"]);
    assert_eq!(
        primary("select string_agg(target || '/' || version, ',' order by target desc) from config.mig7_records").await,
        "primary/001,data/001"
    );
    assert_eq!(primary("select to_regclass('config.mig7_from_data') is not null").await, "t");
    // status, from the command line: everything applied there, exit 0; a new file: pending, exit 1.
    let status = |json: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgsplit"));
        cmd.args(["migrate", "status", "--config"]).arg(dir.join("routing.yaml")).arg("--dir").arg(&root);
        if json {
            cmd.arg("--json");
        }
        cmd.output().unwrap()
    };
    let out = status(false);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("applied  data/001_table.sql") && text.contains("primary (config.mig7_records)"), "{text}");
    files(&dir, &[("data/002_more.sql", "create table config.mig7_more (id int);")]);
    let out = status(true);
    assert_eq!(out.status.code(), Some(1));
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let last = st[0]["migrations"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((last["file"].as_str(), last["state"].as_str()), (Some("data/002_more.sql"), Some("pending")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_schema_is_made_when_missing_and_function_bodies_keep_their_semicolons() {
    let (config, dir) = config("mig8_schema.records", "");
    let root = files(
        &dir,
        &[(
            "primary/001_atomic.sql",
            "create function config.mig8_f() returns int language sql\nbegin atomic\n  select 1;\n  select 2;\nend;",
        )],
    );
    let runs = migrate::apply(&config, &root, &migrate::Options::default()).await.unwrap();
    assert!(runs.iter().all(|r| r.error.is_none()), "{runs:?}");
    assert_eq!(runs[0].table, "mig8_schema.records");
    assert_eq!(primary("select config.mig8_f()").await, "2");
    assert_eq!(primary("select version from mig8_schema.records").await, "001");
    // The same number written another way is the same migration.
    std::fs::rename(root.join("primary/001_atomic.sql"), root.join("primary/1_atomic.sql")).unwrap();
    let st = migrate::status(&config, &root, &migrate::Options::default()).await.unwrap();
    assert_eq!(states(&st, "primary"), [("primary/1_atomic.sql".to_owned(), "applied")]);
}
