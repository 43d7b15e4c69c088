//! Transactions through pgsplit: deferred BEGIN binds at the first routed statement; another target fails the
//! transaction as PostgreSQL would; COMMIT/ROLLBACK of an unbound transaction need no server.

mod common;

use common::{clusters, direct, scalar, sqlstate, Proxy};

#[tokio::test]
async fn begin_binds_to_the_target_of_the_first_routed_statement() {
    let proxy = Proxy::split().await;
    let c = proxy.connect().await;
    c.simple_query("begin").await.unwrap();
    c.simple_query("insert into workspace.imports (file_name, row_count) values ('tx-bind', 1)").await.unwrap();
    assert_eq!(scalar(&c, "select current_database()").await, "handled_data", "unrouted statement follows the bound target");
    c.simple_query("commit").await.unwrap();
    assert_eq!(
        direct(&clusters().data, "handled_data", "select count(*) from workspace.imports where file_name = 'tx-bind'").await,
        "1"
    );
}

#[tokio::test]
async fn statement_for_another_target_fails_the_transaction_until_rollback() {
    let proxy = Proxy::split().await;
    let c = proxy.connect().await;
    c.simple_query("begin").await.unwrap();
    c.simple_query("insert into customer.accounts (name) values ('tx-fail')").await.unwrap();
    let err = c.simple_query("select * from workspace.imports").await.unwrap_err();
    assert_eq!(sqlstate(&err), "0A000");
    let err = c.simple_query("select 1").await.unwrap_err();
    assert_eq!(sqlstate(&err), "25P02");
    let msgs = c.simple_query("commit").await.unwrap();
    assert!(matches!(msgs.last(), Some(tokio_postgres::SimpleQueryMessage::CommandComplete(_))));
    assert_eq!(
        direct(&clusters().primary, "handled_primary", "select count(*) from customer.accounts where name = 'tx-fail'").await,
        "0"
    );
    assert_eq!(scalar(&c, "select 'session goes on'").await, "session goes on");
}

#[tokio::test]
async fn commit_and_rollback_of_an_unbound_transaction_are_answered_locally() {
    // Both targets point at a closed port: any statement that needed a server would fail.
    let cl = clusters();
    let yaml = common::config_yaml("verify-full", "")
        .replace(&format!(":{}/", cl.primary.port()), ":1/")
        .replace(&format!(":{}/", cl.data.port()), ":1/");
    let proxy = Proxy::start(&yaml).await;
    let c = proxy.connect().await;
    c.simple_query("begin").await.unwrap();
    c.simple_query("commit").await.unwrap();
    c.simple_query("start transaction isolation level repeatable read").await.unwrap();
    c.simple_query("rollback").await.unwrap();
    let err = c.simple_query("select 1").await.unwrap_err();
    assert_eq!(sqlstate(&err), "08006", "a statement that needs a server does fail here");
}

