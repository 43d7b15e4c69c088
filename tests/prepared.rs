//! Named prepared statements under transaction pooling: they survive changing server connections, two clients'
//! names never collide, Close and errors behave as on a direct connection, and pgbench's extended and prepared
//! modes run clean with more clients than the pool.

mod common;

use std::process::Command;

use bytes::BytesMut;

use common::{
    bind_execute, clusters, config_yaml, direct, parse_bind_execute, read_messages, read_until_ready, sqlstate, Proxy,
    APP_PASSWORD,
};

/// A configuration whose pools are tiny, so clients constantly share and swap server connections.
fn tiny_pools(primary: u32, data: u32) -> String {
    config_yaml("verify-full", "")
        .replace("pool: { max: 5, checkout_timeout: 3s }", &format!("pool: {{ max: {primary}, checkout_timeout: 10s }}"))
        .replace("pool: { max: 10, checkout_timeout: 3s }", &format!("pool: {{ max: {data}, checkout_timeout: 10s }}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_statements_survive_transaction_pooling_on_both_targets() {
    let proxy = Proxy::start(&tiny_pools(2, 2)).await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let c = proxy.connect().await;
        tasks.push(tokio::spawn(async move {
            let on_primary = c.prepare("select email from config.users where name = $1").await.unwrap();
            let on_data = c.prepare("select name from reference.countries where code = $1").await.unwrap();
            let mine = c.prepare(&format!("select $1::int + {i}")).await.unwrap();
            for j in 0..20i32 {
                let email: String = c.query_one(&on_primary, &[&"Ada"]).await.unwrap().get(0);
                assert_eq!(email, "ada@example.com");
                let country: String = c.query_one(&on_data, &[&"FR"]).await.unwrap().get(0);
                assert_eq!(country, "France");
                let n: i32 = c.query_one(&mine, &[&j]).await.unwrap().get(0);
                assert_eq!(n, j + i, "client {i} ran its own statement");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (open, _) = proxy.app.backend(0).pool_state();
    assert!(open <= 2, "{open} PRIMARY connections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_same_statement_name_different_sql_never_collide() {
    // One server connection: both clients' "s0" (tokio-postgres names its statements s0, s1, ...) run on it.
    let proxy = Proxy::start(&tiny_pools(1, 1)).await;
    let a = proxy.connect().await;
    let b = proxy.connect().await;
    let sa = a.prepare("select 'A:' || $1::text").await.unwrap();
    let sb = b.prepare("select 'B:' || $1::text").await.unwrap();
    for i in 0..10 {
        let ra: String = a.query_one(&sa, &[&i.to_string()]).await.unwrap().get(0);
        let rb: String = b.query_one(&sb, &[&i.to_string()]).await.unwrap().get(0);
        assert_eq!((ra, rb), (format!("A:{i}"), format!("B:{i}")));
    }
}

#[tokio::test]
async fn closed_statements_are_gone_and_failed_parses_leave_nothing_behind() {
    let proxy = Proxy::start(&tiny_pools(1, 1)).await;
    let mut c = proxy.connect().await;
    let err = c.prepare("select * from config.no_such_table where id = $1").await.unwrap_err();
    assert_eq!(sqlstate(&err), "42P01");
    // The same text again fails the same way (nothing half-prepared remains on the connection).
    let err = c.prepare("select * from config.no_such_table where id = $1").await.unwrap_err();
    assert_eq!(sqlstate(&err), "42P01");
    let s = c.prepare("select count(*) from config.users where id > $1").await.unwrap();
    let n: i64 = c.query_one(&s, &[&0i32]).await.unwrap().get(0);
    assert!(n >= 2);
    drop(s); // tokio-postgres sends Close for the statement
    let s2 = c.prepare("select count(*) from config.users where id > $1").await.unwrap();
    let n2: i64 = c.query_one(&s2, &[&0i32]).await.unwrap().get(0);
    assert_eq!(n, n2);
    // A statement for another target inside a transaction is refused like a simple query.
    let tx = c.transaction().await.unwrap();
    tx.query("select 1 from config.users limit 1", &[]).await.unwrap();
    let err = tx.query("select 1 from workspace.imports limit 1", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "0A000");
    drop(tx);
    let n3: i64 = c.query_one(&s2, &[&0i32]).await.unwrap().get(0);
    assert_eq!(n, n3);
}

#[tokio::test]
async fn sql_deallocate_all_clears_the_clients_names_without_touching_others() {
    let proxy = Proxy::start(&tiny_pools(1, 1)).await;
    let a = proxy.connect().await;
    let b = proxy.connect().await;
    let sb = b.prepare("select 'still here'").await.unwrap();
    let sa = a.prepare("select 'gone soon'").await.unwrap();
    a.batch_execute("DEALLOCATE ALL").await.unwrap();
    let err = a.query(&sa, &[]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "26000", "invalid_sql_statement_name, as on a direct connection");
    let r: String = b.query_one(&sb, &[]).await.unwrap().get(0);
    assert_eq!(r, "still here");
}

fn pgbench(args: &[&str]) -> std::process::Output {
    Command::new(common::pg_tool("pgbench")).args(args).output().expect("pgbench runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_simple_extended_and_prepared_modes_run_clean_with_more_clients_than_the_pool() {
    let yaml = tiny_pools(5, 4).replace("default_target: primary", "default_target: data");
    let proxy = Proxy::start(&yaml).await;
    let url = format!("postgresql://app:{APP_PASSWORD}@127.0.0.1:{}/handled?sslmode=disable", proxy.port);
    let out = tokio::task::spawn_blocking(move || {
        let init = pgbench(&["-i", "-s", "1", "-q", "--foreign-keys", &url]);
        assert!(init.status.success(), "pgbench -i: {}", String::from_utf8_lossy(&init.stderr));
        ["simple", "extended", "prepared"]
            .iter()
            // One thread per client: pgbench prepares with a blocking PQprepare, which on a shared thread would
            // wait for a server connection held by that thread's other clients (any pooler deadlocks pgbench so).
            .map(|mode| (mode.to_string(), pgbench(&["-M", mode, "-c", "12", "-j", "12", "-t", "50", "-n", &url])))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for (mode, o) in out {
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "-M {mode}: {stdout}\n{}", String::from_utf8_lossy(&o.stderr));
        assert!(stdout.contains("number of transactions actually processed: 600/600"), "-M {mode}: {stdout}");
        assert!(stdout.contains("number of failed transactions: 0"), "-M {mode}: {stdout}");
    }
    let n: i64 =
        common::direct(&clusters().data, "handled_data", "select count(*) from public.pgbench_history").await.parse().unwrap();
    assert!(n >= 1800, "{n} history rows from three tpcb-like runs");
}

#[tokio::test]
async fn a_jdbc_style_batch_with_a_prepared_begin_binds_to_the_statements_target() {
    use postgres_protocol::message::frontend;
    use tokio::io::AsyncWriteExt;
    let proxy = Proxy::split().await;
    let mut s = common::raw_login(proxy.port).await;
    let mut out = bytes::BytesMut::new();
    let no_params: [Option<&[u8]>; 0] = [];
    for (name, sql) in [("", "BEGIN"), ("S_1", "insert into workspace.imports (file_name, row_count) values ('jdbc-begin', 1)")] {
        frontend::parse(name, sql, std::iter::empty(), &mut out).unwrap();
        frontend::bind(
            "",
            name,
            std::iter::empty(),
            no_params.iter(),
            |p: &Option<&[u8]>, buf: &mut bytes::BytesMut| match p {
                Some(v) => {
                    buf.extend_from_slice(v);
                    Ok(postgres_protocol::IsNull::No)
                }
                None => Ok(postgres_protocol::IsNull::Yes),
            },
            std::iter::empty(),
            &mut out,
        )
        .map_err(|_| "bind")
        .unwrap();
        frontend::execute("", 0, &mut out).unwrap();
    }
    frontend::sync(&mut out);
    s.write_all(&out).await.unwrap();
    let (tags, status) = read_until_ready(&mut s).await;
    assert_eq!(status, b'T', "inside the transaction: {:?}", tags.iter().map(|&t| t as char).collect::<String>());
    assert!(!tags.contains(&b'E'), "{:?}", tags.iter().map(|&t| t as char).collect::<String>());
    out.clear();
    frontend::query("COMMIT", &mut out).unwrap();
    s.write_all(&out).await.unwrap();
    let (_, status) = read_until_ready(&mut s).await;
    assert_eq!(status, b'I');
    assert_eq!(
        common::direct(&clusters().data, "handled_data", "select count(*) from workspace.imports where file_name = 'jdbc-begin'")
            .await,
        "1"
    );
}

#[tokio::test]
async fn named_statements_inside_a_deferred_transaction_and_after_a_refusal_behave_as_direct() {
    let proxy = Proxy::start(&tiny_pools(1, 1)).await;
    let mut c = proxy.connect().await;
    let on_data = c.prepare("insert into workspace.imports (file_name, row_count) values ($1, 1)").await.unwrap();
    let on_primary = c.prepare("select count(*) from config.users where id > $1").await.unwrap();
    // BEGIN is deferred; the first statement is a named one (its reply queue must survive BEGIN's replay).
    for round in 0..3 {
        let tx = c.transaction().await.unwrap();
        tx.execute(&on_data, &[&format!("deferred-named-{round}")]).await.unwrap();
        tx.commit().await.unwrap();
    }
    assert_eq!(
        direct(
            &clusters().data,
            "handled_data",
            "select count(*) from workspace.imports where file_name like 'deferred-named-%'"
        )
        .await,
        "3"
    );
    // A statement prepared earlier for DATA cannot join a transaction bound to PRIMARY.
    let tx = c.transaction().await.unwrap();
    let _: i64 = tx.query_one(&on_primary, &[&0i32]).await.unwrap().get(0);
    let err = tx.execute(&on_data, &[&"misrouted".to_string()]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "0A000");
    // After the refusal the transaction is failed for the extended protocol too, and nothing is committed.
    let err = tx.query_one(&on_primary, &[&0i32]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "25P02");
    tx.commit().await.unwrap();
    assert_eq!(
        direct(&clusters().data, "handled_data", "select count(*) from workspace.imports where file_name = 'misrouted'").await,
        "0"
    );
    let n: i64 = c.query_one(&on_primary, &[&0i32]).await.unwrap().get(0);
    assert!(n >= 2, "the session goes on");
}

#[tokio::test]
async fn an_asyncpg_style_prepare_with_flush_inside_a_deferred_transaction_keeps_the_transaction() {
    use postgres_protocol::message::frontend;
    use tokio::io::AsyncWriteExt;
    let proxy = Proxy::split().await;
    let mut s = common::raw_login(proxy.port).await;
    let mut out = bytes::BytesMut::new();
    frontend::query("BEGIN", &mut out).unwrap();
    s.write_all(&out).await.unwrap();
    assert_eq!(read_until_ready(&mut s).await.1, b'T');
    // asyncpg prepares with Parse/Describe/Flush and waits for the description before it binds.
    out.clear();
    let sql = "insert into workspace.imports (file_name, row_count) values ('flush-in-tx', 1) returning id";
    frontend::parse("__asyncpg_stmt_1__", sql, std::iter::empty(), &mut out).unwrap();
    frontend::describe(b'S', "__asyncpg_stmt_1__", &mut out).unwrap();
    frontend::flush(&mut out);
    s.write_all(&out).await.unwrap();
    assert_eq!(read_messages(&mut s, 3).await, b"1tT", "ParseComplete, ParameterDescription, RowDescription");
    out.clear();
    bind_execute("__asyncpg_stmt_1__", &mut out);
    frontend::sync(&mut out);
    s.write_all(&out).await.unwrap();
    let (tags, status) = read_until_ready(&mut s).await;
    assert_eq!(tags, b"2DCZ", "{:?}", String::from_utf8_lossy(&tags));
    assert_eq!(status, b'T', "still inside the client's transaction");
    out.clear();
    frontend::query("ROLLBACK", &mut out).unwrap();
    s.write_all(&out).await.unwrap();
    assert_eq!(read_until_ready(&mut s).await.1, b'I');
    assert_eq!(
        common::direct(
            &clusters().data,
            "handled_data",
            "select count(*) from workspace.imports where file_name = 'flush-in-tx'"
        )
        .await,
        "0",
        "the insert ran inside the rolled back transaction"
    );
}

#[tokio::test]
async fn after_a_server_error_in_a_flushed_batch_the_rest_until_sync_is_ignored_as_by_postgres() {
    use postgres_protocol::message::frontend;
    use tokio::io::AsyncWriteExt;
    let proxy = Proxy::split().await;
    let mut s = common::raw_login(proxy.port).await;
    let mut out = bytes::BytesMut::new();
    frontend::query("BEGIN; insert into workspace.imports (file_name, row_count) values ('skip', 1)", &mut out).unwrap();
    s.write_all(&out).await.unwrap();
    assert_eq!(read_until_ready(&mut s).await.1, b'T');
    // The server connection gets `select 2` prepared.
    out.clear();
    frontend::parse("b", "select 2", std::iter::empty(), &mut out).unwrap();
    frontend::sync(&mut out);
    s.write_all(&out).await.unwrap();
    assert_eq!(read_until_ready(&mut s).await.0, b"1Z");
    // An error in a flushed part of a batch...
    out.clear();
    parse_bind_execute("c", "select 1 / (random() * 0)::int", &mut out);
    frontend::flush(&mut out);
    s.write_all(&out).await.unwrap();
    assert_eq!(read_messages(&mut s, 3).await, b"12E");
    // ... and what follows until Sync gets no reply, even a Parse of SQL the connection has prepared already.
    out.clear();
    parse_bind_execute("b2", "select 2", &mut out);
    frontend::flush(&mut out);
    frontend::sync(&mut out);
    s.write_all(&out).await.unwrap();
    let (tags, status) = read_until_ready(&mut s).await;
    assert_eq!((tags.as_slice(), status), (&b"Z"[..], b'E'), "{:?}", String::from_utf8_lossy(&tags));
    out.clear();
    frontend::query("ROLLBACK", &mut out).unwrap();
    s.write_all(&out).await.unwrap();
    assert_eq!(read_until_ready(&mut s).await.1, b'I');
    // The skipped Parse created nothing.
    out.clear();
    bind_execute("b2", &mut out);
    frontend::sync(&mut out);
    s.write_all(&out).await.unwrap();
    assert_eq!(read_until_ready(&mut s).await.0, b"EZ", "prepared statement \"b2\" does not exist");
}

#[tokio::test]
async fn a_pipelined_batch_larger_than_the_socket_buffers_both_ways_completes() {
    use postgres_protocol::message::frontend;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let proxy = Proxy::split().await;
    let s = common::raw_login(proxy.port).await;
    // 2,000 Bind/Execute of a 10 kB parameter echoed back: 20 MB each way, far beyond what socket buffers hold. The
    // server answers the first messages while pgsplit is still sending the rest; neither side may wait for the other.
    const N: usize = 2000;
    let param = vec![b'x'; 10_000];
    let mut out = bytes::BytesMut::new();
    frontend::parse(
        "",
        "(select $1::text from workspace.imports limit 0) union all select $1::text",
        std::iter::empty(),
        &mut out,
    )
    .unwrap();
    for _ in 0..N {
        let params: [Option<&[u8]>; 1] = [Some(&param)];
        frontend::bind(
            "",
            "",
            std::iter::empty(),
            params.iter(),
            |p: &Option<&[u8]>, buf: &mut bytes::BytesMut| {
                buf.extend_from_slice(p.unwrap_or_default());
                Ok(postgres_protocol::IsNull::No)
            },
            std::iter::empty(),
            &mut out,
        )
        .map_err(|_| "bind")
        .unwrap();
        frontend::execute("", 0, &mut out).unwrap();
    }
    frontend::sync(&mut out);
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move { wr.write_all(&out).await.map(|()| wr) });
    let reader = async {
        let mut rows = 0;
        let mut header = [0u8; 5];
        loop {
            rd.read_exact(&mut header).await.unwrap();
            let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
            let mut body = vec![0u8; len - 4];
            rd.read_exact(&mut body).await.unwrap();
            match header[0] {
                b'D' => rows += 1,
                b'E' => panic!("error: {}", String::from_utf8_lossy(&body)),
                b'Z' => return rows,
                _ => {}
            }
        }
    };
    let rows = tokio::time::timeout(std::time::Duration::from_secs(120), reader).await.expect("the batch completes");
    assert_eq!(rows, N);
    writer.await.unwrap().unwrap();
}

/// Command tags of the CommandComplete messages until ReadyForQuery.
async fn command_tags(s: &mut tokio::net::TcpStream) -> Vec<String> {
    use tokio::io::AsyncReadExt;
    let mut tags = Vec::new();
    let mut header = [0u8; 5];
    loop {
        tokio::time::timeout(std::time::Duration::from_secs(10), s.read_exact(&mut header)).await.unwrap().unwrap();
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let mut body = vec![0u8; len - 4];
        s.read_exact(&mut body).await.unwrap();
        match header[0] {
            b'C' => tags.push(String::from_utf8_lossy(&body[..body.len() - 1]).into_owned()),
            b'Z' => return tags,
            _ => {}
        }
    }
}

#[tokio::test]
async fn several_unnamed_transaction_control_statements_in_one_batch_each_get_their_own_reply() {
    use postgres_protocol::message::frontend;
    use tokio::io::AsyncWriteExt;
    let proxy = Proxy::split().await;
    let mut s = common::raw_login(proxy.port).await;
    let mut out = bytes::BytesMut::new();
    frontend::query("BEGIN", &mut out).unwrap();
    s.write_all(&out).await.unwrap();
    assert_eq!(command_tags(&mut s).await, ["BEGIN"]);
    // Answered by pgsplit (the transaction is deferred): each statement by its own text.
    out.clear();
    for sql in ["SAVEPOINT a", "RELEASE SAVEPOINT a", "SET LOCAL statement_timeout = '3s'"] {
        parse_bind_execute("", sql, &mut out);
    }
    frontend::sync(&mut out);
    s.write_all(&out).await.unwrap();
    assert_eq!(command_tags(&mut s).await, ["SAVEPOINT", "RELEASE", "SET"]);
    out.clear();
    frontend::query("select current_setting('statement_timeout') from workspace.imports limit 1; commit", &mut out).unwrap();
    s.write_all(&out).await.unwrap();
    assert_eq!(command_tags(&mut s).await, ["SELECT 1", "COMMIT"], "the held statements replayed in order on DATA");
}

#[tokio::test]
async fn a_refusal_after_a_flushed_part_of_an_autocommit_batch_rolls_it_back_and_ends_idle_as_by_postgres() {
    let proxy = Proxy::split().await;
    let mut s = common::raw_login(proxy.port).await;
    // No BEGIN: the batch is one implicit transaction. Its first part runs on DATA and is flushed; then a statement
    // for PRIMARY is refused: as an error in the batch would, it ends the implicit transaction rolled back.
    common::assert_refusal_after_flush_ends_idle(
        &mut s,
        "insert into workspace.imports (file_name, row_count) values ('flushed-then-refused', 1)",
        "select count(*) from config.users",
        "select count(*) from config.users",
    )
    .await;
    assert_eq!(
        direct(
            &clusters().data,
            "handled_data",
            "select count(*) from workspace.imports where file_name = 'flushed-then-refused'"
        )
        .await,
        "0",
        "the flushed insert was rolled back with its implicit transaction"
    );
}

/// An error inside a pipelined batch stops it as PostgreSQL stops it (issue 16, point 10): what came before ran,
/// nothing after the error runs up to the Sync (in an implicit transaction, the whole batch is rolled back), and the
/// next Sync's part runs normally; named and unnamed statements alike, with a Flush in the middle too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_inside_a_pipeline_stops_it_up_to_its_sync_as_postgresql_does() {
    use postgres_protocol::message::frontend;
    use tokio::io::AsyncWriteExt;
    let proxy = Proxy::split().await;
    let id = std::process::id();
    let c = proxy.connect().await;
    c.batch_execute(&format!("create table workspace.pipe_{id} (v int primary key)")).await.unwrap();
    let mut s = common::raw_login(proxy.port).await;
    let mut out = BytesMut::new();
    common::parse_bind_execute("", &format!("insert into workspace.pipe_{id} values (1)"), &mut out);
    common::parse_bind_execute("ins", &format!("insert into workspace.pipe_{id} values (2)"), &mut out);
    frontend::flush(&mut out);
    // A unique violation: an error at Execute (the first insert's row, inserted in this same implicit transaction).
    common::parse_bind_execute("", &format!("insert into workspace.pipe_{id} values (1)"), &mut out);
    common::parse_bind_execute("", &format!("insert into workspace.pipe_{id} values (3)"), &mut out);
    common::bind_execute("ins", &mut out);
    frontend::sync(&mut out);
    common::parse_bind_execute("", &format!("insert into workspace.pipe_{id} values (4)"), &mut out);
    frontend::sync(&mut out);
    s.write_all(&out).await.unwrap();
    // 1: ParseComplete, BindComplete, CommandComplete twice; the duplicate fails after its Parse and Bind; the rest
    // up to Sync is skipped; then the second part runs.
    // (Both parts' replies may arrive in one read: they are read as one stream, up to the second ReadyForQuery.)
    let mut tags = String::new();
    let mut buf = BytesMut::new();
    while tags.matches('Z').count() < 2 {
        while let Some((tag, len)) =
            (buf.len() >= 5).then(|| (buf[0], u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize))
        {
            if buf.len() < len + 1 {
                break;
            }
            tags.push(char::from(tag));
            let _ = buf.split_to(len + 1);
        }
        if tags.matches('Z').count() < 2 {
            let read =
                tokio::time::timeout(std::time::Duration::from_secs(10), tokio::io::AsyncReadExt::read_buf(&mut s, &mut buf));
            assert!(read.await.expect("replies within 10 s").unwrap() > 0, "closed after {tags}");
        }
    }
    assert_eq!(tags, "12C12C12EZ12CZ");
    // The failed part's implicit transaction rolled back its inserts; the second part's stayed.
    assert_eq!(common::scalar(&c, &format!("select string_agg(v::text, ',') from workspace.pipe_{id}")).await, "4");
}

/// A statement prepared again after DDL is planned against today's catalog, with today's descriptions (issue 16,
/// point 5): server-side statements are shared by text only within one generation of the target's catalog, which
/// moves on at DDL through pgsplit and when a server refuses a statement whose result type changed (DDL made
/// elsewhere). The old statement gets PostgreSQL's own error, as on a direct connection, never rows of another type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_prepared_again_after_ddl_is_planned_against_the_new_catalog() {
    use tokio_postgres::types::Type;
    // One DATA connection: every statement lives on the same server process.
    let yaml = config_yaml("verify-full", "")
        .replace("pool: { max: 10, checkout_timeout: 3s }", "pool: { max: 1, checkout_timeout: 10s }");
    let proxy = Proxy::start(&yaml).await;
    let id = std::process::id();
    let a = proxy.connect().await;
    let b = proxy.connect().await;
    a.batch_execute(&format!("create table workspace.stale_{id} (v int); insert into workspace.stale_{id} values (7)"))
        .await
        .unwrap();
    let sql = format!("select v from workspace.stale_{id}");
    let old = a.prepare(&sql).await.unwrap();
    assert_eq!(a.query_one(&old, &[]).await.unwrap().get::<_, i32>(0), 7);
    b.batch_execute(&format!("alter table workspace.stale_{id} alter v type text")).await.unwrap();
    assert_eq!(sqlstate(&a.query_one(&old, &[]).await.unwrap_err()), "0A000", "the old statement, as PostgreSQL says");
    let again = a.prepare(&sql).await.unwrap();
    assert_eq!(again.columns()[0].type_(), &Type::TEXT);
    assert_eq!(a.query_one(&again, &[]).await.unwrap().get::<_, String>(0), "7");
    // Another client preparing the same text now shares today's statement.
    let other = b.prepare(&sql).await.unwrap();
    assert_eq!(other.columns()[0].type_(), &Type::TEXT);

    // DDL made elsewhere, directly on DATA: the server's refusal moves the generation on.
    direct(&clusters().data, "handled_data", &format!("alter table workspace.stale_{id} alter v type bigint using v::bigint"))
        .await;
    assert_eq!(sqlstate(&a.query_one(&again, &[]).await.unwrap_err()), "0A000");
    let third = a.prepare(&sql).await.unwrap();
    assert_eq!(third.columns()[0].type_(), &Type::INT8);
    assert_eq!(a.query_one(&third, &[]).await.unwrap().get::<_, i64>(0), 7);
}

/// A statement the client prepared before DDL, used on a connection that lacks it (issue 16, point 5): prepared
/// there, it would be planned against today's catalog and its rows would reach the client in another shape than
/// the one it was described with. As on a direct connection, it gets PostgreSQL's 0A000 while its row differs, and
/// so does another client's statement of the same text (in a transaction, the transaction fails); a statement the
/// DDL did not change goes on working, and one that no longer parses gets the server's error at its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_prepared_before_ddl_never_runs_in_another_shape_on_another_connection() {
    // One DATA connection at a time: terminating its process makes pgsplit open another, lacking every statement.
    let proxy = Proxy::start(&tiny_pools(5, 1)).await;
    let id = std::process::id();
    let a = proxy.connect().await;
    let b = proxy.connect().await;
    let table = format!("workspace.reshaped_{id}");
    a.batch_execute(&format!("create table {table} (v int, w int, x int); insert into {table} values (7, 8, 9)")).await.unwrap();
    let changed = a.prepare(&format!("select v from {table}")).await.unwrap();
    let unchanged = a.prepare(&format!("select w from {table}")).await.unwrap();
    let dropped = a.prepare(&format!("select x from {table}")).await.unwrap();
    assert_eq!(a.query_one(&changed, &[]).await.unwrap().get::<_, i32>(0), 7);
    // Another client's statement of the same text: the same server-side statement.
    let c = proxy.connect().await;
    let changed_too = c.prepare(&format!("select v from {table}")).await.unwrap();
    b.batch_execute(&format!("alter table {table} alter v type text, drop column x")).await.unwrap();
    common::replace_the_data_connection(&b, &table).await;
    assert_eq!(a.query_one(&unchanged, &[]).await.unwrap().get::<_, i32>(0), 8, "a statement the DDL left alone");
    for _ in 0..2 {
        let e = a.query_one(&changed, &[]).await.expect_err("rows of another type");
        assert_eq!(sqlstate(&e), "0A000", "{e:?}");
        let e = c.query_one(&changed_too, &[]).await.expect_err("rows of another type, for another client");
        assert_eq!(sqlstate(&e), "0A000", "{e:?}");
    }
    assert_eq!(sqlstate(&a.query_one(&dropped, &[]).await.unwrap_err()), "42703", "the server's own error");
    a.batch_execute("begin").await.unwrap();
    assert_eq!(sqlstate(&a.query_one(&changed, &[]).await.unwrap_err()), "0A000");
    assert_eq!(sqlstate(&a.simple_query("select 1").await.unwrap_err()), "25P02", "the transaction failed");
    a.batch_execute("rollback").await.unwrap();
    // Inside a transaction, on a new connection again: a statement that no longer parses fails the transaction.
    common::replace_the_data_connection(&b, &table).await;
    a.batch_execute("begin").await.unwrap();
    assert_eq!(sqlstate(&a.query_one(&dropped, &[]).await.unwrap_err()), "42703");
    assert_eq!(sqlstate(&a.simple_query("select 1").await.unwrap_err()), "25P02");
    a.batch_execute("rollback").await.unwrap();
    // Prepared again, as drivers do on 0A000: today's statement, today's rows.
    let again = a.prepare(&format!("select v from {table}")).await.unwrap();
    assert_eq!(again.columns()[0].type_(), &tokio_postgres::types::Type::TEXT);
    assert_eq!(a.query_one(&again, &[]).await.unwrap().get::<_, String>(0), "7");
}
