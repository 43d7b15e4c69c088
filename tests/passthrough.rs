//! Passthrough databases: connecting with a target's name as the database talks to that target unsplit, so
//! pg_dump, pg_restore and catalog browsing work through pgsplit.

mod common;

use std::process::Command;

use common::{scalar, sqlstate, Proxy, APP_PASSWORD};

fn url(proxy: &Proxy, db: &str) -> String {
    format!("postgresql://app:{APP_PASSWORD}@127.0.0.1:{}/{db}?sslmode=disable", proxy.port)
}

async fn connect_to(proxy: &Proxy, db: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(&url(proxy, db), tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(conn);
    c
}

#[tokio::test]
async fn a_targets_name_as_database_reaches_that_target_unsplit() {
    let proxy = Proxy::split().await;
    let data = connect_to(&proxy, "data").await;
    assert_eq!(scalar(&data, "select current_database()").await, "handled_data");
    // config.users lives on PRIMARY: through the DATA passthrough it is simply not there.
    let err = data.simple_query("select * from config.users").await.unwrap_err();
    assert_eq!(sqlstate(&err), "42P01");
    let primary = connect_to(&proxy, "primary").await;
    assert_eq!(scalar(&primary, "select current_database()").await, "handled_primary");
    assert_eq!(scalar(&primary, "select count(*) > 0 from config.users").await, "t");
    let err = tokio_postgres::connect(&url(&proxy, "nowhere"), tokio_postgres::NoTls).await.err().expect("refused");
    assert_eq!(sqlstate(&err), "3D000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_dump_and_restore_through_passthrough() {
    let proxy = Proxy::split().await;
    let dump_url = url(&proxy, "data");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(common::pg_tool("pg_dump"))
            .args(["--schema=reference", "--no-owner", &dump_url])
            .output()
            .expect("pg_dump runs")
    })
    .await
    .unwrap();
    let dump = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dump.contains("CREATE TABLE reference.countries"), "{dump}");
    assert!(dump.contains("Japan"), "the data came through COPY");
    // Restore it into a new schema on DATA through the same passthrough.
    let restore = dump.replace("reference.", "restored_ref.").replace("SCHEMA reference", "SCHEMA restored_ref");
    let restore_url = url(&proxy, "data");
    let out = tokio::task::spawn_blocking(move || common::psql_script(&restore_url, &restore)).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let data = connect_to(&proxy, "data").await;
    assert_eq!(scalar(&data, "select name from restored_ref.countries where code = 'JP'").await, "Japan");
}

/// A passthrough target that is down never affects the logical database (issue 16, point 9): its catalog cannot be
/// read, and statements pgsplit cannot parse still run on the logical database as they would without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_passthrough_target_does_not_affect_the_logical_database() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let extra = format!(
        "  archive:\n    url: postgresql://pgsplit:x@127.0.0.1:{port}/archive\n    pool: {{ max: 1, checkout_timeout: 1s }}\n    schemas: []\n"
    );
    let yaml = common::config_yaml("verify-full", "").replace("users:\n", &format!("{extra}users:\n"));
    let proxy = Proxy::start(&yaml).await;
    let c = proxy.connect().await;
    // sqlparser cannot read these; they name nothing routed and may write.
    c.batch_execute("do $$ begin perform 1; end $$").await.expect("runs on the default target");
    c.batch_execute("vacuum (verbose) config.users").await.expect("runs on PRIMARY");
    assert_eq!(scalar(&c, "select current_database()").await, "handled_primary");
    // The down target itself answers as a down target.
    let err = tokio_postgres::connect(&url(&proxy, "archive"), tokio_postgres::NoTls).await;
    let refused = match err {
        Err(e) => sqlstate(&e),
        Ok((c, conn)) => {
            tokio::spawn(conn);
            sqlstate(&c.simple_query("select 1").await.expect_err("archive is down"))
        }
    };
    assert_eq!(refused, "08006");
}
