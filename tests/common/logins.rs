//! Users with server logins of their own (`tests/logins.rs`, `tests/logins_budget.rs`).

use super::{clusters, config_yaml, direct};

/// The roles the tests log in as, made once per test binary on both clusters: `alice_srv` (a login of its own),
/// `bob_role` (no login: taken by pgsplit's login, a member of it) and `carol` (the client's own name, same
/// password), and a table only `alice_srv` may read.
pub async fn roles() {
    static DONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    DONE.get_or_init(|| async {
        let c = clusters();
        let roles = "create role alice_srv login password 'alice-srv-pw'; \
             create role bob_role nologin; grant bob_role to pgsplit; \
             create role carol login password 'carol-pw'";
        direct(&c.data, "handled_data", roles).await;
        direct(&c.primary, "handled_primary", roles).await;
        direct(
            &c.data,
            "handled_data",
            "grant usage on schema workspace to public; \
             grant select on all tables in schema workspace to alice_srv, bob_role, carol; \
             create table workspace.alice_only (x int); insert into workspace.alice_only values (1); \
             alter table workspace.alice_only owner to pgsplit; revoke all on workspace.alice_only from public; \
             grant select on workspace.alice_only to alice_srv",
        )
        .await;
        direct(
            &c.primary,
            "handled_primary",
            "grant usage on schema config, customer to public; \
             grant select on all tables in schema customer to alice_srv, bob_role, carol",
        )
        .await;
    })
    .await;
}

/// The test configuration with the three users; `primary_max` is PRIMARY's pool size.
pub fn yaml(primary_max: u32) -> String {
    config_yaml("verify-full", "")
        .replace("pool: { max: 5, checkout_timeout: 3s }", &format!("pool: {{ max: {primary_max}, checkout_timeout: 10s }}"))
        .replace(
            "users:\n",
            "users:\n  - { name: alice, password: alice-pw, server_user: alice_srv, server_password: alice-srv-pw }\n  \
             - { name: bob, password: bob-pw, role: bob_role }\n  \
             - { name: carol, password: carol-pw }\n",
        )
}

pub async fn connect(port: u16, user: &str, password: &str) -> tokio_postgres::Client {
    let dsn = format!("host=127.0.0.1 port={port} user={user} password={password} dbname=handled sslmode=disable");
    let (client, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await.expect("login");
    tokio::spawn(conn);
    client
}
