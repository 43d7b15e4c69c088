//! The admin console and the rollback switch (SPEC §6): SHOW, SET mode, RELOAD, PAUSE/RESUME, SIGHUP, the `mode`
//! command and SPLIT_DB_MODE, against the real clusters.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{clusters, config_yaml, direct, scalar, sqlstate, Proxy, APP_PASSWORD};
use tokio_postgres::SimpleQueryMessage;

const ADMIN_PASSWORD: &str = "admin-secret";

/// The test configuration with an admin user; `extra` at the top level.
fn admin_yaml(extra: &str) -> String {
    config_yaml("verify-full", extra)
        .replace("admin_users: []", "admin_users: [admin]")
        .replace("users:\n", &format!("users:\n  - {{ name: admin, password: \"{ADMIN_PASSWORD}\" }}\n"))
}

/// Writes `yaml` to a fresh file.
fn config_file(yaml: &str) -> std::path::PathBuf {
    let dir = clusters().dir.join(format!("admin-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("config dir");
    let path = dir.join("routing.yaml");
    std::fs::write(&path, yaml).expect("config");
    path
}

async fn connect_as(port: u16, user: &str, password: &str, db: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let dsn = format!("host=127.0.0.1 port={port} user={user} password={password} dbname={db} sslmode=disable");
    let (client, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

async fn admin(port: u16) -> tokio_postgres::Client {
    connect_as(port, "admin", ADMIN_PASSWORD, "pgsplit").await.expect("admin console login")
}

/// Rows of a simple query, as text.
async fn rows(c: &tokio_postgres::Client, sql: &str) -> Vec<Vec<String>> {
    let msgs = c.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}: {:?}", e.as_db_error()));
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some((0..r.len()).map(|i| r.get(i).unwrap_or("").to_owned()).collect()),
            _ => None,
        })
        .collect()
}

/// `rows` of `sql` once `ready` holds for them, or after 2 s (for figures a session on another worker thread updates
/// right after its reply).
async fn rows_once(c: &tokio_postgres::Client, sql: &str, ready: impl Fn(&[Vec<String>]) -> bool) -> Vec<Vec<String>> {
    for _ in 0..100 {
        let found = rows(c, sql).await;
        if ready(&found) {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    rows(c, sql).await
}

async fn mode(c: &tokio_postgres::Client) -> String {
    rows(c, "SHOW MODE").await[0][0].clone()
}

/// PRIMARY is the single target, the old combined database: it has DATA's tables too.
async fn primary_has_data_tables() {
    static DONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    DONE.get_or_init(|| async {
        direct(
            &clusters().primary,
            "handled_primary",
            "create schema workspace authorization pgsplit; create table workspace.imports (id serial primary key, \
             file_name text not null, row_count int not null, created_at timestamptz not null default now()); \
             alter table workspace.imports owner to pgsplit",
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn admin_console_shows_pools_clients_servers_stats_routes_config_mode_and_refuses_others() {
    let proxy = Proxy::start(&admin_yaml("")).await;
    let Err(err) = connect_as(proxy.port, "app", APP_PASSWORD, "pgsplit").await else { panic!("app is no admin") };
    assert_eq!(sqlstate(&err), "28000");
    let app = proxy.connect().await;
    assert_eq!(scalar(&app, "select count(*) >= 0 from workspace.imports").await, "t");
    let a = admin(proxy.port).await;

    let databases = rows(&a, "SHOW DATABASES").await;
    assert_eq!(databases.iter().map(|r| (r[0].as_str(), r[5].as_str())).collect::<Vec<_>>(), [("primary", "5"), ("data", "10")]);
    let pools = rows(&a, "SHOW POOLS").await;
    assert_eq!(
        pools.iter().map(|r| (r[0].as_str(), r[1].as_str())).collect::<Vec<_>>(),
        [("primary", "pgsplit"), ("data", "pgsplit")]
    );
    assert_eq!(mode(&a).await, "split");
    let routes = rows(&a, "show routes;").await;
    assert!(routes.contains(&vec!["workspace".to_owned(), "data".to_owned()]), "{routes:?}");
    assert!(routes.contains(&vec!["(default)".to_owned(), "primary".to_owned()]), "{routes:?}");
    let clients = rows(&a, "SHOW CLIENTS").await;
    assert!(clients.iter().any(|r| r[0] == "C" && r[1] == "app" && r[2] == "handled"), "{clients:?}");
    assert!(clients.iter().any(|r| r[1] == "admin" && r[2] == "pgsplit" && r[3] == "active"), "{clients:?}");
    let targets = rows(&a, "SHOW TARGETS").await;
    assert_eq!(targets.len(), 2);
    assert_eq!(targets[0][5], "verifyfull");
    // The connections the app's statement used, one row each, the PRIMARY one over TLS.
    let servers = rows(&a, "SHOW SERVERS").await;
    assert!(servers.iter().any(|r| r[0] == "S" && r[2] == "data" && r[16].is_empty()), "{servers:?}");
    app.simple_query("listen admin_sees_pins").await.unwrap();
    // The session counts its pin once the LISTEN's reply is on its way, on its own worker thread: the console,
    // on another, sees it within moments.
    let lists = rows_once(&a, "SHOW LISTS", |lists| lists.iter().any(|r| r[0] == "pinned_sessions" && r[1] == "1")).await;
    assert!(lists.iter().any(|r| r[0] == "pinned_sessions" && r[1] == "1"), "{lists:?}");
    let stats = rows(&a, "SHOW STATS").await;
    assert!(stats.iter().any(|r| r[0] == "data" && r[2].parse::<u64>().unwrap() >= 1), "{stats:?}");
    let config = rows(&a, "SHOW CONFIG").await;
    let text = format!("{config:?}");
    for secret in [APP_PASSWORD, ADMIN_PASSWORD, clusters().server_password.as_str()] {
        assert!(!text.contains(secret), "SHOW CONFIG shows a password: {text}");
    }
    assert!(config.iter().any(|r| r[0] == "targets.primary.url" && r[1].contains(":********@")), "{text}");

    let err = a.simple_query("SHOW NONSENSE").await.unwrap_err();
    assert_eq!(sqlstate(&err), "42601");
    let err = a.query("SHOW MODE", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "0A000", "extended protocol is refused");
    assert_eq!(mode(&a).await, "split", "the console goes on");
}

#[tokio::test]
async fn set_mode_moves_each_sessions_next_transaction_while_open_ones_finish_where_they_are() {
    primary_has_data_tables().await;
    let proxy = Proxy::start(&admin_yaml("")).await;
    let a = admin(proxy.port).await;
    let c = proxy.connect().await;
    c.simple_query("set application_name = 'follows-the-switch'").await.unwrap();
    let count = c.prepare("select current_database()::text, count(*) from workspace.imports").await.unwrap();
    c.simple_query("begin").await.unwrap();
    c.simple_query("insert into workspace.imports (file_name, row_count) values ('open-at-switch', 1)").await.unwrap();

    a.simple_query("SET mode = single").await.unwrap();
    assert_eq!(mode(&a).await, "single");
    assert_eq!(scalar(&c, "select current_database()").await, "handled_data", "the open transaction stays");
    c.simple_query("commit").await.unwrap();
    assert_eq!(
        direct(&clusters().data, "handled_data", "select count(*) from workspace.imports where file_name = 'open-at-switch'")
            .await,
        "1"
    );
    // The next transaction follows the new mode, with the session's settings and prepared statements.
    assert_eq!(scalar(&c, "select current_database()").await, "handled_primary");
    assert_eq!(scalar(&c, "show application_name").await, "follows-the-switch");
    let row = c.query_one(&count, &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "handled_primary", "a statement prepared in split mode follows single mode");

    a.simple_query("set mode to 'split'").await.unwrap();
    assert_eq!(mode(&a).await, "split");
    let row = c.query_one(&count, &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "handled_data", "and back");
    assert_eq!(scalar(&c, "select current_database() from customer.accounts limit 1").await, "handled_primary");
    let err = a.simple_query("SET mode = sideways").await.unwrap_err();
    assert_eq!(sqlstate(&err), "22023");
}

#[tokio::test]
async fn switching_modes_under_concurrent_writers_keeps_every_acknowledged_insert_exactly_once() {
    primary_has_data_tables().await;
    let proxy = Proxy::start(&admin_yaml("")).await;
    let a = admin(proxy.port).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let c = proxy.connect().await;
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let insert = c.prepare("insert into workspace.imports (file_name, row_count) values ($1, $2)").await.unwrap();
            let mut acknowledged = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) || n < 20 {
                let key = format!("switch-{w}-{n}");
                if n % 2 == 0 {
                    // An explicit transaction of two inserts: both land on one database.
                    c.simple_query("begin").await.unwrap();
                    c.simple_query(&format!("insert into workspace.imports (file_name, row_count) values ('{key}', 1)"))
                        .await
                        .unwrap();
                    c.execute(&insert, &[&key, &2i32]).await.unwrap();
                    c.simple_query("commit").await.unwrap();
                    acknowledged.push((key, 2));
                } else {
                    c.execute(&insert, &[&key, &1i32]).await.unwrap();
                    acknowledged.push((key, 1));
                }
                n += 1;
            }
            acknowledged
        }));
    }
    let mut switches = 0;
    let started = Instant::now();
    while switches < 20 || started.elapsed() < Duration::from_secs(2) {
        let to = if switches % 2 == 0 { "single" } else { "split" };
        a.simple_query(&format!("SET mode = {to}")).await.unwrap();
        switches += 1;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    a.simple_query("SET mode = split").await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut expected = Vec::new();
    for w in writers {
        expected.extend(w.await.expect("writer ran without errors"));
    }
    assert!(expected.len() >= 80);
    let count_on = |cluster: &'static pgsplit::cluster::Cluster, db: &'static str| async move {
        let out = direct(cluster, db, "select file_name || '=' || count(*) from workspace.imports where file_name like 'switch-%' group by file_name order by file_name").await;
        out.lines().map(|l| l.to_owned()).collect::<Vec<_>>()
    };
    let on_primary = count_on(&clusters().primary, "handled_primary").await;
    let on_data = count_on(&clusters().data, "handled_data").await;
    assert!(!on_primary.is_empty() && !on_data.is_empty(), "both modes served writes");
    let mut found = std::collections::HashMap::new();
    for line in on_primary.iter().chain(&on_data) {
        let (key, n) = line.rsplit_once('=').unwrap();
        assert!(found.insert(key.to_owned(), n.parse::<i64>().unwrap()).is_none(), "{key} is on both databases");
    }
    for (key, rows) in &expected {
        assert_eq!(found.get(key), Some(rows), "{key}: acknowledged rows must exist exactly once, on one database");
    }
    assert_eq!(found.len(), expected.len(), "nothing unacknowledged was written");
}

#[tokio::test]
async fn reload_applies_a_changed_file_and_rejects_a_broken_one() {
    let yaml = admin_yaml("");
    let path = config_file(&yaml);
    let proxy = Proxy::start_file(&path).await;
    let a = admin(proxy.port).await;
    assert!(connect_as(proxy.port, "late", "late-secret", "handled").await.is_err());

    let changed = yaml
        .replace("pool: { max: 10, checkout_timeout: 3s }", "pool: { max: 3, checkout_timeout: 3s }")
        .replace("users:\n", "users:\n  - { name: late, password: \"late-secret\" }\n")
        + "mode: single\n";
    std::fs::write(&path, &changed).unwrap();
    a.simple_query("RELOAD").await.unwrap();
    assert_eq!(mode(&a).await, "single");
    let databases = rows(&a, "SHOW DATABASES").await;
    assert_eq!((databases[1][0].as_str(), databases[1][5].as_str()), ("data", "3"));
    let late = connect_as(proxy.port, "late", "late-secret", "handled").await.expect("a user added by reload logs in");
    assert_eq!(scalar(&late, "select 1").await, "1");

    std::fs::write(&path, "listen: [this is not: valid").unwrap();
    let err = a.simple_query("RELOAD").await.unwrap_err();
    assert_eq!(sqlstate(&err), "F0000");
    assert_eq!(mode(&a).await, "single", "the running configuration stays");
    assert_eq!(scalar(&proxy.connect().await, "select 'still serving'").await, "still serving");

    let moved = changed.replace(&format!(":{}/", clusters().data.port()), ":1/");
    std::fs::write(&path, moved).unwrap();
    let err = a.simple_query("RELOAD").await.unwrap_err();
    assert!(err.as_db_error().unwrap().message().contains("restart"), "{err:?}");
    let databases = rows(&a, "SHOW DATABASES").await;
    assert_eq!(databases[1][5], "3");
}

#[tokio::test]
async fn pause_holds_new_transactions_of_its_target_until_resume_and_waits_for_running_ones() {
    let proxy = Proxy::start(&admin_yaml("")).await;
    let a = admin(proxy.port).await;
    let open = proxy.connect().await;
    open.simple_query("begin").await.unwrap();
    open.simple_query("select count(*) from workspace.imports").await.unwrap();

    let port = proxy.port;
    let pause = tokio::spawn(async move {
        let a = admin(port).await;
        a.simple_query("PAUSE data").await.unwrap();
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!pause.is_finished(), "PAUSE waits for the running transaction");
    open.simple_query("commit").await.unwrap();
    pause.await.unwrap();
    assert_eq!(rows(&a, "SHOW DATABASES").await[1][11], "1", "paused");

    let c = proxy.connect().await;
    let waiting = tokio::spawn(async move { scalar(&c, "select count(*) >= 0 from workspace.imports").await });
    let other = proxy.connect().await;
    assert_eq!(scalar(&other, "select 'primary unaffected' from customer.accounts limit 1").await, "primary unaffected");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "a new DATA transaction waits while DATA is paused");
    a.simple_query("RESUME data").await.unwrap();
    assert_eq!(waiting.await.unwrap(), "t");
    let err = a.simple_query("PAUSE nowhere").await.unwrap_err();
    assert_eq!(sqlstate(&err), "22023");
}

/// A free port on 127.0.0.1 (bound, then released for pgsplit to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The real binary on `path`; killed when dropped.
struct Binary(std::process::Child);

impl Binary {
    fn start(path: &std::path::Path, env: &[(&str, &str)]) -> Binary {
        let child = Command::new(env!("CARGO_BIN_EXE_pgsplit"))
            .args(["--config", path.to_str().unwrap()])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pgsplit starts");
        Binary(child)
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn admin_when_up(port: u16) -> tokio_postgres::Client {
    let started = Instant::now();
    loop {
        match connect_as(port, "admin", ADMIN_PASSWORD, "pgsplit").await {
            Ok(c) => return c,
            Err(e) if started.elapsed() > Duration::from_secs(20) => panic!("pgsplit did not come up: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn mode_becomes(a: &tokio_postgres::Client, want: &str) {
    let started = Instant::now();
    while mode(a).await != want {
        assert!(started.elapsed() < Duration::from_secs(10), "mode did not become {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_mode_command_sighup_and_split_db_mode_switch_the_running_binary() {
    let port = free_port();
    let yaml = admin_yaml("").replace("listen: 127.0.0.1:0", &format!("listen: 127.0.0.1:{port}"));
    let path = config_file(&yaml);
    let _pgsplit = Binary::start(&path, &[]);
    let a = admin_when_up(port).await;
    assert_eq!(mode(&a).await, "split");

    let out = Command::new(env!("CARGO_BIN_EXE_pgsplit")).args(["mode", "single", "--config"]).arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "mode: single");
    assert_eq!(mode(&a).await, "single");

    // A changed `mode:` in the file plus SIGHUP.
    std::fs::write(&path, format!("{yaml}mode: single\n")).unwrap();
    let pid = _pgsplit.0.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let started = Instant::now();
    while !rows(&a, "SHOW CONFIG").await.iter().any(|r| r[0] == "mode (file)" && r[1] == "single") {
        assert!(started.elapsed() < Duration::from_secs(10), "SIGHUP did not reload the file");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::write(&path, format!("{yaml}mode: split\n")).unwrap();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    mode_becomes(&a, "split").await;

    // A broken file on SIGHUP: logged, and the running configuration stays.
    std::fs::write(&path, "targets: [").unwrap();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(mode(&a).await, "split");
    let c = connect_as(port, "app", APP_PASSWORD, "handled").await.unwrap();
    assert_eq!(scalar(&c, "select current_database() from workspace.imports limit 1").await, "handled_data");
}

#[tokio::test]
async fn split_db_mode_false_at_start_forces_single_mode() {
    let port = free_port();
    let yaml = admin_yaml("").replace("listen: 127.0.0.1:0", &format!("listen: 127.0.0.1:{port}"));
    let path = config_file(&yaml);
    let _pgsplit = Binary::start(&path, &[("SPLIT_DB_MODE", "false")]);
    let a = admin_when_up(port).await;
    assert_eq!(mode(&a).await, "single");
    let c = connect_as(port, "app", APP_PASSWORD, "handled").await.unwrap();
    assert_eq!(scalar(&c, "select current_database()").await, "handled_primary");
}

#[tokio::test]
async fn prepared_statements_follow_routes_changed_by_a_reload() {
    primary_has_data_tables().await;
    let yaml = admin_yaml("");
    let path = config_file(&yaml);
    let proxy = Proxy::start_file(&path).await;
    let a = admin(proxy.port).await;
    let c = proxy.connect().await;
    let which = c.prepare("select current_database()::text, (select count(*) from workspace.imports)").await.unwrap();
    assert_eq!(c.query_one(&which, &[]).await.unwrap().get::<_, String>(0), "handled_data");
    // workspace moves to PRIMARY.
    let moved = yaml
        .replace("schemas: [config, customer]", "schemas: [config, customer, workspace]")
        .replace("schemas: [workspace, reference]", "schemas: [reference]");
    std::fs::write(&path, moved).unwrap();
    a.simple_query("RELOAD").await.unwrap();
    assert!(rows(&a, "SHOW ROUTES").await.contains(&vec!["workspace".to_owned(), "primary".to_owned()]));
    assert_eq!(
        c.query_one(&which, &[]).await.unwrap().get::<_, String>(0),
        "handled_primary",
        "a statement prepared before the reload is routed by the new routes"
    );
}

/// SHOW DATABASES and SHOW POOLS list a pool `any_database` made (issue 16, point 9) after the targets, by its
/// database's name, with the target's pool size; SHOW CLIENTS shows the database its client named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_pools_lists_the_pools_any_database_made() {
    let proxy = Proxy::start(&admin_yaml("any_database: data\n")).await;
    let other = connect_as(proxy.port, "app", APP_PASSWORD, "postgres").await.expect("any database on DATA");
    assert_eq!(scalar(&other, "select current_database()").await, "postgres");
    let a = admin(proxy.port).await;
    let databases = rows(&a, "SHOW DATABASES").await;
    let names: Vec<_> = databases.iter().map(|r| (r[0].as_str(), r[5].as_str())).collect();
    assert_eq!(names, [("primary", "5"), ("data", "10"), ("postgres", "10")]);
    let pools = rows(&a, "SHOW POOLS").await;
    assert_eq!(pools.iter().map(|r| r[0].as_str()).collect::<Vec<_>>(), ["primary", "data", "postgres"]);
    let clients = rows(&a, "SHOW CLIENTS").await;
    assert!(clients.iter().any(|r| r[1] == "app" && r[2] == "postgres"), "{clients:?}");
}

/// RECONNECT, KILL, PAUSE and RESUME reach a pool `any_database` made, by its database's name as PgBouncer's console
/// names a `*` database, and RECONNECT without a name includes it; an unknown name lists those databases too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_commands_reach_the_pools_any_database_made_by_their_database_name() {
    // Health ticks (where unused pools are swept) every 100 ms.
    let proxy = Proxy::start(&admin_yaml("any_database: data\nhealth_interval: 100ms\n")).await;
    let other = connect_as(proxy.port, "app", APP_PASSWORD, "postgres").await.expect("any database on DATA");
    let first = scalar(&other, "select pg_backend_pid()").await;
    let a = admin(proxy.port).await;
    a.simple_query("RECONNECT postgres").await.expect("RECONNECT names a database any_database reaches");
    a.simple_query("WAIT_CLOSE postgres").await.expect("WAIT_CLOSE too");
    let second = scalar(&other, "select pg_backend_pid()").await;
    assert_ne!(first, second, "RECONNECT postgres replaced its server connection");
    a.simple_query("RECONNECT").await.expect("RECONNECT every pool");
    a.simple_query("WAIT_CLOSE").await.expect("WAIT_CLOSE every pool");
    assert_ne!(scalar(&other, "select pg_backend_pid()").await, second, "RECONNECT without a name includes it");

    a.simple_query("KILL postgres").await.expect("KILL names it");
    let waiting = tokio::spawn(async move { scalar(&other, "select 7").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "KILL paused the pool: the statement waits for RESUME");
    a.simple_query("RESUME postgres").await.expect("RESUME names it");
    assert_eq!(waiting.await.expect("join"), "7");

    // KILLed with no client left, the pool holds nothing: it is kept paused across health ticks (not swept and made
    // anew, unpaused, for the next client) until RESUME.
    a.simple_query("KILL postgres").await.expect("KILL with no client");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let port = proxy.port;
    let next = tokio::spawn(async move {
        let c = connect_as(port, "app", APP_PASSWORD, "postgres").await.expect("a new client");
        scalar(&c, "select 8").await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!next.is_finished(), "still paused after the health ticks");
    a.simple_query("RESUME postgres").await.expect("RESUME still names it");
    assert_eq!(next.await.expect("join"), "8");

    let e = a.simple_query("KILL nosuch").await.expect_err("an unknown name");
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "22023");
    assert!(db.hint().is_some_and(|h| h.contains("databases through any_database: postgres")), "{:?}", db.hint());
}

/// Tools written for PgBouncer connect to its console as database `pgbouncer` and write `SET key=value` without
/// spaces (issue 20, point 3): both reach pgsplit's console.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_answers_on_pgbouncers_database_name_and_takes_set_without_spaces() {
    let proxy = Proxy::start(&admin_yaml("")).await;
    let console = connect_as(proxy.port, "admin", ADMIN_PASSWORD, "pgbouncer").await.expect("console as pgbouncer");
    assert_eq!(mode(&console).await, "split");
    console.simple_query("SET mode='single'").await.expect("SET without spaces");
    assert_eq!(mode(&console).await, "single");
    console.simple_query("set mode=split").await.expect("SET without spaces or quotes");
    assert_eq!(mode(&console).await, "split");
    // An application user is refused there as on `pgsplit`.
    let app = connect_as(proxy.port, "app", APP_PASSWORD, "pgbouncer").await;
    assert!(app.is_err(), "only admin users reach the console");
}

/// PgBouncer's console beside pgsplit's (issue 20, point 3): every SHOW of PgBouncer's answers with the same column
/// names, order and type OIDs and the same kinds of messages (SHOW HELP: a notice, no rows), and every command the
/// same CommandComplete tag, so dashboards, exporters and runbooks written for PgBouncer read pgsplit alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_answers_every_show_and_command_with_pgbouncers_columns_types_and_tags() {
    let c = clusters();
    let Some(bouncer) = common::Bouncer::start(|port, dir| {
        std::fs::write(dir.join("users.txt"), "\"admin\" \"\"\n").expect("users.txt");
        format!(
            "[databases]
data = host=127.0.0.1 port={dport} dbname=handled_data user=pgsplit password={pw}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {users}
admin_users = admin
logfile = {log}
",
            dport = c.data.port(),
            pw = c.server_password,
            users = dir.join("users.txt").display(),
            log = dir.join("pgbouncer.log").display(),
        )
    })
    .await
    else {
        return;
    };
    let proxy = Proxy::start_file(&config_file(&admin_yaml(""))).await;
    let app = proxy.connect().await;
    assert_eq!(scalar(&app, "select count(*) >= 0 from workspace.imports").await, "t");
    let (mut theirs, _) = common::try_login_as(bouncer.port, "admin", "", "pgbouncer", &[]).await.expect("PgBouncer console");
    let (mut ours, _) = common::try_login_as(proxy.port, "admin", ADMIN_PASSWORD, "pgbouncer", &[]).await.expect("console");
    for show in [
        "POOLS",
        "CLIENTS",
        "SERVERS",
        "STATS",
        "STATS_TOTALS",
        "STATS_AVERAGES",
        "DATABASES",
        "USERS",
        "LISTS",
        "CONFIG",
        "VERSION",
        "HELP",
    ] {
        let sql = format!("SHOW {show}");
        let want = common::describe_query(&mut theirs, &sql).await;
        let got = common::describe_query(&mut ours, &sql).await;
        assert_eq!(got, want, "{sql}: pgsplit's answer against PgBouncer's");
        if show != "HELP" {
            assert!(want.columns.as_ref().is_some_and(|c| !c.is_empty()), "{sql} has columns on PgBouncer");
        }
    }
    // The commands PgBouncer takes for one database (`data` on both), in an order that leaves both as they were.
    for command in [
        "PAUSE data",
        "RESUME data",
        "DISABLE data",
        "ENABLE data",
        "RECONNECT data",
        "WAIT_CLOSE data",
        "RECONNECT",
        "WAIT_CLOSE",
        "KILL data",
        "RESUME data",
        "SUSPEND",
        "RESUME",
        "PAUSE",
        "RESUME",
        "RELOAD",
    ] {
        let want = common::describe_query(&mut theirs, command).await;
        let got = common::describe_query(&mut ours, command).await;
        assert_eq!(got, want, "{command}: pgsplit's answer against PgBouncer's");
        assert_eq!(got.outcome, [command.split(' ').next().unwrap()], "{command}");
    }
    // A command that needs a database and has none is an error on both (42601 here, as PostgreSQL's syntax error).
    for command in ["KILL", "DISABLE", "ENABLE"] {
        let want = common::describe_query(&mut theirs, command).await;
        let got = common::describe_query(&mut ours, command).await;
        assert_eq!(got.messages, want.messages, "{command}");
        assert_eq!(got.outcome, ["E:42601"], "{command}");
    }
    assert_eq!(scalar(&app, "select count(*) >= 0 from workspace.imports").await, "t", "the app's session goes on");
}

/// SHOW's figures are the real ones: integers typed as integers, a row per pool, per client and per server
/// connection, and SHOW STATS counting transactions, requests and bytes each way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_counts_pools_clients_servers_and_stats_as_pgbouncer_does() {
    let proxy = Proxy::start(&admin_yaml("stats_period: 1s\n")).await;
    let a = admin(proxy.port).await;
    let app = proxy.connect().await;
    for _ in 0..10 {
        app.simple_query("select count(*) from workspace.imports").await.unwrap();
    }
    app.simple_query("begin; select 1 from workspace.imports limit 1").await.unwrap();
    app.simple_query("select 2 from workspace.imports limit 1").await.unwrap();
    // In a transaction: one client active and one server connection lent on DATA.
    let pools = rows(&a, "SHOW POOLS").await;
    let data = pools.iter().find(|r| r[0] == "data").expect("data pool");
    assert_eq!((data[1].as_str(), data[2].as_str(), data[6].as_str()), ("pgsplit", "1", "1"), "{pools:?}");
    assert_eq!(data[15], "transaction");
    let servers = rows(&a, "SHOW SERVERS").await;
    let active: Vec<_> = servers.iter().filter(|r| r[2] == "data" && r[3] == "active").collect();
    assert_eq!(active.len(), 1, "{servers:?}");
    let pid = scalar(&app, "select pg_backend_pid()::text from workspace.imports limit 1").await;
    assert_eq!(active[0][15], pid, "remote_pid is the server's process id");
    app.simple_query("commit").await.unwrap();
    // `link` is cleared once the session has taken the reply (on its worker thread, moments after the client).
    let clients = rows_once(&a, "SHOW CLIENTS", |c| c.iter().any(|r| r[1] == "app" && r[14].is_empty())).await;
    let me = clients.iter().find(|r| r[1] == "app").expect("the app's client");
    assert_eq!((me[0].as_str(), me[3].as_str(), me[4].as_str(), me[14].as_str()), ("C", "active", "127.0.0.1", ""), "{me:?}");
    assert!(me[5].parse::<u16>().unwrap() > 0 && me[7] == proxy.port.to_string(), "{me:?}");
    assert!(me[8].ends_with(" UTC") && me[8].len() == 23, "PgBouncer's time format: {me:?}");

    let totals =
        rows_once(&a, "SHOW STATS_TOTALS", |t| t.iter().any(|r| r[0] == "data" && r[1].parse::<u64>().unwrap() >= 11)).await;
    let data = totals.iter().find(|r| r[0] == "data").expect("data stats");
    let n = |i: usize| data[i].parse::<u64>().unwrap();
    assert!(n(1) >= 11, "10 autocommit requests and one transaction: {data:?}");
    assert!(n(2) >= 12, "requests: {data:?}");
    assert!(n(3) > 0 && n(4) > n(3), "bytes each way (replies larger than requests here): {data:?}");
    assert!(n(5) >= n(6), "time in transactions covers time in their requests: {data:?}");
    // The averages of a stats_period (1 s here) in which requests ran.
    let averages = rows_once(&a, "SHOW STATS_AVERAGES", |t| t.iter().any(|r| r[0] == "data" && r[2] != "0")).await;
    assert!(averages.iter().any(|r| r[0] == "data" && r[2] != "0"), "{averages:?}");
    let stats = rows(&a, "SHOW STATS").await;
    assert_eq!(stats.iter().map(|r| r[0].as_str()).collect::<Vec<_>>(), ["primary", "data"]);
    let users = rows(&a, "SHOW USERS").await;
    assert!(users.iter().any(|r| r[0] == "app"), "{users:?}");
    assert!(rows(&a, "SHOW VERSION").await[0][0].starts_with("PgBouncer 1.18.0 (pgsplit "));
}

/// DISABLE refuses new transactions on its target with 57P03 until ENABLE; the other target serves meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_refuses_new_transactions_of_its_target_until_enable() {
    let proxy = Proxy::start(&admin_yaml("")).await;
    let a = admin(proxy.port).await;
    let app = proxy.connect().await;
    a.simple_query("DISABLE data").await.unwrap();
    assert_eq!(rows(&a, "SHOW DATABASES").await[1][12], "1", "disabled");
    let err = app.simple_query("select 1 from workspace.imports").await.unwrap_err();
    assert_eq!(sqlstate(&err), "57P03");
    assert_eq!(scalar(&app, "select 'primary serves' from customer.accounts limit 1").await, "primary serves");
    a.simple_query("ENABLE data").await.unwrap();
    assert_eq!(scalar(&app, "select count(*) >= 0 from workspace.imports").await, "t");
    let err = a.simple_query("DISABLE nowhere").await.unwrap_err();
    assert_eq!(sqlstate(&err), "22023");
}

/// RECONNECT replaces every server connection of its target once it comes back: WAIT_CLOSE waits for the one
/// an open transaction holds, which finishes on it; the next transaction runs on a new server process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_replaces_server_connections_after_their_transactions_and_wait_close_waits_for_them() {
    let proxy = Proxy::start(&admin_yaml("")).await;
    let a = admin(proxy.port).await;
    let app = proxy.connect().await;
    let pid_sql = "select pg_backend_pid()::text from workspace.imports union all select pg_backend_pid()::text limit 1";
    app.simple_query("begin").await.unwrap();
    let before = scalar(&app, pid_sql).await;
    a.simple_query("RECONNECT data").await.unwrap();
    let servers = rows(&a, "SHOW SERVERS").await;
    assert!(servers.iter().any(|r| r[2] == "data" && r[15] == before && r[12] == "1"), "close_needed: {servers:?}");
    let port = proxy.port;
    let wait = tokio::spawn(async move { admin(port).await.simple_query("WAIT_CLOSE data").await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!wait.is_finished(), "WAIT_CLOSE waits for the connection the open transaction holds");
    assert_eq!(scalar(&app, pid_sql).await, before, "the open transaction finishes where it began");
    app.simple_query("commit").await.unwrap();
    wait.await.unwrap().expect("WAIT_CLOSE answers once it closed");
    assert_ne!(scalar(&app, pid_sql).await, before, "a new server process");
}

/// KILL closes its target's server connections at once, in use or not: the transaction on one ends with the
/// connection lost, the target is paused until RESUME, and the client goes on afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_closes_the_targets_connections_at_once_and_pauses_it_until_resume() {
    let proxy = Proxy::start(&admin_yaml("")).await;
    let a = admin(proxy.port).await;
    let app = proxy.connect().await;
    app.simple_query("begin; select 1 from workspace.imports limit 1").await.unwrap();
    a.simple_query("KILL data").await.unwrap();
    let err = app.simple_query("select 2 from workspace.imports limit 1").await.unwrap_err();
    assert_eq!(sqlstate(&err), "08006", "{err:?}");
    assert!(rows(&a, "SHOW SERVERS").await.iter().all(|r| r[2] != "data"), "no DATA connection is left");
    let _ = app.simple_query("rollback").await;
    let c = proxy.connect().await;
    let waiting = tokio::spawn(async move { scalar(&c, "select count(*) >= 0 from workspace.imports").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "a killed target is paused");
    a.simple_query("RESUME data").await.unwrap();
    assert_eq!(waiting.await.unwrap(), "t");
}

/// SHUTDOWN stops the running binary as SIGTERM does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_on_the_console_stops_pgsplit() {
    let port = free_port();
    let yaml = admin_yaml("").replace("listen: 127.0.0.1:0", &format!("listen: 127.0.0.1:{port}"));
    let mut pgsplit = Binary::start(&config_file(&yaml), &[]);
    let a = admin_when_up(port).await;
    let _ = a.simple_query("SHUTDOWN").await;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = pgsplit.0.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "pgsplit still runs after SHUTDOWN");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
}
