//! PRIMARY behind a real PgBouncer in transaction mode (SPEC §1, §5 "Upstream transaction poolers"): pgsplit →
//! PgBouncer (plain, pool_mode=transaction, 2 server connections) → the PRIMARY test cluster (TLS, SCRAM). The
//! `primary` target is configured `upstream: transaction_pooler`. Each test starts its own PgBouncer on a free
//! port (`/usr/sbin/pgbouncer`, run as `postgres` when root).
//!
//! Without PgBouncer installed these tests fail with a message saying so, unless `PGSPLIT_SKIP_PGBOUNCER=1`.

mod common;

use std::time::Duration;

use common::{clusters, direct, pg_tool, scalar, sqlstate, Proxy, APP_PASSWORD};

/// PgBouncer's pool towards PostgreSQL: far fewer backends than pgsplit has connections to PgBouncer (5), so
/// consecutive transactions of one pgsplit connection land on different backends.
const BOUNCER_POOL: usize = 2;

/// PgBouncer in transaction mode in front of PRIMARY (`common::Bouncer`).
struct Bouncer(common::Bouncer);

impl std::ops::Deref for Bouncer {
    type Target = common::Bouncer;
    fn deref(&self) -> &common::Bouncer {
        &self.0
    }
}

impl Bouncer {
    /// Starts PgBouncer, or returns `None` when it is missing and `PGSPLIT_SKIP_PGBOUNCER=1` allows skipping.
    async fn start() -> Option<Bouncer> {
        let c = clusters();
        common::Bouncer::start(|port, dir| {
            format!(
                "[databases]
handled_primary = host=127.0.0.1 port={pport} dbname=handled_primary user=pgsplit password={pw}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = {BOUNCER_POOL}
max_client_conn = 100
server_tls_sslmode = require
ignore_startup_parameters = extra_float_digits,options
logfile = {log}
",
                pport = c.primary.port(),
                pw = c.server_password,
                log = dir.join("pgbouncer.log").display(),
            )
        })
        .await
        .map(Bouncer)
    }

