//! Through a running pgsplit: statements land on the target that owns their schemas, checked on each cluster directly.

mod common;

use common::{clusters, direct, scalar, sqlstate, Proxy};

#[tokio::test]
async fn config_and_customer_run_on_primary_workspace_and_reference_on_data() {
    let proxy = Proxy::split().await;
    let c = proxy.connect().await;
    assert_eq!(scalar(&c, "select current_database() from config.users limit 1").await, "handled_primary");
    assert_eq!(scalar(&c, "select current_database() from customer.accounts limit 1").await, "handled_primary");
    assert_eq!(scalar(&c, "select current_database() from workspace.imports limit 1").await, "handled_data");
    assert_eq!(scalar(&c, "select current_database() from reference.countries limit 1").await, "handled_data");
}

#[tokio::test]
async fn writes_land_on_the_owning_cluster() {
    let proxy = Proxy::split().await;
    let c = proxy.connect().await;
    c.simple_query("insert into workspace.imports (file_name, row_count) values ('routing-test.csv', 7)").await.unwrap();
    c.simple_query("insert into customer.accounts (name) values ('routing-test-co')").await.unwrap();
    let cl = clusters();
    assert_eq!(
        direct(&cl.data, "handled_data", "select row_count from workspace.imports where file_name = 'routing-test.csv'").await,
        "7"
    );
    assert_eq!(
        direct(&cl.primary, "handled_primary", "select count(*) from customer.accounts where name = 'routing-test-co'").await,
        "1"
    );
}

#[tokio::test]
async fn statements_without_a_routed_schema_go_to_the_default_target() {
    let proxy = Proxy::split().await;
    let c = proxy.connect().await;
    assert_eq!(scalar(&c, "select current_database()").await, "handled_primary");
    assert_eq!(scalar(&c, "select count(*) > 0 from pg_catalog.pg_class").await, "t");
}

#[tokio::test]
async fn cross_target_statement_is_refused_with_0a000_and_the_session_goes_on() {
    let proxy = Proxy::split().await;
    let c = proxy.connect().await;
    let err = c.simple_query("select * from config.users u join workspace.imports i on true").await.unwrap_err();
    assert_eq!(sqlstate(&err), "0A000");
    let db = err.as_db_error().expect("server error");
    assert!(db.message().contains("config.users on primary"), "{}", db.message());
    assert!(db.message().contains("workspace.imports on data"), "{}", db.message());
    assert_eq!(scalar(&c, "select 41 + 1").await, "42");
}

#[tokio::test]
async fn multi_statement_query_that_mixes_targets_runs_nowhere() {
    let proxy = Proxy::split().await;
    let c = proxy.connect().await;
    let err = c
        .simple_query("insert into customer.accounts (name) values ('mixed-batch'); insert into workspace.imports (file_name, row_count) values ('mixed-batch', 1)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "0A000");
    let cl = clusters();
    assert_eq!(
        direct(&cl.primary, "handled_primary", "select count(*) from customer.accounts where name = 'mixed-batch'").await,
        "0"
    );
    assert_eq!(
        direct(&cl.data, "handled_data", "select count(*) from workspace.imports where file_name = 'mixed-batch'").await,
        "0"
    );
}

#[tokio::test]
async fn hint_comment_and_session_target_route_unrouted_statements() {
    let proxy = Proxy::split().await;
    let c = proxy.connect().await;
    assert_eq!(scalar(&c, "/* pgsplit: target=data */ select current_database()").await, "handled_data");
    c.simple_query("set pgsplit.target = 'data'").await.unwrap();
    assert_eq!(scalar(&c, "select current_database()").await, "handled_data");
    assert_eq!(scalar(&c, "select current_database() from config.users limit 1").await, "handled_primary");
    c.simple_query("reset pgsplit.target").await.unwrap();
    assert_eq!(scalar(&c, "select current_database()").await, "handled_primary");
    let err = c.simple_query("set pgsplit.target = 'nowhere'").await.unwrap_err();
    assert_eq!(sqlstate(&err), "22023");
}

#[tokio::test]
async fn extended_protocol_with_parameters_routes_by_the_parsed_sql() {
    let proxy = Proxy::split().await;
    let c = proxy.connect().await;
    let rows = c.query("select name from reference.countries where code = $1", &[&"JP"]).await.unwrap();
    assert_eq!(rows[0].get::<_, String>(0), "Japan");
    let rows = c.query("select email from config.users where name = $1", &[&"Ada"]).await.unwrap();
    assert_eq!(rows[0].get::<_, String>(0), "ada@example.com");
    let stmt = c.prepare("select count(*) from workspace.imports where row_count > $1").await.unwrap();
    for _ in 0..3 {
        let n: i64 = c.query_one(&stmt, &[&0i32]).await.unwrap().get(0);
        assert!(n >= 2);
    }
    let err = c.query("select 1 from config.users u, workspace.imports i where u.id = $1", &[&1i32]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "0A000");
}
