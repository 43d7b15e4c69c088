//! Pools per (target, server login) (issue 20, point 1): each user's server connections log in as its own
//! `server_user`, take its `role`, or use the client's own name where the target has that role, within the
//! target's one budget (`tests/logins_budget.rs`, alone in its binary so that no other test's connections count).
//! Against the real clusters (PRIMARY: TLS, SCRAM; DATA: plain).

mod common;

use std::collections::HashSet;

use common::logins::{connect, roles, yaml};
use common::{scalar, sqlstate, Proxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_sees_its_own_server_login_current_user_and_grants_through_one_pgsplit() {
    roles().await;
    let proxy = Proxy::start(&yaml(5)).await;
    let alice = connect(proxy.port, "alice", "alice-pw").await;
    let bob = connect(proxy.port, "bob", "bob-pw").await;
    let carol = connect(proxy.port, "carol", "carol-pw").await;
    let app = proxy.connect().await;
    let on_data = "select current_user::text from workspace.imports union all select current_user::text limit 1";
    let on_primary = "select current_user::text from customer.accounts union all select current_user::text limit 1";
    assert_eq!(scalar(&alice, on_data).await, "alice_srv", "server_user");
    assert_eq!(scalar(&bob, on_data).await, "bob_role", "role taken at login");
    assert_eq!(scalar(&carol, on_data).await, "carol", "the client's own name where the target has that role");
    assert_eq!(scalar(&app, on_data).await, "pgsplit", "no role of that name: the URL's login");
    assert_eq!(scalar(&alice, on_primary).await, "alice_srv");
    assert_eq!(scalar(&bob, on_primary).await, "bob_role");
    assert_eq!(scalar(&carol, on_primary).await, "carol");
    // The role stays through what resets a session.
    bob.batch_execute("reset role").await.unwrap();
    bob.batch_execute("discard all").await.unwrap();
    assert_eq!(scalar(&bob, on_data).await, "bob_role");
    // GRANTs are the server role's.
    assert_eq!(scalar(&alice, "select count(*)::text from workspace.alice_only").await, "1");
    for c in [&bob, &carol] {
        let err = c.simple_query("select count(*) from workspace.alice_only").await.unwrap_err();
        assert_eq!(sqlstate(&err), "42501");
    }
    assert_eq!(scalar(&app, "select count(*)::text from workspace.alice_only").await, "1", "pgsplit's login owns it");
    let reply = pgsplit::admin::execute(&proxy.app, "test", "SHOW POOLS").await;
    let Some(pgsplit::admin::Answer::Rows(pools)) = reply.answers.first() else { panic!("SHOW POOLS: {reply:?}") };
    let a: Vec<Vec<String>> = pools.rows.iter().map(|r| r.iter().map(|v| v.clone().unwrap_or_default()).collect()).collect();
    let data: HashSet<_> = a.iter().filter(|r| r[0] == "data").map(|r| r[1].clone()).collect();
    for login in ["pgsplit", "alice_srv", "bob_role", "carol"] {
        assert!(data.contains(login), "SHOW POOLS has a row for {login} on data: {a:?}");
    }
}

/// A wrong `server_password` is the server's 28P01 for that user's statements; the target stays up for the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_the_server_refuses_fails_that_users_statements_only() {
    roles().await;
    let proxy = Proxy::start(&yaml(5).replace("server_password: alice-srv-pw", "server_password: wrong")).await;
    let alice = connect(proxy.port, "alice", "alice-pw").await;
    let err = alice.simple_query("select 1 from workspace.imports").await.unwrap_err();
    assert_eq!(sqlstate(&err), "28P01", "{err:?}");
    let app = proxy.connect().await;
    assert_eq!(scalar(&app, "select count(*) >= 0 from workspace.imports").await, "t", "others go on");
    assert!(proxy.app.backends().iter().all(|b| b.is_up()), "the target is not marked down");
}
