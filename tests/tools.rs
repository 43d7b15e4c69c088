//! Real clients through pgsplit: psql scripts and pgbench (initialise with COPY, then select-only with more clients
//! than the pool), plus the `pgsplit check` and `pgsplit route` commands.

mod common;

use std::process::Command;

use common::{clusters, config_yaml, direct, pg_tool, Proxy, APP_PASSWORD};

fn url(proxy: &Proxy) -> String {
    format!("postgresql://app:{APP_PASSWORD}@127.0.0.1:{}/handled?sslmode=disable", proxy.port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_script_routes_each_statement_and_reports_refusals() {
    let proxy = Proxy::split().await;
    let script = "
select current_database() as db from config.users limit 1;
\\copy workspace.imports (file_name, row_count) from stdin
psql-copy-a.csv\t10
psql-copy-b.csv\t20
\\.
select sum(row_count) from workspace.imports where file_name like 'psql-copy-%';
select * from config.users, workspace.imports;
select 'after refusal';
";
    let u = url(&proxy);
    let out = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(pg_tool("psql"))
            .args([u.as_str(), "-X", "-At", "-v", "ON_ERROR_STOP=0"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("psql runs");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("handled_primary"), "{stdout}\n{stderr}");
    assert!(stdout.contains("30"), "COPY through pgsplit: {stdout}\n{stderr}");
    assert!(stdout.contains("after refusal"), "{stdout}");
    assert!(stderr.contains("more than one target"), "{stderr}");
    assert_eq!(
        direct(&clusters().data, "handled_data", "select count(*) from workspace.imports where file_name like 'psql-copy-%'")
            .await,
        "2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_initialises_and_runs_select_only_with_more_clients_than_the_pool() {
    // pgbench's tables live in public (no routed schema): they go to the default target, here DATA.
    let yaml = config_yaml("verify-full", "").replace("default_target: primary", "default_target: data");
    let proxy = Proxy::start(&yaml).await;
    let u = url(&proxy);
    let out = tokio::task::spawn_blocking(move || {
        let init = Command::new(pg_tool("pgbench")).args(["-i", "-s", "1", "-q", u.as_str()]).output().expect("pgbench -i");
        assert!(init.status.success(), "pgbench -i: {}", String::from_utf8_lossy(&init.stderr));
        Command::new(pg_tool("pgbench"))
            .args(["-S", "-c", "16", "-j", "2", "-t", "200", "-n", u.as_str()])
            .output()
            .expect("pgbench -S")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("number of transactions actually processed: 3200/3200"), "{stdout}");
    assert!(stdout.contains("number of failed transactions: 0"), "{stdout}");
    assert_eq!(direct(&clusters().data, "handled_data", "select count(*) from public.pgbench_accounts").await, "100000");
    let (open, _) = proxy.app.backend(1).pool_state();
    assert!(open <= 10, "{open} server connections for 16 clients over a pool of 10");
}

fn write_config(name: &str, yaml: &str) -> std::path::PathBuf {
    let path = clusters().dir.join(name);
    std::fs::write(&path, yaml).unwrap();
    path
}

#[test]
fn check_command_reaches_both_targets_and_fails_on_a_bad_one() {
    let good = write_config("check-good.yaml", &config_yaml("verify-full", ""));
    let out = Command::new(env!("CARGO_BIN_EXE_pgsplit")).args(["check", "--config"]).arg(&good).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("primary: ok") && stdout.contains("TLS"), "{stdout}");
    assert!(stdout.contains("data: ok"), "{stdout}");

    let port = clusters().data.port();
    let bad = write_config("check-bad.yaml", &config_yaml("verify-full", "").replace(&format!(":{port}/"), ":1/"));
    let out = Command::new(env!("CARGO_BIN_EXE_pgsplit")).args(["check", "--config"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("data: FAILED"));
}

#[test]
fn sslmode_prefer_uses_tls_where_the_server_has_it_and_plain_tcp_where_not_and_pgsplit_config_names_the_file() {
    let port = clusters().data.port();
    let yaml =
        config_yaml("prefer", "").replace(&format!(":{port}/handled_data"), &format!(":{port}/handled_data?sslmode=prefer"));
    let path = write_config("check-prefer.yaml", &yaml);
    let out = Command::new(env!("CARGO_BIN_EXE_pgsplit")).arg("check").env("PGSPLIT_CONFIG", &path).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let line = |name: &str| stdout.lines().find(|l| l.starts_with(name)).unwrap_or_default().to_owned();
    assert!(line("primary:").contains("TLS"), "{stdout}");
    assert!(line("data:").contains("plain TCP"), "{stdout}");
    let out =
        Command::new(env!("CARGO_BIN_EXE_pgsplit")).arg("check").env("PGSPLIT_CONFIG", "/nonexistent/r.yaml").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/r.yaml"), "the environment names the file");
}

#[test]
fn check_command_reports_schemas_missing_on_their_target_or_present_on_another() {
    let yaml = config_yaml("verify-full", "")
        .replace("schemas: [config, customer]", "schemas: [config, customer, workspace]")
        .replace("schemas: [workspace, reference]", "schemas: [reference, not_there]");
    let path = write_config("check-schemas.yaml", &yaml);
    let out = Command::new(env!("CARGO_BIN_EXE_pgsplit")).args(["check", "--config"]).arg(&path).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("primary: schema workspace is routed here but does not exist"), "{stdout}");
    assert!(stdout.contains("data: schema workspace exists here too, but is routed to primary"), "{stdout}");
    assert!(stdout.contains("data: schema not_there is routed here but does not exist"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("3 schema problem(s) found"));
}

#[test]
fn check_command_reports_invalid_configuration_with_line_numbers() {
    let yaml = config_yaml("verify-full", "").replace("schemas: [workspace, reference]", "schemas: [workspace, config]");
    let path = write_config("check-invalid.yaml", &yaml);
    let out = Command::new(env!("CARGO_BIN_EXE_pgsplit")).args(["check", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("config") && stderr.contains(":1") || stderr.contains("line"), "{stderr}");
}

#[test]
fn route_command_prints_the_decision_as_json_and_exits_1_on_refusal() {
    let path = write_config("route.yaml", &config_yaml("verify-full", ""));
    let out = Command::new(env!("CARGO_BIN_EXE_pgsplit"))
        .args(["route", "--config"])
        .arg(&path)
        .arg("select * from workspace.imports")
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["target"], "data");
    assert_eq!(v["reason"], "relations");
    assert_eq!(v["relations"][0]["relation"], "workspace.imports");
    let out = Command::new(env!("CARGO_BIN_EXE_pgsplit"))
        .args(["route", "--config"])
        .arg(&path)
        .arg("select * from config.users, workspace.imports")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("more than one target"));
}

#[test]
fn route_command_resolves_unqualified_names_with_the_live_catalog() {
    let path = write_config("route-search-path.yaml", &config_yaml("verify-full", ""));
    let out = Command::new(env!("CARGO_BIN_EXE_pgsplit"))
        .args(["route", "--config"])
        .arg(&path)
        .args(["--search-path", "reference,public", "select * from countries"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["target"], "data");
    assert_eq!(v["relations"][0]["relation"], "reference.countries");
    // A name that exists nowhere on the path does not constrain the route.
    let out = Command::new(env!("CARGO_BIN_EXE_pgsplit"))
        .args(["route", "--config"])
        .arg(&path)
        .args(["--search-path", "reference", "select * from no_such_thing"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["target"].as_str(), v["reason"].as_str()), (Some("primary"), Some("default")));
}
