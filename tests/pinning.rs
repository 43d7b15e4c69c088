//! Pinning: what cannot be replayed on another server connection (LISTEN, temporary tables, session advisory
//! locks, cursors WITH HOLD, SQL PREPARE) keeps the session on its connection until it disconnects, notifications
//! arrive while the client is idle, and nothing pinned reaches another client.

mod common;

use std::time::Duration;

use common::{clusters, config_yaml, direct, scalar, Proxy};

/// A proxy whose DATA pool has two connections, so an unpinned session would soon land on another one.
async fn small_data_pool() -> Proxy {
    Proxy::start(
        &config_yaml("verify-full", "")
            .replace("pool: { max: 10, checkout_timeout: 3s }", "pool: { max: 2, checkout_timeout: 10s }"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_tables_and_sql_prepare_stay_usable_for_the_whole_session() {
    let proxy = small_data_pool().await;
    let c = proxy.connect().await;
    let others: Vec<_> = futures_lite(&proxy, 3).await;
    c.simple_query("/* pgsplit: target=data */ create temporary table scratch (v int)").await.unwrap();
    c.simple_query("/* pgsplit: target=data */ prepare pick as select 40 + 2").await.unwrap();
    for round in 0..10 {
        // Other clients keep the other DATA connection busy in between.
        for o in &others {
            o.simple_query("select count(*) from reference.countries").await.unwrap();
        }
        c.simple_query(&format!("/* pgsplit: target=data */ insert into scratch values ({round})")).await.unwrap();
        assert_eq!(scalar(&c, "/* pgsplit: target=data */ execute pick").await, "42");
    }
    assert_eq!(scalar(&c, "/* pgsplit: target=data */ select count(*) from scratch").await, "10");
    assert_eq!(proxy.app.pinned_sessions().load(std::sync::atomic::Ordering::Relaxed), 1);
    drop(c);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(proxy.app.pinned_sessions().load(std::sync::atomic::Ordering::Relaxed), 0);
    // The pinned connection was closed, not handed on with its temporary table.
    for o in &others {
        let err = o.simple_query("/* pgsplit: target=data */ select * from scratch").await.unwrap_err();
        assert_eq!(common::sqlstate(&err), "42P01");
    }
}

async fn futures_lite(proxy: &Proxy, n: usize) -> Vec<tokio_postgres::Client> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(proxy.connect().await);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_delivers_notifications_while_the_client_is_idle() {
    let proxy = small_data_pool().await;
    let dsn = proxy.dsn();
    let (listener, mut conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                    let _ = tx.send(n.payload().to_owned());
                }
                Some(Ok(_)) => {}
                _ => break,
            }
        }
    });
    listener.simple_query("/* pgsplit: target=data */ listen imports_done").await.unwrap();
    let talker = proxy.connect().await;
    talker.simple_query("/* pgsplit: target=data */ notify imports_done, 'batch-7'").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("notification within 5 s");
    assert_eq!(got.as_deref(), Some("batch-7"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_advisory_locks_are_released_when_the_client_disconnects() {
    let proxy = small_data_pool().await;
    let c = proxy.connect().await;
    assert_eq!(scalar(&c, "/* pgsplit: target=data */ select pg_advisory_lock(4242)::text").await, "");
    let held =
        direct(&clusters().data, "handled_data", "select count(*) from pg_locks where locktype = 'advisory' and objid = 4242")
            .await;
    assert_eq!(held, "1");
    // Still held by the same session across statements.
    assert_eq!(scalar(&c, "/* pgsplit: target=data */ select pg_advisory_unlock(4242)::text").await, "true");
    assert_eq!(scalar(&c, "/* pgsplit: target=data */ select pg_advisory_lock(4242)::text").await, "");
    drop(c);
    let mut free = String::new();
    for _ in 0..50 {
        free = direct(
            &clusters().data,
            "handled_data",
            "select count(*) from pg_locks where locktype = 'advisory' and objid = 4242",
        )
        .await;
        if free == "0" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(free, "0", "the lock went with the closed connection");
}

/// Every way of making a temporary object pins the session, so no other client can reach it (issue 16, point 7): with
/// one server connection per target, another client waits for it (53300), and once the creator has left, the
/// connection it held is gone and the object with it (42P01), as with a direct connection per client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_objects_made_any_way_are_never_seen_by_another_client() {
    let yaml = config_yaml("verify-full", "")
        .replace("pool: { max: 5, checkout_timeout: 3s }", "pool: { max: 1, checkout_timeout: 1s }")
        .replace("pool: { max: 10, checkout_timeout: 3s }", "pool: { max: 1, checkout_timeout: 1s }");
    let proxy = Proxy::start(&yaml).await;
    let id = std::process::id();
    // Temporary tables made where no parser sees them: in a function's or a procedure's body (on PRIMARY, where
    // the unqualified names below go).
    direct(
        &clusters().primary,
        "handled_primary",
        &format!(
            "create or replace function config.make_temp_{id}(name text) returns int language plpgsql as \
             $$ begin execute format('create temp table %I (id int)', name); return 1; end $$; \
             create or replace procedure config.make_temp_proc_{id}(name text) language plpgsql as \
             $$ begin execute format('create temp table %I (id int)', name); end $$"
        ),
    )
    .await;
    let by_function = format!("select config.make_temp_{id}('{{}}')");
    let by_procedure = format!("call config.make_temp_proc_{id}('{{}}')");
    let forms = [
        (by_function.as_str(), false),
        (by_function.as_str(), true),
        (by_procedure.as_str(), false),
        ("create temp table {} (id int)", false),
        ("create temp table {} (id int)", true),
        ("create table pg_temp.{} (id int)", false),
        ("create table pg_temp.{} (id int)", true),
        ("create temp table {} as select 1 as x", false),
        ("select 1 as x into temp table {}", false),
        ("do $$ begin create temp table {} (id int); end $$", false),
        ("create temporary view {} as select 1", false),
        ("begin; create temp table {}(id int); commit", false),
        ("create local temporary table {} (id int)", false),
        ("set search_path to pg_temp, public; create table {}(id int)", false),
    ];
    for (i, (form, extended)) in forms.iter().enumerate() {
        let name = format!("tmp_{id}_{i}");
        let sql = form.replace("{}", &name);
        let a = proxy.connect().await;
        let made = if *extended { a.execute(sql.as_str(), &[]).await.map(drop) } else { a.batch_execute(&sql).await };
        made.unwrap_or_else(|e| panic!("{sql}: {e}"));
        let b = proxy.connect().await;
        let seen = b.simple_query(&format!("select count(*) from {name}")).await.map(drop);
        assert_eq!(seen.map_err(|e| common::sqlstate(&e)), Err("53300".into()), "{sql}: another client reached it");
        assert_eq!(scalar(&a, &format!("select count(*) >= 0 from {name}")).await, "t", "{sql}: its creator still has it");
        drop(a);
        // The creator's connection closes with it; the next client gets a new one, without the object.
        let mut gone = Err(String::new());
        for _ in 0..50 {
            gone = b.simple_query(&format!("select count(*) from {name}")).await.map(drop).map_err(|e| common::sqlstate(&e));
            if gone != Err("53300".into()) {
                break;
            }
        }
        assert_eq!(gone, Err("42P01".into()), "{sql}: after its creator left");
    }
}

/// Single mode pins as split mode does (issue 16, point 7): a temporary table made in single mode, where texts are
/// not routed, stays its creator's and no other client reaches it; a client's DEALLOCATE ALL there drops only its
/// own statements, never those pgsplit prepared on the server for other clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_mode_keeps_temporary_tables_and_prepared_statements_to_their_session() {
    let yaml = config_yaml("verify-full", "mode: single\n")
        .replace("pool: { max: 5, checkout_timeout: 3s }", "pool: { max: 2, checkout_timeout: 10s }");
    let proxy = Proxy::start(&yaml).await;
    let a = proxy.connect().await;
    a.batch_execute("create temporary table only_mine (v int)").await.unwrap();
    a.batch_execute("insert into only_mine values (1)").await.unwrap();
    let b = proxy.connect().await;
    let err = b.simple_query("select count(*) from only_mine").await.expect_err("another client reached a temporary table");
    assert_eq!(common::sqlstate(&err), "42P01");
    assert_eq!(scalar(&a, "select count(*) from only_mine").await, "1");
    drop(a);

    let c = proxy.connect().await;
    let stmt = c.prepare("select count(*) from config.users where name <> $1").await.unwrap();
    c.query_one(&stmt, &[&"nobody"]).await.unwrap();
    b.batch_execute("deallocate all").await.unwrap();
    let rows = c.query(&stmt, &[&"nobody"]).await.expect("the statement survives another client's DEALLOCATE ALL");
    assert_eq!(rows.len(), 1);
}