    /// A client connected to PgBouncer directly (as another application sharing its backends would be).
    async fn connect_direct(&self) -> tokio_postgres::Client {
        let dsn = format!("host=127.0.0.1 port={} user=pgsplit dbname=handled_primary sslmode=disable", self.port);
        let (client, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await.expect("connect to pgbouncer");
        tokio::spawn(conn);
        client
    }
}

/// pgsplit with `primary` behind the PgBouncer (plain TCP towards it) and `data` direct.
async fn proxy(bouncer: &Bouncer) -> Proxy {
    let c = clusters();
    let yaml = format!(
        "listen: 127.0.0.1:0
database: handled
default_target: primary
targets:
  primary:
    url: postgresql://pgsplit:{pw}@127.0.0.1:{bport}/handled_primary
    tls: {{ mode: disable }}
    upstream: transaction_pooler
    pool: {{ max: 5, checkout_timeout: 5s }}
    schemas: [config, customer]
  data:
    url: postgresql://pgsplit:{pw}@127.0.0.1:{dport}/handled_data
    pool: {{ max: 10, checkout_timeout: 5s }}
    schemas: [workspace, reference]
users:
  - {{ name: app, password: \"{APP_PASSWORD}\" }}
admin_users: []
",
        pw = c.server_password,
        bport = bouncer.port,
        dport = c.data.port(),
    );
    Proxy::start(&yaml).await
}

async fn connect_with(proxy: &Proxy, extra: &str) -> tokio_postgres::Client {
    let dsn = format!("{} {extra}", proxy.dsn());
    let (client, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await.expect("connect through pgsplit");
    tokio::spawn(conn);
    client
}

/// What a session sees of the settings under test, from the server that runs the statement.
const SETTINGS: &str = "select current_setting('statement_timeout') || '|' || current_setting('search_path') || '|' \
     || current_setting('application_name') || '|' || current_setting('work_mem')";

/// The settings PgBouncer does not track, as a session sees them.
const UNTRACKED: &str = "select current_setting('statement_timeout') || '|' || current_setting('search_path') || '|' \
     || current_setting('work_mem') || '|' || coalesce(current_setting('app.tenant', true), '')";

/// What `UNTRACKED` shows a session that never set anything: the server's defaults.
const DEFAULTS: &str = "0|\"$user\", public|4MB|";

#[tokio::test]
async fn many_clients_behind_pgbouncer_each_see_only_their_own_settings() {
    let Some(bouncer) = Bouncer::start().await else { return };
    let proxy = proxy(&bouncer).await;
    let mut tasks = Vec::new();
    for i in 1..=8u32 {
        let c = connect_with(&proxy, &format!("options='-c work_mem={}MB'", 64 + i)).await;
        tasks.push(tokio::spawn(async move {
            c.simple_query(&format!("set statement_timeout = '{i}s'")).await.unwrap();
            c.simple_query(&format!("set search_path = customer, public, s{i}")).await.unwrap();
            c.simple_query(&format!("select set_config('application_name', 'client{i}', false)")).await.unwrap();
            let want = format!("{i}s|customer, public, s{i}|client{i}|{}MB", 64 + i);
            for round in 0..15 {
                // Autocommit, simple protocol.
                assert_eq!(scalar(&c, SETTINGS).await, want, "client {i} round {round} (simple)");
                // Autocommit, extended protocol (a named statement, prepared and bound).
                let row = c.query_one(SETTINGS, &[]).await.unwrap();
                assert_eq!(row.get::<_, String>(0), want, "client {i} round {round} (extended)");
                // An explicit transaction; the unqualified name resolves through the client's search_path.
                c.simple_query("begin").await.unwrap();
                assert_eq!(scalar(&c, "select count(*) from accounts").await, "2");
                assert_eq!(scalar(&c, SETTINGS).await, want, "client {i} round {round} (transaction)");
                c.simple_query("commit").await.unwrap();
            }
            // SET LOCAL inside a transaction wins there and is gone after it.
            c.simple_query("begin").await.unwrap();
            c.simple_query("set local statement_timeout = '42s'").await.unwrap();
            assert_eq!(scalar(&c, "show statement_timeout").await, "42s");
            c.simple_query("commit").await.unwrap();
            assert_eq!(scalar(&c, "show statement_timeout").await, format!("{i}s"));
            // RESET returns to the startup value; a rolled-back SET never happened.
            c.simple_query("reset work_mem").await.unwrap();
            c.simple_query("begin; set statement_timeout = '99s'; rollback").await.unwrap();
            assert_eq!(scalar(&c, SETTINGS).await, format!("{i}s|customer, public, s{i}|client{i}|{}MB", 64 + i));
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
}

#[tokio::test]
async fn no_setting_leaks_to_other_clients_of_pgsplit_or_pgbouncer() {
    let Some(bouncer) = Bouncer::start().await else { return };
    let proxy = proxy(&bouncer).await;
    // Clients that change settings every way pgsplit follows, in autocommit and in committed transactions.
    let mut setters = Vec::new();
    for i in 1..=6u32 {
        let c = connect_with(&proxy, "options='-c work_mem=77MB'").await;
        c.simple_query(&format!("set statement_timeout = '{i}s'")).await.unwrap();
        c.simple_query("begin").await.unwrap();
        c.simple_query("select 1 from customer.accounts limit 1").await.unwrap();
        c.simple_query("set search_path = customer").await.unwrap();
        c.simple_query("commit").await.unwrap();
        c.simple_query("select set_config('app.tenant', 'tenant-x', false)").await.unwrap();
        c.simple_query(&format!("set application_name = 'client{i}'")).await.unwrap();
        c.query("select 1 from accounts", &[]).await.unwrap();
        setters.push(c);
    }
    // Clients of PgBouncer itself, first (before anything through pgsplit touches the backends again), holding
    // every backend of its pool at once, so each backend is looked at.
    let mut direct = Vec::new();
    for _ in 0..BOUNCER_POOL {
        let d = bouncer.connect_direct().await;
        d.simple_query("begin").await.unwrap();
        direct.push(d);
    }
    let mut backends = std::collections::BTreeSet::new();
    for d in &direct {
        backends.insert(scalar(d, "select pg_backend_pid()").await);
        assert_eq!(scalar(d, UNTRACKED).await, DEFAULTS);
        d.simple_query("commit").await.unwrap();
    }
    assert_eq!(backends.len(), BOUNCER_POOL, "every PgBouncer backend was checked");
    // A pgsplit client that never set anything, many times over (the backends are shared round the pool).
    let clean = proxy.connect().await;
    for round in 0..20 {
        assert_eq!(scalar(&clean, UNTRACKED).await, DEFAULTS, "round {round}");
        assert!(!scalar(&clean, "show application_name").await.starts_with("client"), "round {round}");
    }
    // The setters still have theirs.
    for (i, c) in setters.iter().enumerate() {
        assert_eq!(scalar(c, UNTRACKED).await, format!("{}s|customer|77MB|tenant-x", i + 1));
    }
}

#[tokio::test]
async fn named_statements_prepared_once_run_many_times_from_several_clients() {
    let Some(bouncer) = Bouncer::start().await else { return };
    let proxy = proxy(&bouncer).await;
    let mut tasks = Vec::new();
    for i in 0..6i32 {
        let mut c = proxy.connect().await;
        tasks.push(tokio::spawn(async move {
            let by_id = c.prepare("select name from config.users where id = $1").await.unwrap();
            let plus = c.prepare("select $1::int + $2::int").await.unwrap();
            for round in 0..25i32 {
                let row = c.query_one(&by_id, &[&(1 + round % 2)]).await.unwrap();
                assert_eq!(row.get::<_, String>(0), if round % 2 == 0 { "Ada" } else { "Linus" });
                let row = c.query_one(&plus, &[&i, &round]).await.unwrap();
                assert_eq!(row.get::<_, i32>(0), i + round);
            }
            // Inside a transaction too, and after a failed execution.
            let tx = c.transaction().await.unwrap();
            assert_eq!(tx.query_one(&plus, &[&1, &2]).await.unwrap().get::<_, i32>(0), 3);
            tx.commit().await.unwrap();
            let err = c.query_one(&plus, &[&i32::MAX, &1]).await.unwrap_err();
            assert_eq!(sqlstate(&err), "22003");
            assert_eq!(c.query_one(&plus, &[&2, &2]).await.unwrap().get::<_, i32>(0), 4);
            // Closing the statement (tokio-postgres sends Close when the last handle drops) leaves the others.
            drop(by_id);
            assert_eq!(c.query_one(&plus, &[&3, &3]).await.unwrap().get::<_, i32>(0), 6);
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    // Nothing was prepared on PgBouncer's backends.
    let d = bouncer.connect_direct().await;
    assert_eq!(scalar(&d, "select count(*) from pg_prepared_statements").await, "0");
}

#[tokio::test]
async fn errors_and_a_failed_commit_reach_the_client_as_on_a_direct_connection() {
    let Some(bouncer) = Bouncer::start().await else { return };
    let proxy = proxy(&bouncer).await;
    let c = connect_with(&proxy, "options='-c statement_timeout=30s'").await;
    c.simple_query(
        "create table customer.pooler_parent (id int primary key);
         create table customer.pooler_child (parent int references customer.pooler_parent deferrable initially deferred)",
    )
    .await
    .unwrap();
    // A deferred constraint fails at COMMIT: on a direct connection the autocommit INSERT fails.
    let err = c.simple_query("insert into customer.pooler_child values (1)").await.unwrap_err();
    assert_eq!(sqlstate(&err), "23503");
    assert_eq!(scalar(&c, "select count(*) from customer.pooler_child").await, "0");
    let err = c.execute("insert into customer.pooler_child values ($1)", &[&2i32]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "23503");
    // A statement error leaves the session idle with its settings.
    let err = c.simple_query("select 1/0").await.unwrap_err();
    assert_eq!(sqlstate(&err), "22012");
    let err = c.simple_query("set statement_timeout = 'soon'").await.unwrap_err();
    assert_eq!(sqlstate(&err), "22023");
    assert_eq!(scalar(&c, "show statement_timeout").await, "30s");
    // statement_timeout applies on the server (SET LOCAL in pgsplit's transaction).
    c.simple_query("set statement_timeout = '100ms'").await.unwrap();
    let err = c.simple_query("select pg_sleep(5)").await.unwrap_err();
    assert_eq!(sqlstate(&err), "57014");
    c.simple_query("reset statement_timeout").await.unwrap();
    // What cannot run in a transaction block still runs (without the SET LOCAL settings).
    c.simple_query("vacuum customer.pooler_child").await.unwrap();
    c.simple_query("drop table customer.pooler_child, customer.pooler_parent").await.unwrap();
    assert_eq!(scalar(&c, "show statement_timeout").await, "30s");
}

#[tokio::test]
async fn pgbench_prepared_and_extended_through_pgbouncer_run_clean() {
    let Some(bouncer) = Bouncer::start().await else { return };
    let proxy = proxy(&bouncer).await;
    let script = bouncer.dir.join("bench.sql");
    std::fs::write(
        &script,
        "\\set id random(1, 2)\n\
         begin;\n\
         select name from users where id = :id;\n\
         select plan from customer.accounts where id = :id;\n\
         end;\n\
         select current_setting('statement_timeout');\n",
    )
    .expect("script");
    for mode in ["prepared", "extended"] {
        let out = tokio::process::Command::new(pg_tool("pgbench"))
            // One thread per client: pgbench prepares synchronously, so a client waiting for a PgBouncer backend
            // must not stall (on a shared thread) the client whose transaction holds that backend.
            .args(["-n", "-c", "4", "-j", "4", "-t", "40", "-M", mode, "-f"])
            .arg(&script)
            .args(["-h", "127.0.0.1", "-p", &proxy.port.to_string(), "-U", "app", "handled"])
            .env("PGPASSWORD", APP_PASSWORD)
            .env("PGOPTIONS", "-c search_path=config,public -c statement_timeout=20s")
            .kill_on_drop(true)
            .output()
            .await
            .expect("pgbench runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let log = std::fs::read_to_string(bouncer.dir.join("pgbouncer.log")).unwrap_or_default();
        assert!(out.status.success(), "pgbench -M {mode}: {stdout}\n{stderr}\npgbouncer log:\n{log}");
        assert!(stdout.contains("number of transactions actually processed: 160/160"), "pgbench -M {mode}: {stdout}");
        assert!(stdout.contains("number of failed transactions: 0"), "pgbench -M {mode}: {stdout}");
    }
}

#[tokio::test]
async fn a_refusal_after_a_flushed_part_of_a_wrapped_autocommit_batch_rolls_it_back_and_ends_idle() {
    let Some(bouncer) = Bouncer::start().await else { return };
    let proxy = proxy(&bouncer).await;
    // statement_timeout is not tracked by PgBouncer: pgsplit wraps each autocommit request in its own transaction,
    // which must end with the client's implicit one.
    let (mut s, _) = common::raw_login_with(proxy.port, &[("options", "-c statement_timeout=30s")]).await;
    common::assert_refusal_after_flush_ends_idle(
        &mut s,
        "insert into customer.accounts (name) values ('pooler-flushed-then-refused')",
        "select count(*) from workspace.imports",
        "select count(*) from customer.accounts",
    )
    .await;
    assert_eq!(
        direct(
            &clusters().primary,
            "handled_primary",
            "select count(*) from customer.accounts where name = 'pooler-flushed-then-refused'"
        )
        .await,
        "0",
        "the flushed insert was rolled back"
    );
}

#[tokio::test]
async fn a_setting_that_fails_in_the_wrapping_transaction_is_an_error_not_a_hang() {
    let Some(bouncer) = Bouncer::start().await else { return };
    let proxy = proxy(&bouncer).await;
    direct(&clusters().primary, "handled_primary", "create text search configuration customer.pooler_ts (copy = english)").await;
    let c = connect_with(&proxy, "").await;
    // Untracked by PgBouncer: applied with SET LOCAL in pgsplit's own transaction around each autocommit request.
    c.simple_query("set default_text_search_config = 'customer.pooler_ts'").await.unwrap();
    direct(&clusters().primary, "handled_primary", "drop text search configuration customer.pooler_ts").await;
    // The SET LOCAL now fails where the request would run: the client gets that error and ReadyForQuery (it hung
    // waiting for ReadyForQuery before), twice, in step with the protocol.
    for round in 0..2 {
        let answer = tokio::time::timeout(Duration::from_secs(10), c.simple_query("select 1")).await;
        let err = answer.unwrap_or_else(|_| panic!("round {round}: no answer within 10 s")).unwrap_err();
        // PostgreSQL's answer to `SET LOCAL default_text_search_config` naming a configuration that is gone.
        assert_eq!(sqlstate(&err), "22023", "round {round}: {err:?}");
    }
    // pgsplit's transaction was rolled back: the connection serves other clients.
    let other = connect_with(&proxy, "").await;
    assert_eq!(scalar(&other, "select count(*) from customer.accounts where false").await, "0");
}
