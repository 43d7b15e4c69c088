//! `prepare_unnamed: true` (issue 17, step 6): a client's unnamed Parse is served from a statement prepared on the
//! server under pgsplit's name, parsed and planned once per server connection; the client still sees exactly what
//! its own unnamed statement gives on a direct connection. Off (the default), the unnamed Parse goes as it is.

mod common;

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use tokio::io::AsyncWriteExt;

use common::{config_yaml, parse_bind_execute, raw_login, read_message, sqlstate, Proxy, APP_PASSWORD};

/// One DATA connection, so every client's statements meet on the same server process.
fn one_data_connection(prepare_unnamed: bool) -> String {
    config_yaml("verify-full", &format!("prepare_unnamed: {prepare_unnamed}\n"))
        .replace("pool: { max: 10, checkout_timeout: 3s }", "pool: { max: 1, checkout_timeout: 10s }")
}

/// What a batch answered: message tags, the first column of each DataRow, and the SQLSTATE of an error.
#[derive(Debug, Default)]
struct Answer {
    tags: Vec<u8>,
    values: Vec<String>,
    error: Option<String>,
}

async fn answer(s: &mut tokio::net::TcpStream) -> Answer {
    let mut a = Answer::default();
    loop {
        let (tag, body) = read_message(s).await;
        a.tags.push(tag);
        match tag {
            b'D' => {
                let len = body.get(2..6).map_or(-1, |b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                let value = usize::try_from(len).ok().and_then(|n| body.get(6..6 + n));
                a.values.push(value.map_or("NULL".into(), |v| String::from_utf8_lossy(v).into_owned()));
            }
            b'E' => {
                let fields = body.split(|&b| b == 0);
                a.error = fields.filter_map(|f| f.strip_prefix(b"C")).map(|c| String::from_utf8_lossy(c).into_owned()).next();
            }
            b'Z' => return a,
            _ => {}
        }
    }
}

async fn send(s: &mut tokio::net::TcpStream, out: &mut BytesMut) {
    s.write_all(out).await.unwrap();
    out.clear();
}

/// Parse of the unnamed statement, Bind, Execute, Sync: one extended query, as most drivers send it.
async fn unnamed_query(s: &mut tokio::net::TcpStream, sql: &str) -> Answer {
    let mut out = BytesMut::new();
    parse_bind_execute("", sql, &mut out);
    frontend::sync(&mut out);
    send(s, &mut out).await;
    answer(s).await
}

/// Server-side statements pgsplit prepared on the DATA connection, with how often each ran.
/// (`table`, a one-row table of DATA, takes the query there.)
async fn server_statements(s: &mut tokio::net::TcpStream, table: &str) -> Vec<String> {
    let sql = format!(
        "select name || ' ' || (generic_plans + custom_plans) || ' ' || statement from pg_prepared_statements \
         join {table} on true where name like 'pgsplit\\_%' order by 1"
    );
    let mut out = BytesMut::new();
    frontend::query(&sql, &mut out).unwrap();
    send(s, &mut out).await;
    answer(s).await.values
}

/// A one-row table of DATA.
async fn make_table(proxy: &Proxy, table: &str) {
    let c = proxy.connect().await;
    c.batch_execute(&format!("create table {table} (v int); insert into {table} values (7)")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_unnamed_parses_run_one_server_statement_shared_by_clients() {
    let proxy = Proxy::start(&one_data_connection(true)).await;
    let table = format!("workspace.unnamed_{}", std::process::id());
    make_table(&proxy, &table).await;
    let sql = format!("select v from {table}");
    let mut a = raw_login(proxy.port).await;
    let mut b = raw_login(proxy.port).await;
    for first in [true, false, true] {
        let got = unnamed_query(if first { &mut a } else { &mut b }, &sql).await;
        assert_eq!(got.tags, b"12DCZ", "ParseComplete, BindComplete, the row, CommandComplete, ReadyForQuery");
        assert_eq!(got.values, ["7"]);
    }
    // One statement on the server for the text, run three times: parsed once, by whichever client came first.
    let statements = server_statements(&mut a, &table).await;
    let ours: Vec<_> = statements.iter().filter(|s| s.ends_with(&sql)).collect();
    assert_eq!(ours.len(), 1, "{statements:?}");
    assert!(ours[0].contains(" 3 "), "ran three times: {statements:?}");

    // Off: the unnamed Parse goes as it is, nothing is prepared by pgsplit.
    drop(proxy);
    let off = Proxy::start(&one_data_connection(false)).await;
    // Its own DATA connection: the other proxy's statements are not on it.
    let mut c = raw_login(off.port).await;
    for _ in 0..2 {
        assert_eq!(unnamed_query(&mut c, &sql).await.values, ["7"]);
    }
    assert_eq!(server_statements(&mut c, &table).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_still_has_its_own_unnamed_statement() {
    let proxy = Proxy::start(&one_data_connection(true)).await;
    let table = format!("workspace.own_unnamed_{}", std::process::id());
    make_table(&proxy, &table).await;
    let mut s = raw_login(proxy.port).await;
    let mut out = BytesMut::new();

    // Parse with a parameter, Describe it: the client's own parameter types and row.
    frontend::parse("", "select $1::int + 1 as n", [23], &mut out).unwrap();
    frontend::describe(b'S', "", &mut out).unwrap();
    frontend::sync(&mut out);
    send(&mut s, &mut out).await;
    assert_eq!(answer(&mut s).await.tags, b"1tTZ");

    // A later batch binds the last unnamed statement without parsing it again.
    frontend::parse("", &format!("select v from {table}"), [], &mut out).unwrap();
    frontend::sync(&mut out);
    send(&mut s, &mut out).await;
    assert_eq!(answer(&mut s).await.tags, b"1Z");
    common::bind_execute("", &mut out);
    frontend::sync(&mut out);
    send(&mut s, &mut out).await;
    assert_eq!(answer(&mut s).await.values, ["7"]);

    // Another Parse replaces it, as on PostgreSQL.
    assert_eq!(unnamed_query(&mut s, &format!("select 'second' from {table}")).await.values, ["second"]);
    common::bind_execute("", &mut out);
    frontend::sync(&mut out);
    send(&mut s, &mut out).await;
    assert_eq!(answer(&mut s).await.values, ["second"]);

    // A Parse that fails: the server's error, and the next one works.
    let failed = unnamed_query(&mut s, "select nonsense from workspace.no_such_table").await;
    assert_eq!(failed.error.as_deref(), Some("42P01"));
    assert_eq!(failed.tags.last(), Some(&b'Z'));
    assert_eq!(unnamed_query(&mut s, &format!("select v + 1 from {table}")).await.values, ["8"]);

    // One batch, several unnamed Parses: each Bind binds the Parse before it, whether its server-side statement is
    // new or already there, and a Bind before any Parse of the batch binds the last one of the previous batch.
    for _ in 0..2 {
        common::bind_execute("", &mut out);
        for sql in [format!("select v * 10 from {table}"), format!("select v * 100 from {table}"), "select 1".into()] {
            parse_bind_execute("", &sql, &mut out);
        }
        frontend::sync(&mut out);
        send(&mut s, &mut out).await;
        let got = answer(&mut s).await;
        assert_eq!(got.values.len(), 4, "{got:?}");
        assert_eq!(&got.values[1..], ["70", "700", "1"], "{got:?}");
    }

    // Close of the unnamed statement: CloseComplete, as on PostgreSQL.
    frontend::close(b'S', "", &mut out).unwrap();
    frontend::sync(&mut out);
    send(&mut s, &mut out).await;
    assert_eq!(answer(&mut s).await.tags, b"3Z");
}

/// DDL through pgsplit moves the target's catalog generation on: the next unnamed Parse of the same text is a new
/// server-side statement, planned against the new catalog, as an unnamed Parse on a direct connection is; never
/// PostgreSQL's "cached plan must not change result type" (which DDL made elsewhere gives once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_ddl_through_pgsplit_the_same_unnamed_text_runs_in_its_new_shape() {
    let proxy = Proxy::start(&one_data_connection(true)).await;
    let table = format!("workspace.unnamed_ddl_{}", std::process::id());
    make_table(&proxy, &table).await;
    let sql = format!("select v from {table}");
    let mut s = raw_login(proxy.port).await;
    assert_eq!(unnamed_query(&mut s, &sql).await.values, ["7"]);
    let c = proxy.connect().await;
    c.batch_execute(&format!("alter table {table} alter v type text using 'seven'")).await.unwrap();
    let got = unnamed_query(&mut s, &sql).await;
    assert_eq!((got.error, got.values), (None, vec!["seven".to_owned()]));
    // tokio-postgres's own unnamed statements (query_typed) see it too.
    let row = c.query_typed(&sql, &[]).await.unwrap_or_else(|e| panic!("{}", sqlstate(&e)));
    assert_eq!(row[0].get::<_, String>(0), "seven");

    // DDL made elsewhere, directly on DATA: the server-side statement's row changed, and its next use gets
    // PostgreSQL's error for a prepared statement (the price README's *Unnamed statements* names); that refusal
    // starts a new generation, so the next Parse of the text is planned against the new catalog.
    common::direct(&common::clusters().data, "handled_data", &format!("alter table {table} alter v type int using 8")).await;
    let got = unnamed_query(&mut s, &sql).await;
    assert_eq!(got.error.as_deref(), Some("0A000"), "{got:?}");
    let got = unnamed_query(&mut s, &sql).await;
    assert_eq!((got.error, got.values), (None, vec!["8".to_owned()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_extended_runs_clean_with_more_clients_than_the_pool() {
    let yaml = config_yaml("verify-full", "prepare_unnamed: true\n")
        .replace("default_target: primary", "default_target: data")
        .replace("pool: { max: 10, checkout_timeout: 3s }", "pool: { max: 3, checkout_timeout: 10s }");
    let proxy = Proxy::start(&yaml).await;
    let url = format!("postgresql://app:{APP_PASSWORD}@127.0.0.1:{}/handled?sslmode=disable", proxy.port);
    let out = tokio::task::spawn_blocking(move || {
        let pgbench = |args: &[&str]| std::process::Command::new(common::pg_tool("pgbench")).args(args).output().unwrap();
        let init = pgbench(&["-i", "-s", "1", "-q", &url]);
        assert!(init.status.success(), "pgbench -i: {}", String::from_utf8_lossy(&init.stderr));
        pgbench(&["-M", "extended", "-c", "10", "-j", "10", "-t", "100", "-n", &url])
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("number of transactions actually processed: 1000/1000"), "{stdout}");
    assert!(stdout.contains("number of failed transactions: 0"), "{stdout}");
}
