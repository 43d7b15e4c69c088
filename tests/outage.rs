//! Outages: while one target is down its clients get a clear error naming it and every other target keeps
//! serving; when it returns pgsplit reconnects by itself. Alone in its binary: it stops the shared clusters.

mod common;

use std::time::{Duration, Instant};

use common::{clusters, scalar, sqlstate, Proxy};

/// The tests here stop and disturb the shared clusters: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `sql` until it succeeds, for at most `limit`; returns how long that took.
async fn until_it_works(c: &tokio_postgres::Client, sql: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if c.simple_query(sql).await.is_ok() {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "{sql} still failing after {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_target_down_and_back_without_a_restart() {
    let _serial = SERIAL.lock().await;
    let proxy = Proxy::split().await;
    let c = proxy.connect().await;
    assert_eq!(scalar(&c, "select count(*) > 0 from reference.countries").await, "t");
    assert_eq!(scalar(&c, "select count(*) > 0 from config.users").await, "t");
    let cl = clusters();
    for (down, up_sql, down_sql, name) in [
        (&cl.data, "select count(*) from config.users", "select count(*) from reference.countries", "data"),
        (&cl.primary, "select count(*) from reference.countries", "select count(*) from config.users", "primary"),
    ] {
        down.stop().await.expect("stop target");
        let err = c.simple_query(down_sql).await.expect_err("the stopped target's statement fails");
        let code = sqlstate(&err);
        assert!(["08006", "08001", "57P01"].contains(&code.as_str()), "{name}: {code}: {err:?}");
        let msg = err.as_db_error().map(|e| e.message().to_owned()).unwrap_or_default();
        assert!(msg.contains(name), "the error names the target: {msg}");
        // The other target is unaffected, in the same session and in a new one.
        c.simple_query(up_sql).await.expect("the other target keeps serving");
        let fresh = proxy.connect().await;
        fresh.simple_query(up_sql).await.expect("new sessions are served too");
        down.start().await.expect("restart target");
        let took = until_it_works(&c, down_sql, Duration::from_secs(15)).await;
        assert!(took < Duration::from_secs(15), "{name} back after {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_process_killed_mid_statement_is_an_error_naming_the_target_and_the_session_goes_on() {
    let _serial = SERIAL.lock().await;
    let proxy = Proxy::split().await;
    let c = proxy.connect().await;
    let running = tokio::spawn(async move {
        let r = c.simple_query("select pg_sleep(20) from reference.countries limit 1").await;
        (c, r)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    common::direct(&clusters().data, "handled_data", "select count(pg_terminate_backend(pid)) from pg_stat_activity where query like 'select pg_sleep(20)%' and pid <> pg_backend_pid()").await;
    let (c, r) = running.await.unwrap();
    let err = r.expect_err("the statement's server process was terminated");
    assert_eq!(sqlstate(&err), "57P01");
    let msg = err.as_db_error().map(|e| e.message().to_owned()).unwrap_or_default();
    assert!(msg.contains("target \"data\""), "{msg}");
    assert_eq!(scalar(&c, "select count(*) > 0 from reference.countries").await, "t", "the client's session goes on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_probes_see_outages_without_traffic_and_a_returning_target_gets_its_catalog() {
    let _serial = SERIAL.lock().await;
    let data = &clusters().data;
    data.stop().await.expect("stop DATA");
    // Started while DATA is down: DATA's catalog cannot be read, so names on a routed search_path cannot resolve.
    let proxy = Proxy::split().await;
    let (c, conn) =
        tokio_postgres::connect(&format!("{} options='-c search_path=workspace'", proxy.dsn()), tokio_postgres::NoTls)
            .await
            .expect("connect");
    tokio::spawn(conn);
    let err = c.simple_query("select count(*) from imports").await.expect_err("DATA is down");
    assert_eq!(sqlstate(&err), "08006");
    assert!(!proxy.app.backend(1).is_up());
    data.start().await.expect("start DATA");
    // No statement needs DATA meanwhile: the probe notices it is back and reads its catalog.
    let started = Instant::now();
    while !proxy.app.backend(1).is_up() || proxy.app.catalog().target(1).is_none() {
        assert!(started.elapsed() < Duration::from_secs(15), "DATA not seen back after {:?}", started.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(scalar(&c, "select count(*) > 0 from imports").await, "t");
    // Down again, still without traffic to it: the probe marks it down.
    data.stop().await.expect("stop DATA");
    let started = Instant::now();
    while proxy.app.backend(1).is_up() {
        assert!(started.elapsed() < Duration::from_secs(15), "outage not noticed after {:?}", started.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    data.start().await.expect("start DATA");
    until_it_works(&c, "select count(*) from imports", Duration::from_secs(15)).await;
}

/// Waits until the client's connection is closed (its session ended), for at most `limit`.
async fn closed_within(c: &tokio_postgres::Client, limit: Duration) -> bool {
    let started = Instant::now();
    while !c.is_closed() && started.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.is_closed()
}

/// A server process terminated while it held the client's session (its transaction, or its pin) ends the client's
/// session as it ends a direct connection: the client gets a FATAL (the server's own 57P01 when pgsplit read it before
/// the socket closed) and is disconnected, so its pool notices. Autocommit work on a terminated connection goes on
/// (above): nothing of the session lived there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_server_process_holding_a_transaction_or_a_pin_ends_the_client_session() {
    let _serial = SERIAL.lock().await;
    let proxy = Proxy::split().await;
    let c = proxy.connect().await;
    c.simple_query("begin").await.unwrap();
    let pid = scalar(&c, "select pg_backend_pid() from reference.countries limit 1").await;
    common::direct(&clusters().data, "handled_data", &format!("select pg_terminate_backend({pid})")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let err = c.simple_query("select count(*) from reference.countries").await.expect_err("the transaction is gone");
    let db = err.as_db_error().unwrap_or_else(|| panic!("a server error, not {err:?}"));
    assert_eq!(db.severity(), "FATAL", "{err:?}");
    assert!(["57P01", "08006"].contains(&db.code().code()), "{err:?}");
    assert!(closed_within(&c, Duration::from_secs(5)).await, "the client's connection is closed");

    let p = proxy.connect().await;
    p.simple_query("listen pgsplit_fatal_test").await.unwrap();
    let pid = scalar(&p, "select pg_backend_pid()").await;
    common::direct(&clusters().primary, "handled_primary", &format!("select pg_terminate_backend({pid})")).await;
    assert!(closed_within(&p, Duration::from_secs(5)).await, "the pinned client's connection is closed");

    let fresh = proxy.connect().await;
    assert_eq!(scalar(&fresh, "select count(*) > 0 from reference.countries").await, "t", "other sessions go on");
}
