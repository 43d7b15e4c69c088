//! PRIMARY's budget across logins (issue 20, points 1 and 4), alone in its test binary: the clusters are this
//! binary's own, so every pgsplit connection PRIMARY sees is this test's.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::logins::{connect, roles, yaml};
use common::{clusters, direct, scalar, Proxy};

/// PRIMARY's budget (pool.max 3 here) holds for the target as a whole while three users with three logins hammer
/// it: sampled from PRIMARY itself, pgsplit never has more than 3 connections there, and every transaction of every
/// user succeeds (waiting its turn, the idle connections of another login closed to make room).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_budget_holds_across_logins_with_three_users_hammering_it() {
    roles().await;
    let proxy = Arc::new(Proxy::start(&yaml(3)).await);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut most, mut seen) = (0usize, HashSet::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let out = direct(
                    &clusters().primary,
                    "handled_primary",
                    "select usename from pg_stat_activity where application_name = 'pgsplit' and datname = 'handled_primary'",
                )
                .await;
                let names: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
                most = most.max(names.len());
                seen.extend(names.iter().map(|s| s.to_string()));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (most, seen)
        })
    };
    let mut clients = Vec::new();
    for (user, password) in [("alice", "alice-pw"), ("bob", "bob-pw"), ("carol", "carol-pw")] {
        for _ in 0..3 {
            let c = connect(proxy.port, user, password).await;
            clients.push(tokio::spawn(async move {
                for _ in 0..25 {
                    let got = scalar(&c, "select count(*) >= 0 from customer.accounts, pg_sleep(0.002)").await;
                    assert_eq!(got, "t");
                }
            }));
        }
    }
    for c in clients {
        c.await.expect("every transaction of every user succeeds");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (most, seen) = sampler.await.unwrap();
    assert!(most <= 3, "PRIMARY had {most} connections of pgsplit: over its budget of 3");
    for login in ["alice_srv", "pgsplit", "carol"] {
        assert!(seen.contains(login), "{login} logged in on PRIMARY during the run: {seen:?}");
    }
}
