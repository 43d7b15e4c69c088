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

/// The pgsplit role may create databases on DATA (the clients of these tests make their own).
async fn data_role_may_create_databases() {
    common::direct(&common::clusters().data, "postgres", "alter role pgsplit createdb").await;
}

/// The server processes connected to `db` on DATA now.
async fn sessions_on(db: &str) -> String {
    let sql = format!("select count(*) from pg_stat_activity where datname = '{db}'");
    common::direct(&common::clusters().data, "postgres", &sql).await
}

/// PgBouncer's `*` database (issue 16, point 9): with `any_database: data`, a database a client made on DATA is
/// reachable by its name, pooled (a second client gets the same server connection), and one that does not exist
/// is PostgreSQL's FATAL 3D000. DROP, RENAME and CREATE ... TEMPLATE then work although pgsplit's pool of that
/// database holds an idle connection: pgsplit closes it first, as PostgreSQL refuses them while anyone is connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_database_reaches_databases_clients_made_and_lets_them_drop_them() {
    data_role_may_create_databases().await;
    let proxy = Proxy::start(&common::config_yaml("verify-full", "any_database: data\n")).await;
    let data = connect_to(&proxy, "data").await;
    data.batch_execute("create database made_by_client").await.expect("create database");

    let made = connect_to(&proxy, "made_by_client").await;
    assert_eq!(scalar(&made, "select current_database()").await, "made_by_client");
    made.batch_execute("create table t (a int); insert into t values (1), (2)").await.expect("ddl and writes");
    assert_eq!(scalar(&made, "select sum(a) from t").await, "3");
    let pid = scalar(&made, "select pg_backend_pid()").await;
    drop(made);
    // The first client's connection goes back to the pool once its session has seen it leave: wait for that (a
    // client that came earlier would rightly get a connection of its own).
    let pool = proxy.app.database_pool(1, "made_by_client").await.expect("the database's pool");
    let started = std::time::Instant::now();
    while pool.pool_state().1 == 0 {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the connection never went back to the pool");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let again = connect_to(&proxy, "made_by_client").await;
    assert_eq!(scalar(&again, "select pg_backend_pid()").await, pid, "the database's connections are pooled");
    drop(again);
    // Extended protocol, prepared statements and a transaction, as drivers use them.
    let prepared = connect_to(&proxy, "made_by_client").await;
    let stmt = prepared.prepare("select a from t where a > $1 order by a").await.expect("prepare");
    let rows = prepared.query(&stmt, &[&1i32]).await.expect("execute");
    assert_eq!(rows.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<_>>(), [2]);
    drop(prepared);

    let err = tokio_postgres::connect(&url(&proxy, "no_such_db"), tokio_postgres::NoTls).await.err().expect("refused");
    assert_eq!(sqlstate(&err), "3D000", "{err}");
    let message = err.as_db_error().map(|e| e.message().to_owned()).unwrap_or_default();
    assert_eq!(message, "database \"no_such_db\" does not exist");

    // pgsplit's pool keeps an idle connection to the database: PostgreSQL would refuse these while it is open.
    let pools = proxy.app.database_pools();
    assert!(pools.iter().any(|(name, pool)| name == "made_by_client" && pool.pool_state().1 > 0), "an idle connection is pooled");
    assert_ne!(sessions_on("made_by_client").await, "0");
    data.batch_execute("alter database made_by_client rename to renamed_by_client").await.expect("rename");
    let renamed = connect_to(&proxy, "renamed_by_client").await;
    assert_eq!(scalar(&renamed, "select sum(a) from t").await, "3");
    drop(renamed);
    let err = tokio_postgres::connect(&url(&proxy, "made_by_client"), tokio_postgres::NoTls).await.err().expect("gone");
    assert_eq!(sqlstate(&err), "3D000", "{err}");
    data.batch_execute("create database copied_by_client template renamed_by_client").await.expect("copy from template");
    data.batch_execute("drop database renamed_by_client").await.expect("drop");
    assert_eq!(sessions_on("renamed_by_client").await, "0");
    let copied = connect_to(&proxy, "copied_by_client").await;
    assert_eq!(scalar(&copied, "select sum(a) from t").await, "3");
    drop(copied);
    // Over the extended protocol too (drivers such as asyncpg send every statement that way).
    assert_ne!(sessions_on("copied_by_client").await, "0");
    data.execute("drop database if exists copied_by_client", &[]).await.expect("drop the copy");
    assert_eq!(sessions_on("copied_by_client").await, "0");
    // Pools of databases that are gone are dropped.
    assert!(proxy.app.database_pools().iter().all(|(name, _)| !name.ends_with("_by_client")));
}

/// A target configured for a database clients drop (issue 16, point 9): pgsplit's idle connections to it (its
/// catalog read, a passthrough client's transactions) are closed before DROP DATABASE runs, which PostgreSQL would
/// otherwise refuse (`database "scratch_db" is being accessed by other users`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_behind_a_passthrough_target_can_be_dropped_through_pgsplit() {
    data_role_may_create_databases().await;
    common::direct(&common::clusters().data, "postgres", "create database scratch_db owner pgsplit").await;
    let c = common::clusters();
    let extra = format!(
        "  scratch:\n    url: postgresql://pgsplit:{pw}@127.0.0.1:{port}/scratch_db\n    pool: {{ max: 3, checkout_timeout: 2s }}\n    schemas: []\n",
        pw = c.server_password,
        port = c.data.port()
    );
    let yaml = common::config_yaml("verify-full", "").replace("users:\n", &format!("{extra}users:\n"));
    let proxy = Proxy::start(&yaml).await;
    let scratch = connect_to(&proxy, "scratch").await;
    assert_eq!(scalar(&scratch, "select current_database()").await, "scratch_db");
    drop(scratch);
    assert_ne!(sessions_on("scratch_db").await, "0", "pgsplit keeps an idle connection");
    // Through the logical database (it names nothing routed: the default target, PRIMARY, has no scratch_db) and
    // through DATA's passthrough, where the database lives.
    let logical = proxy.connect().await;
    let err = logical.batch_execute("drop database scratch_db").await.expect_err("not on PRIMARY");
    assert_eq!(sqlstate(&err), "3D000");
    let data = connect_to(&proxy, "data").await;
    data.batch_execute("drop database scratch_db").await.expect("dropped although pgsplit had pooled connections");
    assert_eq!(sessions_on("scratch_db").await, "0");
}
