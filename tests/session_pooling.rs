//! Session pooling (`pool_mode: session`, issue 16 point 8): a client keeps its server connections for its whole
//! session, BackendKeyData carries its own backend's process id and secret, and when it leaves the connection is
//! reset (`DISCARD ALL`) and given back to the pool. The mode is chosen as PgBouncer chooses it: the user's
//! `pool_mode`, else the database's (a passthrough target's), else the top-level one.

mod common;

use std::time::Duration;

use common::{config_yaml, scalar, sqlstate, Proxy, APP_PASSWORD};

fn yaml(top: &str, user: &str, primary: &str) -> String {
    config_yaml("verify-full", top)
        .replace(
            &format!("  - {{ name: app, password: \"{APP_PASSWORD}\" }}"),
            &format!("  - {{ name: app, password: \"{APP_PASSWORD}\"{user} }}"),
        )
        .replace("    schemas: [config, customer]\n", &format!("    schemas: [config, customer]\n{primary}"))
}

async fn connect_to(proxy: &Proxy, db: &str) -> tokio_postgres::Client {
    let url = format!("postgresql://app:{APP_PASSWORD}@127.0.0.1:{}/{db}?sslmode=disable", proxy.port);
    let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(conn);
    c
}

/// The process id in BackendKeyData and what `pg_backend_pid()` answers on the same connection, by the raw protocol.
async fn key_and_backend_pid(proxy: &Proxy, db: &str) -> (String, String) {
    use postgres_protocol::message::backend::Message;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut s, reported) = common::raw_login_with(proxy.port, &[("database", db)]).await;
    let key = reported.iter().find(|(k, _)| k == "BackendKeyData.pid").map(|(_, v)| v.clone()).expect("BackendKeyData");
    let mut q = bytes::BytesMut::new();
    common::encode_query_bytes(b"select pg_backend_pid()", &mut q);
    s.write_all(&q).await.unwrap();
    let mut buf = bytes::BytesMut::new();
    let mut pid = None;
    loop {
        match Message::parse(&mut buf).expect("server message") {
            Some(Message::DataRow(r)) => {
                let range = fallible_iterator::FallibleIterator::next(&mut r.ranges()).ok().flatten().flatten().expect("a value");
                pid = Some(String::from_utf8_lossy(&r.buffer()[range]).into_owned());
            }
            Some(Message::ReadyForQuery(_)) => return (key, pid.expect("a row")),
            Some(_) => {}
            None => assert!(s.read_buf(&mut buf).await.unwrap() > 0, "closed"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_pooled_client_has_its_own_backends_for_its_whole_session() {
    let proxy = Proxy::start(&yaml("pool_mode: session\n", "", "")).await;
    // BackendKeyData is the backend's own key: drivers compare it with pg_backend_pid().
    let (key, pid) = key_and_backend_pid(&proxy, "handled").await;
    assert_eq!(key, pid);

    let c = proxy.connect().await;
    let home = scalar(&c, "select pg_backend_pid()").await;
    let data = scalar(&c, "select pg_backend_pid() from reference.countries limit 1").await;
    for _ in 0..5 {
        c.simple_query("begin; select 1 from workspace.imports limit 1; commit").await.unwrap();
        assert_eq!(scalar(&c, "select pg_backend_pid()").await, home, "PRIMARY: the same backend every time");
        assert_eq!(scalar(&c, "select pg_backend_pid() from reference.countries limit 1").await, data, "DATA too");
    }
    // A NOTIFY's sender is the client's own backend.
    c.batch_execute("listen session_pooled; notify session_pooled").await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let url = format!("{} ", proxy.dsn());
    let (listener, mut conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(async move {
        let mut stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(m)) = futures_util::StreamExt::next(&mut stream).await {
            if let tokio_postgres::AsyncMessage::Notification(n) = m {
                let _ = tx.send(n.process_id());
            }
        }
    });
    listener.batch_execute("listen session_pooled").await.unwrap();
    let sender = scalar(&listener, "select pg_backend_pid()").await;
    listener.batch_execute("notify session_pooled").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("a notification").unwrap();
    assert_eq!(got.to_string(), sender);

    // Cancel with the key the client was given (the real one) reaches its statement.
    let token = c.cancel_token();
    let running = tokio::spawn(async move { c.simple_query("select pg_sleep(30)").await.map(drop) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(10), running).await.expect("cancelled").unwrap().unwrap_err();
    assert_eq!(sqlstate(&e), "57014");

    // Terminating its own backend ends the client's session, as on a direct connection.
    let c = proxy.connect().await;
    let e = c.simple_query("select pg_terminate_backend(pg_backend_pid())").await.unwrap_err();
    assert_eq!(sqlstate(&e), "57P01");
    for _ in 0..100 {
        if c.is_closed() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(c.is_closed(), "the session ended with its backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_pooled_backend_goes_back_to_the_pool_reset_when_its_client_leaves() {
    let yaml = yaml("pool_mode: session\n", "", "")
        .replace("pool: { max: 5, checkout_timeout: 3s }", "pool: { max: 1, checkout_timeout: 5s }");
    let proxy = Proxy::start(&yaml).await;
    let a = proxy.connect().await;
    let pid = scalar(&a, "select pg_backend_pid()").await;
    a.batch_execute("set work_mem = '7MB'; create temp table kept (id int); prepare p as select 1; listen somewhere")
        .await
        .unwrap();
    drop(a);
    // PRIMARY has one connection: the next session gets the same backend, once it is back and reset.
    let b = proxy.connect().await;
    assert_eq!(scalar(&b, "select pg_backend_pid()").await, pid, "the backend was reused");
    assert_eq!(scalar(&b, "show work_mem").await, "4MB");
    assert_eq!(sqlstate(&b.simple_query("select * from kept").await.unwrap_err()), "42P01");
    assert_eq!(scalar(&b, "select count(*) from pg_prepared_statements").await, "0");
    assert_eq!(scalar(&b, "select count(*) from pg_listening_channels()").await, "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_mode_is_the_users_else_the_databases_else_the_top_level_one() {
    // The user's session mode over the top-level transaction mode.
    let proxy = Proxy::start(&yaml("", ", pool_mode: session", "")).await;
    let (key, pid) = key_and_backend_pid(&proxy, "handled").await;
    assert_eq!(key, pid);
    // The user's transaction mode over the top-level session mode: pgsplit's own key.
    let proxy = Proxy::start(&yaml("pool_mode: session\n", ", pool_mode: transaction", "")).await;
    let (key, pid) = key_and_backend_pid(&proxy, "handled").await;
    assert_ne!(key, pid);
    // A passthrough target's own mode applies to that database only.
    let proxy = Proxy::start(&yaml("", "", "    pool_mode: session\n")).await;
    let (key, pid) = key_and_backend_pid(&proxy, "primary").await;
    assert_eq!(key, pid, "passthrough to primary: session");
    let (key, pid) = key_and_backend_pid(&proxy, "handled").await;
    assert_ne!(key, pid, "the logical database: transaction");
    let c = connect_to(&proxy, "primary").await;
    assert_eq!(scalar(&c, "select current_database()").await, "handled_primary");
}

/// Under session pooling a client's protocol-level statements are its own backend's, under its own names, as on a
/// direct connection (issue 16, point 6): SQL `EXECUTE` runs them, `pg_prepared_statements` lists exactly them, and a
/// Close removes them from the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_pooled_statements_share_one_namespace_with_sql_prepare() {
    let proxy = Proxy::start(&yaml("pool_mode: session\n", "", "")).await;
    let c = proxy.connect().await;
    let stmt = c.prepare("select 41 + 1").await.unwrap();
    let names = scalar(&c, "select string_agg(name, ',') from pg_prepared_statements").await;
    assert!(!names.is_empty() && !names.contains("pgsplit_"), "the client's own name: {names}");
    assert_eq!(scalar(&c, &format!("execute {names}")).await, "42", "SQL EXECUTE runs the protocol statement");
    c.batch_execute("prepare by_sql as select 7").await.unwrap();
    assert_eq!(c.query_one("execute by_sql", &[]).await.unwrap().get::<_, i32>(0), 7);
    drop(stmt);
    // tokio-postgres closes a dropped statement with its next request.
    assert_eq!(scalar(&c, "select string_agg(name, ',' order by name) from pg_prepared_statements").await, "by_sql");
    c.batch_execute("deallocate by_sql").await.unwrap();
    assert_eq!(scalar(&c, "select count(*) from pg_prepared_statements").await, "0");
}
