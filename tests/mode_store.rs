//! One switch for a fleet (issue 21, point 4): three instances with `mode_store: primary` follow the mode kept in
//! `pgsplit.mode` on PRIMARY. A flip on one instance's console (and an UPDATE by hand) reaches all three while each
//! has writers running, and every acknowledged insert exists exactly once. With PRIMARY refusing connections the
//! instances keep the last mode and `/api/health` says the store is unreachable and when the mode was last seen.
//! One test: it makes PRIMARY refuse connections.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use pgsplit::config::Mode;

const ADMIN_PASSWORD: &str = "admin-secret";

fn fleet_yaml() -> String {
    // Hourly re-reads: the flips below must come from the notifications.
    config_yaml("verify-full", "mode_store: primary\nhealth_interval: 1h\n")
        .replace("admin_users: []", "admin_users: [admin]")
        .replace("users:\n", &format!("users:\n  - {{ name: admin, password: \"{ADMIN_PASSWORD}\" }}\n"))
}

async fn admin(port: u16) -> tokio_postgres::Client {
    let dsn = format!("host=127.0.0.1 port={port} user=admin password={ADMIN_PASSWORD} dbname=pgsplit sslmode=disable");
    let (c, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await.expect("admin console");
    tokio::spawn(conn);
    c
}

/// Waits (at most 5 s: notifications, not the hourly re-read) until every instance runs in `mode`.
async fn all_in(fleet: &[Proxy], mode: Mode) {
    let started = Instant::now();
    while fleet.iter().any(|p| p.app.mode() != mode) {
        let modes: Vec<Mode> = fleet.iter().map(|p| p.app.mode()).collect();
        assert!(started.elapsed() < Duration::from_secs(5), "not all in {mode:?}: {modes:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn health(proxy: &Proxy) -> serde_json::Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind http");
    let addr = listener.local_addr().expect("addr");
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(pgsplit::http::serve(listener, Arc::downgrade(&proxy.app), stop.clone()));
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET /api/health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await.expect("send");
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.expect("read");
    stop.cancel();
    let (_, body) = raw.split_once("\r\n\r\n").expect("body");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Writers through `proxy` until `stop`: single inserts and two-insert transactions, each key acknowledged once.
fn writers(proxy: &Proxy, name: &'static str, stop: &Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<Vec<(String, i64)>>> {
    let dsn = proxy.dsn();
    (0..2)
        .map(|w| {
            let (dsn, stop) = (dsn.clone(), stop.clone());
            tokio::spawn(async move {
                let (c, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await.expect("writer");
                tokio::spawn(conn);
                let mut acknowledged = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) || n < 10 {
                    let key = format!("fleet-{name}-{w}-{n}");
                    let insert = format!("insert into workspace.imports (file_name, row_count) values ('{key}', 1)");
                    if n % 2 == 0 {
                        c.batch_execute(&format!("begin; {insert}; {insert}; commit")).await.expect("transaction");
                        acknowledged.push((key, 2));
                    } else {
                        c.batch_execute(&insert).await.expect("insert");
                        acknowledged.push((key, 1));
                    }
                    n += 1;
                }
                acknowledged
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_switch_flips_three_instances_under_load_and_an_unreachable_store_keeps_the_last_mode() {
    let c = clusters();
    direct(
        &c.primary,
        "handled_primary",
        "drop schema if exists pgsplit cascade; create schema if not exists workspace authorization pgsplit; \
         create table if not exists workspace.imports (id serial primary key, file_name text not null, \
         row_count int not null, created_at timestamptz not null default now()); alter table workspace.imports owner to pgsplit",
    )
    .await;
    let yaml = fleet_yaml();
    let fleet = vec![Proxy::start(&yaml).await, Proxy::start(&yaml).await, Proxy::start(&yaml).await];
    let started = Instant::now();
    while fleet.iter().any(|p| !p.app.mode_store().is_some_and(|s| s.state().listening)) {
        assert!(started.elapsed() < Duration::from_secs(15), "the instances did not reach the store");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    all_in(&fleet, Mode::Split).await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut running = Vec::new();
    for (p, name) in fleet.iter().zip(["a", "b", "c"]) {
        running.extend(writers(p, name, &stop));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let console = admin(fleet[0].port).await;
    console.simple_query("SET mode = single").await.expect("SET mode on one instance");
    all_in(&fleet, Mode::Single).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // By hand on the store: the trigger tells every instance.
    direct(&c.primary, "handled_primary", "update pgsplit.mode set mode = 'split'").await;
    all_in(&fleet, Mode::Split).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    admin(fleet[2].port).await.simple_query("SET mode = single").await.expect("SET mode on another");
    all_in(&fleet, Mode::Single).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut expected = Vec::new();
    for w in running {
        expected.extend(w.await.expect("writer ran without errors"));
    }
    let count_on = |cluster: &'static pgsplit::cluster::Cluster, db: &'static str| async move {
        let sql = "select file_name || '=' || count(*) from workspace.imports where file_name like 'fleet-%' group by file_name";
        direct(cluster, db, sql).await.lines().map(str::to_owned).collect::<Vec<_>>()
    };
    let (on_primary, on_data) = (count_on(&c.primary, "handled_primary").await, count_on(&c.data, "handled_data").await);
    assert!(!on_primary.is_empty() && !on_data.is_empty(), "both modes served writes");
    let mut found = std::collections::HashMap::new();
    for line in on_primary.iter().chain(&on_data) {
        let (key, n) = line.rsplit_once('=').expect("key=count");
        assert!(found.insert(key.to_owned(), n.parse::<i64>().expect("count")).is_none(), "{key} is on both databases");
    }
    assert!(expected.len() >= 60, "{}", expected.len());
    for (key, rows) in &expected {
        assert_eq!(found.get(key), Some(rows), "{key}: acknowledged rows exist exactly once, on one database");
    }
    let h = health(&fleet[1]).await;
    assert_eq!(h["mode"], "single");
    assert_eq!(h["mode_store"]["status"], "listening", "{h}");
    assert!(h["mode_store"]["last_seen"].as_str().is_some_and(|t| t.ends_with('Z')), "{h}");

    // The store refuses connections and the instances' connections to it end: the last mode stays, and it is said.
    direct(&c.primary, "postgres", "alter database handled_primary allow_connections false").await;
    direct(
        &c.primary,
        "postgres",
        "select pg_terminate_backend(pid) from pg_stat_activity where datname = 'handled_primary' and pid <> pg_backend_pid()",
    )
    .await;
    let started = Instant::now();
    let h = loop {
        let h = health(&fleet[1]).await;
        if h["mode_store"]["status"] == "unreachable" {
            break h;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the store still looks reachable: {h}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let refused = console.simple_query("SET mode = split").await.expect_err("no switch without the store");
    assert_eq!(sqlstate(&refused), "08006", "{refused}");
    assert!(fleet.iter().all(|p| p.app.mode() == Mode::Single), "a refused switch changes nothing");
    direct(&c.primary, "postgres", "alter database handled_primary allow_connections true").await;
    assert_eq!(h["mode"], "single", "the last mode stays");
    assert!(h["mode_store"]["last_seen"].as_str().is_some(), "{h}");
    assert!(h["mode_store"]["error"].as_str().is_some_and(|e| !e.is_empty()), "{h}");
    assert!(fleet.iter().all(|p| p.app.mode() == Mode::Single));
    // Back: the instances reach the store again.
    let started = Instant::now();
    while fleet.iter().any(|p| !p.app.mode_store().is_some_and(|s| s.state().listening)) {
        assert!(started.elapsed() < Duration::from_secs(60), "the instances did not come back to the store");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    console.simple_query("SET mode = split").await.expect("SET mode once the store is back");
    all_in(&fleet, Mode::Split).await;
}
