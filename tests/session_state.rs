//! Session state through transaction pooling: search_path (startup options, SET, set_config, RESET) resolves
//! unqualified names through the catalog, the catalog follows DDL, and every client keeps its own settings on
//! whichever pooled server connection serves it.

mod common;

use common::{clusters, config_yaml, direct, scalar, sqlstate, Proxy, APP_PASSWORD};

async fn connect_with(proxy: &Proxy, extra: &str) -> tokio_postgres::Client {
    let dsn = format!("{} {extra}", proxy.dsn());
    let (client, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await.expect("connect through pgsplit");
    tokio::spawn(conn);
    client
}

#[tokio::test]
async fn startup_search_path_routes_unqualified_names_to_their_schema_target() {
    let proxy = Proxy::split().await;
    let c = connect_with(&proxy, "options='-c search_path=workspace,public'").await;
    assert_eq!(scalar(&c, "select current_database() from imports limit 1").await, "handled_data");
    assert_eq!(scalar(&c, "show search_path").await, "workspace, public");
    let c = connect_with(&proxy, "options='-c search_path=config'").await;
    assert_eq!(scalar(&c, "select current_database() from users limit 1").await, "handled_primary");
}

#[tokio::test]
async fn set_and_reset_search_path_change_where_unqualified_names_go() {
    let proxy = Proxy::split().await;
    let c = proxy.connect().await;
    c.simple_query("set search_path = reference, public").await.unwrap();
    assert_eq!(scalar(&c, "select name from countries where code = 'JP'").await, "Japan");
    assert_eq!(scalar(&c, "select current_database() from countries limit 1").await, "handled_data");
    // The server connection that runs the statement has the client's search_path too.
    assert_eq!(scalar(&c, "select current_setting('search_path') from countries limit 1").await, "reference, public");
    c.simple_query("select set_config('search_path', 'config, public', false)").await.unwrap();
    assert_eq!(scalar(&c, "select current_database() from users limit 1").await, "handled_primary");
    c.simple_query("reset search_path").await.unwrap();
    let err = c.simple_query("select * from countries").await.unwrap_err();
    assert_eq!(sqlstate(&err), "42P01", "after RESET, countries is no longer on the path");
    // An unqualified name on each target in one statement is refused like a qualified one.
    c.simple_query("set search_path = config, reference").await.unwrap();
    let err = c.simple_query("select * from users, countries").await.unwrap_err();
    assert_eq!(sqlstate(&err), "0A000");
    let msg = err.as_db_error().unwrap().message().to_owned();
    assert!(msg.contains("config.users on primary") && msg.contains("reference.countries on data"), "{msg}");
}

#[tokio::test]
async fn a_failed_or_rolled_back_set_does_not_follow_the_client() {
    let proxy = Proxy::split().await;
    let c = proxy.connect().await;
    c.simple_query("begin").await.unwrap();
    c.simple_query("select 1 from reference.countries limit 1").await.unwrap();
    c.simple_query("set search_path = reference").await.unwrap();
    c.simple_query("rollback").await.unwrap();
    assert_eq!(scalar(&c, "show search_path").await, "\"$user\", public");
    c.simple_query("begin").await.unwrap();
    c.simple_query("select 1 from reference.countries limit 1").await.unwrap();
    c.simple_query("set search_path = reference").await.unwrap();
    c.simple_query("commit").await.unwrap();
    assert_eq!(scalar(&c, "select current_database() from countries limit 1").await, "handled_data");
}

#[tokio::test]
async fn ddl_through_pgsplit_refreshes_the_catalog_at_once() {
    let proxy = Proxy::split().await;
    let c = proxy.connect().await;
    c.simple_query("create table workspace.fresh_from_ddl (id int)").await.unwrap();
    c.simple_query("set search_path = workspace").await.unwrap();
    c.simple_query("insert into fresh_from_ddl values (7)").await.unwrap();
    assert_eq!(direct(&clusters().data, "handled_data", "select id from workspace.fresh_from_ddl").await, "7");
    // DDL inside a transaction: the catalog is re-read when it commits.
    c.simple_query("begin").await.unwrap();
    c.simple_query("create table workspace.fresh_in_tx (id int)").await.unwrap();
    c.simple_query("commit").await.unwrap();
    c.simple_query("insert into fresh_in_tx values (8)").await.unwrap();
    assert_eq!(direct(&clusters().data, "handled_data", "select id from workspace.fresh_in_tx").await, "8");
    // CREATE without a schema goes to the first schema of search_path.
    c.simple_query("create table made_here (id int)").await.unwrap();
    assert_eq!(
        direct(
            &clusters().data,
            "handled_data",
            "select count(*) from pg_tables where schemaname = 'workspace' and tablename = 'made_here'"
        )
        .await,
        "1"
    );
}

#[tokio::test]
async fn the_catalog_is_refreshed_periodically_for_ddl_made_elsewhere() {
    let proxy = Proxy::start(&config_yaml("verify-full", "catalog_refresh: 1s\n")).await;
    direct(&clusters().primary, "handled_primary", "create table customer.made_directly (id int); alter table customer.made_directly owner to pgsplit; insert into customer.made_directly values (5)").await;
    let c = connect_with(&proxy, "options='-c search_path=customer'").await;
    let mut seen = String::new();
    for _ in 0..50 {
        if let Ok(msgs) = c.simple_query("select current_database() || ':' || id from made_directly").await {
            let row = msgs.iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            });
            if let Some(r) = row {
                seen = r;
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(seen, "handled_primary:5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_clients_with_their_own_settings_share_a_pool_of_five() {
    // PRIMARY's pool has 5 connections; each client sets its own TimeZone and application_name.
    let proxy = Proxy::split().await;
    let mut tasks = Vec::new();
    for i in 0..30 {
        let dsn = format!("{} application_name=client{i}", proxy.dsn());
        tasks.push(tokio::spawn(async move {
            let (c, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await.expect("connect");
            tokio::spawn(conn);
            let tz = format!("Etc/GMT+{}", i % 12);
            c.simple_query(&format!("set timezone = '{tz}'")).await.unwrap();
            for _ in 0..10 {
                let row = scalar(
                    &c,
                    "select current_setting('TimeZone') || '|' || current_setting('application_name') from config.users limit 1",
                )
                .await;
                assert_eq!(row, format!("{tz}|client{i}"));
            }
            c.simple_query("reset timezone").await.unwrap();
            let row = scalar(&c, "select current_setting('TimeZone') from config.users limit 1").await;
            assert_ne!(row, tz, "RESET returned client {i} to the default");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (open, _) = proxy.app.backend(0).pool_state();
    assert!(open <= 5, "{open} PRIMARY connections");
}

#[tokio::test]
async fn startup_settings_reach_the_server_connection() {
    let proxy = Proxy::split().await;
    let dsn = format!(
        "host=127.0.0.1 port={} user=app password={APP_PASSWORD} dbname=handled sslmode=disable application_name=startup-app options='-c statement_timeout=4321 -c DateStyle=German'",
        proxy.port
    );
    let (c, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let row = scalar(
        &c,
        "select current_setting('application_name') || '|' || current_setting('statement_timeout') || '|' || current_setting('DateStyle') from workspace.imports limit 1",
    )
    .await;
    assert_eq!(row, "startup-app|4321ms|German, DMY");
}

#[tokio::test]
async fn a_prepared_set_executed_in_a_later_batch_follows_the_client() {
    let proxy = Proxy::split().await;
    let c = proxy.connect().await;
    // Parse (and Describe) in one batch, Bind/Execute in the next: the setting changes when it is executed.
    let set = c.prepare("set timezone = 'Asia/Tokyo'").await.unwrap();
    let on_data = "select current_setting('TimeZone') from workspace.imports limit 1";
    c.simple_query("insert into workspace.imports (file_name, row_count) values ('tz', 1)").await.unwrap();
    assert_ne!(scalar(&c, on_data).await, "Asia/Tokyo", "not executed yet");
    c.execute(&set, &[]).await.unwrap();
    assert_eq!(scalar(&c, on_data).await, "Asia/Tokyo", "another target's connection got the setting");
    assert_eq!(scalar(&c, "show timezone").await, "Asia/Tokyo");
}

/// RESET goes back to the value the session started with, whatever the spelling (`RESET TIME ZONE`, `SET TIME ZONE
/// DEFAULT`, `RESET timezone`), as PostgreSQL's RESET does, not to the server's default (issue 16, point 7).
#[tokio::test]
async fn reset_returns_to_the_startup_value_in_every_spelling() {
    let proxy = Proxy::split().await;
    let c = connect_with(&proxy, "options='-c TimeZone=Europe/Paris'").await;
    for reset in ["reset time zone", "set time zone default", "reset timezone", "set timezone to default", "reset all"] {
        c.simple_query("set timezone to 'UTC'").await.unwrap();
        assert_eq!(scalar(&c, "show timezone").await, "UTC");
        c.simple_query(reset).await.unwrap();
        assert_eq!(scalar(&c, "show timezone").await, "Europe/Paris", "{reset}");
        // And on the other target's connection, which the reset never ran on.
        let other = scalar(&c, "select current_setting('TimeZone'), (select count(*) from workspace.imports)").await;
        assert_eq!(other, "Europe/Paris", "{reset}, on DATA");
    }
}

/// A partial DateStyle (only the order, or only the style) changes that part of the session's value: a connection
/// the client had not used yet gets the whole of it, as the client's own server would have it.
#[tokio::test]
async fn a_partial_datestyle_is_replayed_with_the_rest_of_the_sessions_value() {
    let proxy = Proxy::split().await;
    let c = connect_with(&proxy, "options='-c DateStyle=SQL,DMY'").await;
    c.simple_query("set datestyle = 'YMD'").await.unwrap();
    assert_eq!(scalar(&c, "show datestyle").await, "SQL, YMD");
    // DATA has not served this client yet: its connection gets the session's value, not `YMD` on its own default.
    let on_data = scalar(&c, "select current_setting('DateStyle'), (select count(*) from workspace.imports)").await;
    assert_eq!(on_data, "SQL, YMD");
    c.simple_query("set datestyle = 'German'").await.unwrap();
    let on_data = scalar(&c, "select current_setting('DateStyle'), (select count(*) from workspace.imports)").await;
    assert_eq!(on_data, "German, DMY", "German without an order implies DMY, as PostgreSQL sets it");
    c.simple_query("set datestyle = 'MDY'").await.unwrap();
    let on_data = scalar(&c, "select current_setting('DateStyle'), (select count(*) from workspace.imports)").await;
    assert_eq!(on_data, "German, MDY");
    assert_eq!(scalar(&c, "show datestyle").await, "German, MDY");
}

/// psql's `\gdesc` describes the unnamed statement it parsed in an earlier Sync: the description is the one a direct
/// connection gives.
#[tokio::test]
async fn gdesc_describes_the_unnamed_statement_parsed_before_the_last_sync() {
    let proxy = Proxy::split().await;
    let script = "select 1 as a, 'x'::text as b \\gdesc\nselect now() as t \\gdesc\nselect 2 as c\n";
    let url = proxy.dsn();
    let out = tokio::task::spawn_blocking(move || common::psql_script(&url, script)).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a|integer\nb|text\nt|timestamp with time zone\n2\n");
}

/// `set_config('search_path', ' ', false)` (a blank path) is followed like any search_path: every later statement,
/// on either target, runs (it used to fail every statement with a syntax error in the replayed setting).
#[tokio::test]
async fn a_blank_search_path_from_set_config_leaves_the_session_usable() {
    let proxy = Proxy::split().await;
    let c = proxy.connect().await;
    c.simple_query("select set_config('search_path', ' ', false)").await.unwrap();
    assert_eq!(scalar(&c, "select count(*) >= 0 from config.users").await, "t");
    assert_eq!(scalar(&c, "select count(*) >= 0 from workspace.imports").await, "t");
    let e = c.simple_query("select * from imports").await.expect_err("nothing is found through an empty path");
    assert_eq!(sqlstate(&e), "42P01");
}

/// DDL refreshes the catalog on the connection that ran it (issue 16, point 11): with DATA's only connection held
/// by the session itself (pinned by a session lock), the refresh used to wait for another connection until the
/// checkout timeout, and the catalog was not refreshed at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_refreshes_the_catalog_on_its_own_connection_even_when_the_pool_is_held() {
    let yaml = config_yaml("verify-full", "")
        .replace("pool: { max: 10, checkout_timeout: 3s }", "pool: { max: 1, checkout_timeout: 3s }");
    let proxy = Proxy::start(&yaml).await;
    let id = std::process::id();
    let c = proxy.connect().await;
    c.simple_query("select pg_advisory_lock(42) from reference.countries limit 1").await.unwrap();
    let data = proxy.app.table().target_id("data").unwrap();
    let known =
        |t: &str| proxy.app.catalog().target(data).is_some_and(|c| c.has("workspace", t, pgsplit::router::ObjectKind::Relation));
    for i in 0..3 {
        let name = format!("held_{id}_{i}");
        c.simple_query(&format!("create table workspace.{name} (id int)")).await.unwrap();
        // The session re-reads the catalog before it reads its client's next statement.
        c.simple_query("select 1").await.unwrap();
        assert!(known(&name), "the catalog has {name} after its CREATE");
    }
    // The re-read after DDL reads the user schemas only; the system schemas' objects are kept from before.
    let catalog = proxy.app.catalog();
    let data_catalog = catalog.target(data).expect("read");
    assert!(data_catalog.has("pg_catalog", "now", pgsplit::router::ObjectKind::Function));
    assert!(data_catalog.has("information_schema", "tables", pgsplit::router::ObjectKind::Relation));
    c.simple_query("set search_path = workspace").await.unwrap();
    c.simple_query(&format!("insert into held_{id}_2 values (1)")).await.unwrap();
}

/// Sequence state (`currval`, `lastval`) is per server session (issue 16, point 7): under transaction pooling the
/// values one client's nextval left on a pooled connection never reach the next client of that connection, which
/// gets PostgreSQL's 55000 as on a connection of its own. The client itself keeps its values while nobody else used
/// the connection in between. Both modes: in single mode texts are analysed only when they may call nextval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_clients_currval_and_lastval_never_reach_another_client() {
    let cases = [
        ("split", "workspace", "pool: { max: 10, checkout_timeout: 3s }", "/* pgsplit: target=data */ "),
        ("single", "customer", "pool: { max: 5, checkout_timeout: 3s }", ""),
    ];
    // lastval() names no relation: in split mode a hint sends it where the sequence is.
    for (mode, schema, pool, hint) in cases {
        // One server connection per target: every client gets the connection the one before used.
        let yaml =
            config_yaml("verify-full", &format!("mode: {mode}\n")).replace(pool, "pool: { max: 1, checkout_timeout: 10s }");
        let proxy = Proxy::start(&yaml).await;
        let setup = proxy.connect().await;
        let table = format!("{schema}.seq_owner_{mode}");
        setup
            .batch_execute(&format!("drop table if exists {table}; create table {table} (id serial primary key, v int)"))
            .await
            .unwrap();
        let seq = format!("{table}_id_seq");
        drop(setup);

        let a = proxy.connect().await;
        let first = scalar(&a, &format!("select nextval('{seq}')")).await;
        // The same client, a later transaction, the same connection: its own value.
        assert_eq!(scalar(&a, &format!("select currval('{seq}')")).await, first, "{mode}");
        let b = proxy.connect().await;
        for sql in [format!("select currval('{seq}')"), format!("{hint}select lastval()")] {
            let err = b.simple_query(&sql).await.expect_err(&format!("{mode}: another client's sequence state"));
            assert_eq!(sqlstate(&err), "55000", "{mode}: {sql}");
        }
        // In a transaction of the other client (the DISCARD goes with its deferred BEGIN).
        scalar(&a, &format!("select nextval('{seq}')")).await;
        b.batch_execute("begin").await.unwrap();
        let err = b.simple_query(&format!("select currval('{seq}')")).await.expect_err("in a transaction");
        assert_eq!(sqlstate(&err), "55000", "{mode}");
        b.batch_execute("rollback").await.unwrap();
        // A column default's nextval, over the extended protocol, and then another client.
        a.execute(&format!("insert into {table} (v) values ($1)"), &[&1i32]).await.unwrap();
        let err = b.simple_query(&format!("{hint}select lastval()")).await.expect_err("another client's lastval");
        assert_eq!(sqlstate(&err), "55000", "{mode}");
        // What a client makes on its own is its own.
        b.batch_execute(&format!("insert into {table} (v) values (2)")).await.unwrap();
        let last: i64 = scalar(&b, &format!("{hint}select lastval()")).await.parse().unwrap();
        assert_eq!(scalar(&b, &format!("select max(id) from {table}")).await, last.to_string(), "{mode}");
        // Within one transaction, or one text, a client's own nextval is its own, whoever used the connection before.
        scalar(&a, &format!("select nextval('{seq}')")).await;
        b.batch_execute("begin").await.unwrap();
        b.batch_execute(&format!("insert into {table} (v) values (3)")).await.unwrap();
        let mine = scalar(&b, &format!("select currval('{seq}')")).await;
        b.batch_execute("commit").await.unwrap();
        assert_eq!(scalar(&b, &format!("select v from {table} where id = {mine}")).await, "3", "{mode}");
        scalar(&a, &format!("select nextval('{seq}')")).await;
        let rows = b.simple_query(&format!("insert into {table} (v) values (4); select currval('{seq}')")).await.unwrap();
        let mine = rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        });
        let mine = mine.expect("currval in the same text");
        assert_eq!(scalar(&b, &format!("select v from {table} where id = {mine}")).await, "4", "{mode}");
        b.batch_execute(&format!("drop table {table}")).await.unwrap();
    }
}

/// The same unqualified text prepared by two clients under different search_paths is two statements, as on direct
/// connections (issue 16, point 5): each means what its client's search_path made it mean when it was parsed
/// (pgsplit's shared server-side statements are per search_path too). One whose meaning a later `SET search_path`
/// changes gets PostgreSQL's own 0A000 once its result row changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_text_prepared_under_two_search_paths_is_two_statements() {
    // One DATA connection: both clients' statements meet on it.
    let yaml = config_yaml("verify-full", "")
        .replace("pool: { max: 10, checkout_timeout: 3s }", "pool: { max: 1, checkout_timeout: 10s }");
    let proxy = Proxy::start(&yaml).await;
    let id = std::process::id();
    let a = connect_with(&proxy, "options='-c search_path=workspace'").await;
    // Made by `a`: its next statement routes with the catalog that has them.
    a.batch_execute(&format!(
        "create table workspace.things_{id} (v int); insert into workspace.things_{id} values (1); \
         create table reference.things_{id} (name text); insert into reference.things_{id} values ('one')"
    ))
    .await
    .unwrap();
    let sql = format!("select * from things_{id}");
    let in_workspace = a.prepare(&sql).await.unwrap();
    let b = connect_with(&proxy, "options='-c search_path=reference'").await;
    let in_reference = b.prepare(&sql).await.expect("another client's statement of the same text");
    assert_eq!(a.query_one(&in_workspace, &[]).await.unwrap().get::<_, i32>(0), 1);
    assert_eq!(b.query_one(&in_reference, &[]).await.unwrap().get::<_, String>(0), "one");
    a.batch_execute("set search_path = reference").await.unwrap();
    assert_eq!(sqlstate(&a.query_one(&in_workspace, &[]).await.unwrap_err()), "0A000");
    // The same on a connection that lacks the statement: prepared there under today's search_path, its rows would
    // be text while the client decodes int4.
    common::replace_the_data_connection(&b, &format!("reference.things_{id}")).await;
    assert_eq!(sqlstate(&a.query_one(&in_workspace, &[]).await.unwrap_err()), "0A000", "rows of another type");
    // As PostgreSQL checks a cached plan at each execution: under its own search_path again, it runs.
    a.batch_execute("set search_path = workspace").await.unwrap();
    assert_eq!(a.query_one(&in_workspace, &[]).await.unwrap().get::<_, i32>(0), 1);
}
