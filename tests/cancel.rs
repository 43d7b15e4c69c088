//! Cancel through pgsplit: a CancelRequest with the key pgsplit gave the client stops its statement on DATA (plain)
//! and on PRIMARY (TLS), ends a wait for a server connection, never reaches another client's statement, and
//! unknown keys are ignored.

mod common;

use std::time::{Duration, Instant};

use common::{config_yaml, scalar, sqlstate, Proxy};

async fn cancel_during(proxy: &Proxy, sql: &'static str) -> (String, Duration) {
    let c = proxy.connect().await;
    let token = c.cancel_token();
    let started = Instant::now();
    let running = tokio::spawn(async move { c.simple_query(sql).await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    token.cancel_query(tokio_postgres::NoTls).await.expect("cancel request sent");
    let err = running.await.unwrap().expect_err("the statement was cancelled");
    (sqlstate(&err), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_statement_on_data_and_on_primary_over_tls() {
    let proxy = Proxy::split().await;
    let (code, took) = cancel_during(&proxy, "select pg_sleep(30) from reference.countries limit 1").await;
    assert_eq!(code, "57014");
    assert!(took < Duration::from_secs(2), "DATA cancel took {took:?}");
    let (code, took) = cancel_during(&proxy, "select pg_sleep(30) from config.users limit 1").await;
    assert_eq!(code, "57014");
    assert!(took < Duration::from_secs(2), "PRIMARY (TLS) cancel took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_ends_a_wait_for_a_server_connection() {
    let yaml = config_yaml("verify-full", "")
        .replace("pool: { max: 10, checkout_timeout: 3s }", "pool: { max: 1, checkout_timeout: 20s }");
    let proxy = Proxy::start(&yaml).await;
    let holder = proxy.connect().await;
    holder.simple_query("begin").await.unwrap();
    holder.simple_query("select 1 from workspace.imports limit 1").await.unwrap();
    let (code, took) = cancel_during(&proxy, "select count(*) from workspace.imports").await;
    assert_eq!(code, "57014");
    assert!(took < Duration::from_secs(2), "queued cancel took {took:?}");
    holder.simple_query("commit").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_cancel_never_reaches_another_clients_statement() {
    // One DATA connection: A's finished statement ran on the same server process B now uses.
    let yaml = config_yaml("verify-full", "")
        .replace("pool: { max: 10, checkout_timeout: 3s }", "pool: { max: 1, checkout_timeout: 20s }");
    let proxy = Proxy::start(&yaml).await;
    let a = proxy.connect().await;
    let b = proxy.connect().await;
    assert_eq!(scalar(&a, "select count(*) > 0 from reference.countries").await, "t");
    let a_token = a.cancel_token();
    let running =
        tokio::spawn(async move { b.simple_query("select pg_sleep(1) from reference.countries limit 1").await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(200)).await;
    a_token.cancel_query(tokio_postgres::NoTls).await.expect("cancel request sent");
    running.await.unwrap().expect("B's statement was not cancelled by A's key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_cancel_keys_are_ignored() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let proxy = Proxy::split().await;
    let c = proxy.connect().await;
    let running =
        tokio::spawn(async move { c.simple_query("select pg_sleep(1) from reference.countries limit 1").await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    let mut packet = vec![0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e];
    packet.extend_from_slice(&7i32.to_be_bytes());
    packet.extend_from_slice(&9i32.to_be_bytes());
    s.write_all(&packet).await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(rest.is_empty(), "pgsplit answers a cancel request with nothing");
    running.await.unwrap().expect("statement unaffected");
}

/// Polls `check` every 100 ms for up to 20 s; true once it holds.
async fn eventually(mut check: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..200 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A client that goes away while its statement runs ends its session in pgsplit at once, and the statement is
/// cancelled on its server instead of running to its end on a connection of the target's budget (issue 16, point
/// 10); the same for a client that goes away while it waits for a server connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_mid_statement_or_mid_wait_ends_its_session_and_its_statement() {
    use tokio::io::AsyncWriteExt;
    let yaml = config_yaml("verify-full", "")
        .replace("pool: { max: 10, checkout_timeout: 3s }", "pool: { max: 1, checkout_timeout: 60s }");
    let proxy = Proxy::start(&yaml).await;
    let clients = || proxy.app.metrics().clients();
    let tag = format!("gone_{}", std::process::id());
    let running = |tag: String| async move {
        let sql = format!("select count(*) from pg_stat_activity where query like '%{tag}%' and pid <> pg_backend_pid()");
        common::direct(&common::clusters().data, "handled_data", &sql).await != "0"
    };
    let mut s = common::raw_login(proxy.port).await;
    let mut q = bytes::BytesMut::new();
    common::encode_query_bytes(format!("select pg_sleep(60) /* {tag} */ from reference.countries limit 1").as_bytes(), &mut q);
    s.write_all(&q).await.unwrap();
    assert!(eventually(async || running(tag.clone()).await).await, "the statement started");
    let before = clients();
    drop(s);
    assert!(eventually(async || clients() < before).await, "the session ended while its statement ran");
    assert!(eventually(async || !running(tag.clone()).await).await, "the statement was cancelled on DATA");

    // Waiting for DATA's only connection, held by a transaction: the waiting client leaves.
    let holder = proxy.connect().await;
    holder.simple_query("begin; select 1 from workspace.imports limit 1").await.unwrap();
    let mut s = common::raw_login(proxy.port).await;
    let mut q = bytes::BytesMut::new();
    common::encode_query_bytes(b"select count(*) from workspace.imports", &mut q);
    s.write_all(&q).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = clients();
    drop(s);
    assert!(eventually(async || clients() < before).await, "the session ended while it waited for a connection");
    holder.simple_query("commit").await.unwrap();
}