#[tokio::test]
async fn transaction_options_are_replayed_on_the_bound_target() {
    let proxy = Proxy::split().await;
    let c = proxy.connect().await;
    c.simple_query("begin isolation level serializable read only").await.unwrap();
    assert_eq!(
        scalar(&c, "select current_setting('transaction_isolation') from reference.countries limit 1").await,
        "serializable"
    );
    let err = c.simple_query("insert into reference.countries values ('XX', 'nowhere')").await.unwrap_err();
    assert_eq!(sqlstate(&err), "25006", "read only transaction");
    c.simple_query("rollback").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_connections_are_shared_per_transaction_within_the_pool_bound() {
    let proxy = Proxy::split().await; // DATA pool max 10
    let mut tasks = Vec::new();
    for i in 0..30 {
        let c = proxy.connect().await;
        tasks.push(tokio::spawn(async move {
            for j in 0..20 {
                let sql = format!("select count(*) from reference.countries where code <> '{i}-{j}'");
                c.simple_query(&sql).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (open, _) = proxy.app.backend(1).pool_state();
    assert!(open <= 10, "{open} DATA connections for 30 clients");
    // The server connections this test's clients ran on (the other tests of this binary run beside it, on the same
    // clusters, through their own pgsplit: their connections are not this pool's).
    let mine = "select count(*) from pg_stat_activity where usename = 'pgsplit' \
                and query like 'select count(*) from reference.countries where code <> %'";
    let n: u32 = direct(&clusters().data, "handled_data", mine).await.parse().unwrap();
    assert!((1..=10).contains(&n), "{n} server connections on DATA");
}

#[tokio::test]
async fn abrupt_disconnect_in_a_transaction_releases_its_locks() {
    let proxy = Proxy::split().await;
    let c = proxy.connect().await;
    c.simple_query("insert into workspace.imports (file_name, row_count) values ('lock-me', 1)").await.unwrap();
    c.simple_query("begin").await.unwrap();
    c.simple_query("update workspace.imports set row_count = 2 where file_name = 'lock-me'").await.unwrap();
    drop(c);
    let other = proxy.connect().await;
    // With the first transaction still open this update would block past the timeout.
    let r = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        other.simple_query("update workspace.imports set row_count = 3 where file_name = 'lock-me'").await
    })
    .await;
    assert!(matches!(r, Ok(Ok(_))), "{r:?}");
    assert_eq!(
        direct(&clusters().data, "handled_data", "select row_count from workspace.imports where file_name = 'lock-me'").await,
        "3"
    );
}

#[tokio::test]
async fn savepoints_and_set_local_before_the_first_routed_statement_are_held_and_replayed_there() {
    let proxy = Proxy::split().await;
    let c = proxy.connect().await;
    c.simple_query("begin").await.unwrap();
    c.simple_query("savepoint before_anything").await.unwrap();
    c.simple_query("set local statement_timeout = '4s'").await.unwrap();
    // DATA is not the default target: binding there works because nothing above ran on PRIMARY.
    assert_eq!(
        scalar(&c, "select current_setting('statement_timeout') from workspace.imports limit 1").await,
        "4s",
        "SET LOCAL was replayed on the bound target"
    );
    c.simple_query("insert into workspace.imports (file_name, row_count) values ('held-savepoint', 1)").await.unwrap();
    c.simple_query("rollback to savepoint before_anything").await.unwrap();
    c.simple_query("insert into workspace.imports (file_name, row_count) values ('held-savepoint', 2)").await.unwrap();
    c.simple_query("commit").await.unwrap();
    assert_eq!(
        direct(
            &clusters().data,
            "handled_data",
            "select string_agg(row_count::text, ',') from workspace.imports where file_name = 'held-savepoint'"
        )
        .await,
        "2"
    );
    assert_eq!(scalar(&c, "select current_setting('statement_timeout') from workspace.imports limit 1").await, "0");
}

#[tokio::test]
async fn a_plain_read_before_the_first_routed_statement_does_not_tie_the_transaction_to_the_default_target() {
    let proxy = Proxy::split().await;
    let c = proxy.connect().await;
    c.simple_query("begin").await.unwrap();
    assert_eq!(scalar(&c, "select 1").await, "1");
    c.simple_query("savepoint a").await.unwrap();
    c.simple_query("set local statement_timeout = '7s'").await.unwrap();
    assert_eq!(scalar(&c, "select current_database()").await, "handled_primary", "answered on the default target");
    // The first statement that chooses a target moves the transaction there, savepoint and SET LOCAL included.
    c.simple_query("insert into workspace.imports (file_name, row_count) values ('tentative', 1)").await.unwrap();
    assert_eq!(scalar(&c, "select current_database()").await, "handled_data");
    assert_eq!(scalar(&c, "select current_setting('statement_timeout')").await, "7s");
    c.simple_query("rollback to savepoint a").await.unwrap();
    c.simple_query("insert into workspace.imports (file_name, row_count) values ('tentative', 2)").await.unwrap();
    // Now firm: PRIMARY is refused as in any bound transaction.
    let err = c.simple_query("select * from customer.accounts").await.unwrap_err();
    assert_eq!(sqlstate(&err), "0A000");
    c.simple_query("rollback").await.unwrap();
    assert_eq!(
        direct(&clusters().data, "handled_data", "select count(*) from workspace.imports where file_name = 'tentative'").await,
        "0"
    );

    c.simple_query("begin").await.unwrap();
    assert_eq!(scalar(&c, "select now() = now()").await, "t");
    c.simple_query("insert into workspace.imports (file_name, row_count) values ('tentative', 3)").await.unwrap();
    c.simple_query("commit").await.unwrap();
    assert_eq!(
        direct(
            &clusters().data,
            "handled_data",
            "select string_agg(row_count::text, ',') from workspace.imports where file_name = 'tentative'"
        )
        .await,
        "3"
    );
}

#[tokio::test]
async fn a_read_with_transaction_effects_binds_for_good() {
    let proxy = Proxy::split().await;
    let c = proxy.connect().await;
    c.simple_query("begin").await.unwrap();
    c.simple_query("select pg_advisory_xact_lock(4242)").await.unwrap();
    let err = c.simple_query("insert into workspace.imports (file_name, row_count) values ('xact-lock', 1)").await.unwrap_err();
    assert_eq!(sqlstate(&err), "0A000", "the lock lives on PRIMARY: the transaction cannot move");
    c.simple_query("rollback").await.unwrap();

    // A read that failed leaves a failed transaction, answered by the server as PostgreSQL would.
    c.simple_query("begin").await.unwrap();
    assert_eq!(sqlstate(&c.simple_query("select 1/0").await.unwrap_err()), "22012");
    let err = c.simple_query("insert into workspace.imports (file_name, row_count) values ('failed-read', 1)").await.unwrap_err();
    assert_eq!(sqlstate(&err), "25P02");
    c.simple_query("rollback").await.unwrap();
    assert_eq!(scalar(&c, "select 'session goes on'").await, "session goes on");
    assert_eq!(
        direct(
            &clusters().data,
            "handled_data",
            "select count(*) from workspace.imports where file_name in ('xact-lock', 'failed-read')"
        )
        .await,
        "0"
    );
}

#[tokio::test]
async fn extended_protocol_begin_and_savepoints_in_batches_of_their_own_are_deferred() {
    let proxy = Proxy::split().await;
    let c = proxy.connect().await;
    // tokio-postgres prepares each statement (Parse/Describe/Sync) and runs it (Bind/Execute/Sync): BEGIN and
    // SAVEPOINT come in batches of their own, before the statement that chooses DATA.
    c.execute("begin", &[]).await.unwrap();
    c.execute("savepoint s", &[]).await.unwrap();
    c.execute("insert into workspace.imports (file_name, row_count) values ('ext-begin', 1)", &[]).await.unwrap();
    c.execute("rollback to savepoint s", &[]).await.unwrap();
    c.execute("insert into workspace.imports (file_name, row_count) values ('ext-begin', 2)", &[]).await.unwrap();
    let row = c
        .query_one("select current_database()::text, count(*) from workspace.imports where file_name = 'ext-begin'", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "handled_data");
    assert_eq!(row.get::<_, i64>(1), 1, "the transaction sees its own insert");
    c.execute("commit", &[]).await.unwrap();
    assert_eq!(
        direct(
            &clusters().data,
            "handled_data",
            "select string_agg(row_count::text, ',') from workspace.imports where file_name = 'ext-begin'"
        )
        .await,
        "2"
    );

    // A prepared BEGIN re-executed later, and a rolled back transaction.
    let begin = c.prepare("begin isolation level repeatable read").await.unwrap();
    assert!(begin.params().is_empty() && begin.columns().is_empty());
    c.execute(&begin, &[]).await.unwrap();
    c.execute("insert into workspace.imports (file_name, row_count) values ('ext-begin', 3)", &[]).await.unwrap();
    let iso = c.query_one("select current_setting('transaction_isolation')", &[]).await.unwrap();
    assert_eq!(iso.get::<_, String>(0), "repeatable read", "BEGIN's options were replayed on DATA");
    c.execute("rollback", &[]).await.unwrap();
    c.execute(&begin, &[]).await.unwrap();
    c.execute("commit", &[]).await.unwrap();
    assert_eq!(
        direct(&clusters().data, "handled_data", "select count(*) from workspace.imports where file_name = 'ext-begin'").await,
        "1"
    );
}

#[tokio::test]
async fn a_held_statement_that_fails_where_the_transaction_binds_reports_its_own_error() {
    let proxy = Proxy::split().await;
    let c = proxy.connect().await;
    c.simple_query("begin").await.unwrap();
    c.simple_query("set local statement_timeout = 'not a duration'").await.unwrap();
    let err = c.simple_query("insert into workspace.imports (file_name, row_count) values ('held-fails', 1)").await.unwrap_err();
    assert_eq!(sqlstate(&err), "22023", "the SET LOCAL's own error, not 25P02: {err:?}");
    assert!(err.as_db_error().is_some_and(|e| e.message().contains("statement_timeout")), "{err:?}");
    assert_eq!(sqlstate(&c.simple_query("select 1").await.unwrap_err()), "25P02");
    c.simple_query("rollback").await.unwrap();
    assert_eq!(scalar(&c, "select 'session goes on'").await, "session goes on");
    assert_eq!(
        direct(&clusters().data, "handled_data", "select count(*) from workspace.imports where file_name = 'held-fails'").await,
        "0"
    );
}

#[tokio::test]
async fn reads_that_write_or_call_unknown_functions_bind_for_good() {
    direct(
        &clusters().primary,
        "handled_primary",
        "create table if not exists public.audit_tentative (x int); alter table public.audit_tentative owner to pgsplit",
    )
    .await;
    let proxy = Proxy::split().await;
    let c = proxy.connect().await;
    for read in [
        "with x as (insert into public.audit_tentative values (1) returning 1) select * from x",
        "select md5('a user or unknown function may write')",
        "select 1 from public.audit_tentative for update",
    ] {
        c.simple_query("begin").await.unwrap();
        c.simple_query(read).await.unwrap();
        let err =
            c.simple_query("insert into workspace.imports (file_name, row_count) values ('not-moved', 1)").await.unwrap_err();
        assert_eq!(sqlstate(&err), "0A000", "{read}: the transaction must not move silently");
        c.simple_query("rollback").await.unwrap();
    }
}

#[tokio::test]
async fn a_statement_prepared_before_the_transaction_runs_where_the_transaction_is_bound() {
    let proxy = Proxy::split().await;
    let c = proxy.connect().await;
    // Prepared while idle: it names no routed schema, so it merely follows (then: the default target, PRIMARY).
    let anywhere = c.prepare("select current_database()::text").await.unwrap();
    c.simple_query("begin").await.unwrap();
    c.simple_query("insert into workspace.imports (file_name, row_count) values ('prepared-follows', 1)").await.unwrap();
    let row = c.query_one(&anywhere, &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "handled_data");
    // The transaction is still DATA's: PRIMARY is refused, DATA still works.
    let err = c.simple_query("insert into customer.accounts (name) values ('wrong-target')").await.unwrap_err();
    assert_eq!(sqlstate(&err), "0A000", "{err:?}");
    c.simple_query("rollback").await.unwrap();
    c.simple_query("begin").await.unwrap();
    c.simple_query("insert into workspace.imports (file_name, row_count) values ('prepared-follows', 2)").await.unwrap();
    c.query_one(&anywhere, &[]).await.unwrap();
    c.simple_query("update workspace.imports set row_count = 3 where file_name = 'prepared-follows'").await.unwrap();
    c.simple_query("commit").await.unwrap();
    assert_eq!(
        direct(
            &clusters().data,
            "handled_data",
            "select string_agg(row_count::text, ',') from workspace.imports where file_name = 'prepared-follows'"
        )
        .await,
        "3"
    );
}
