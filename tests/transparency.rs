//! What a client sees through pgsplit is byte for byte what the server sent: rows with NULLs and large values,
//! binary results, errors with all their fields, notices, empty queries; plus the ORM habits of SPEC §4 (PDO's SQL
//! DEALLOCATE of a protocol statement, psqlODBC's multi-statement start-up batch).

mod common;

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use common::{clusters, Proxy};

/// Everything the server sends up to and including ReadyForQuery.
async fn exchange<S: AsyncReadExt + AsyncWriteExt + Unpin>(s: &mut S, request: &[u8]) -> Vec<u8> {
    s.write_all(request).await.unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Complete when the last whole message is a ReadyForQuery.
        let mut off = 0;
        let mut last = 0u8;
        while got.len() >= off + 5 {
            let len = u32::from_be_bytes([got[off + 1], got[off + 2], got[off + 3], got[off + 4]]) as usize;
            if got.len() < off + 1 + len {
                break;
            }
            last = got[off];
            off += 1 + len;
        }
        if off == got.len() && last == b'Z' {
            return got;
        }
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "server closed");
        got.extend_from_slice(&buf[..n]);
    }
}

/// The message types of a response, in order.
fn tags(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut off = 0;
    while bytes.len() >= off + 5 {
        out.push(bytes[off]);
        off += 1 + u32::from_be_bytes([bytes[off + 1], bytes[off + 2], bytes[off + 3], bytes[off + 4]]) as usize;
    }
    out
}

/// A direct connection to DATA as the role pgsplit uses, over the unix socket (trust), past its first ReadyForQuery.
async fn direct_data() -> UnixStream {
    let cl = &clusters().data;
    let path = cl.socket_dir().join(format!(".s.PGSQL.{}", cl.port()));
    let mut s = UnixStream::connect(path).await.unwrap();
    let mut out = BytesMut::new();
    frontend::startup_message([("user", "pgsplit"), ("database", "handled_data")], &mut out).unwrap();
    let _ = exchange(&mut s, &out).await;
    s
}

fn requests() -> Vec<(&'static str, BytesMut)> {
    let mut v = Vec::new();
    let mut q = |name: &'static str, sql: &str| {
        let mut b = BytesMut::new();
        frontend::query(sql, &mut b).unwrap();
        v.push((name, b));
    };
    q("nulls and types", "select 1 as a, null::text as b, 'x'::bytea as c, 1.5::numeric as d, '{1,2}'::int[] as e from reference.countries where code = 'FR'");
    q("large row", "select repeat('a', 300000) as big, code from reference.countries where code = 'DE'");
    q("error with all fields", "select 1 / (select count(*) - count(*) from reference.countries)");
    q(
        "notice with detail and hint",
        "/* pgsplit: target=data */ do $$ begin raise notice 'hello' using detail = 'the detail', hint = 'the hint'; end $$",
    );
    q("empty query", "/* pgsplit: target=data */ ");
    q("multi-statement", "select code from reference.countries order by code; select count(*) from reference.countries");
    // Extended protocol, binary results.
    let mut b = BytesMut::new();
    frontend::parse("", "select code, name, length(name) from reference.countries where code = $1", [25u32], &mut b).unwrap();
    frontend::bind(
        "",
        "",
        [0i16],
        [&b"JP"[..]],
        |p: &[u8], buf: &mut BytesMut| {
            buf.extend_from_slice(p);
            Ok::<_, Box<dyn std::error::Error + Sync + Send>>(postgres_protocol::IsNull::No)
        },
        [1i16],
        &mut b,
    )
    .map_err(|_| "bind")
    .unwrap();
    frontend::describe(b'P', "", &mut b).unwrap();
    frontend::execute("", 0, &mut b).unwrap();
    frontend::sync(&mut b);
    v.push(("extended, binary results", b));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_byte_identical_to_a_direct_connection() {
    let proxy = Proxy::split().await;
    let mut via = common::raw_login(proxy.port).await;
    let mut direct = direct_data().await;
    for (name, request) in requests() {
        let expected = exchange(&mut direct, &request).await;
        let got = exchange(&mut via, &request).await;
        assert!(got == expected, "{name}: {} bytes through pgsplit, {} direct", got.len(), expected.len());
    }
}

#[tokio::test]
async fn pdo_sql_deallocate_of_a_protocol_statement_and_an_odbc_startup_batch_work() {
    let proxy = Proxy::split().await;
    let mut s = common::raw_login(proxy.port).await;
    // psqlODBC's start-up batch: several statements in one Query.
    let mut b = BytesMut::new();
    frontend::query("SET DateStyle = 'ISO';SET extra_float_digits = 2;show transaction_isolation", &mut b).unwrap();
    let got = exchange(&mut s, &b).await;
    assert!(!tags(&got).contains(&b'E'), "no error: {}", String::from_utf8_lossy(&got));
    assert!(String::from_utf8_lossy(&got).contains("read committed"));
    // PDO: a protocol-level statement, deallocated with SQL.
    b.clear();
    frontend::parse("pdo_stmt_00000001", "select count(*) from reference.countries", std::iter::empty(), &mut b).unwrap();
    frontend::sync(&mut b);
    let got = exchange(&mut s, &b).await;
    assert_eq!(got[0], b'1', "ParseComplete");
    b.clear();
    frontend::query("DEALLOCATE pdo_stmt_00000001", &mut b).unwrap();
    let got = exchange(&mut s, &b).await;
    assert!(String::from_utf8_lossy(&got).contains("DEALLOCATE"), "{got:?}");
    b.clear();
    frontend::describe(b'S', "pdo_stmt_00000001", &mut b).unwrap();
    frontend::sync(&mut b);
    let got = exchange(&mut s, &b).await;
    assert_eq!(tags(&got), [b'E', b'Z'], "the statement is gone");
    assert!(got.windows(6).any(|w| w == b"C26000"), "{}", String::from_utf8_lossy(&got));
}

#[tokio::test]
async fn the_greeting_reports_the_clients_own_settings() {
    let proxy = Proxy::split().await;
    let (_s, reported) =
        common::raw_login_with(proxy.port, &[("application_name", "greeter"), ("options", "-c TimeZone=Asia/Tokyo")]).await;
    let get = |k: &str| reported.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("application_name"), Some("greeter"));
    assert_eq!(get("TimeZone"), Some("Asia/Tokyo"));
    assert_eq!(get("server_encoding"), Some("UTF8"), "the rest as the default target reports it");
}

fn bind_execute_sync(out: &mut BytesMut) {
    bind_execute(out);
    frontend::sync(out);
}

fn bind_execute(out: &mut BytesMut) {
    frontend::bind(
        "",
        "",
        std::iter::empty::<i16>(),
        std::iter::empty::<&[u8]>(),
        |p: &[u8], b: &mut BytesMut| {
            b.extend_from_slice(p);
            Ok::<_, Box<dyn std::error::Error + Sync + Send>>(postgres_protocol::IsNull::No)
        },
        std::iter::empty::<i16>(),
        out,
    )
    .map_err(|_| "bind")
    .unwrap();
    frontend::execute("", 0, out).unwrap();
}

#[tokio::test]
async fn the_unnamed_statement_of_one_client_never_runs_for_another() {
    // One DATA connection: both clients' unnamed statements live on the same server process.
    let yaml = common::config_yaml("verify-full", "")
        .replace("pool: { max: 10, checkout_timeout: 3s }", "pool: { max: 1, checkout_timeout: 5s }");
    let proxy = Proxy::start(&yaml).await;
    let mut a = common::raw_login(proxy.port).await;
    let mut b = common::raw_login(proxy.port).await;
    let mut m = BytesMut::new();
    frontend::parse("", "select 'B:' || count(*) from reference.countries", std::iter::empty(), &mut m).unwrap();
    frontend::sync(&mut m);
    exchange(&mut b, &m).await;
    m.clear();
    frontend::parse("", "select 'A:' || count(*) from reference.countries", std::iter::empty(), &mut m).unwrap();
    frontend::sync(&mut m);
    exchange(&mut a, &m).await;
    // B binds its unnamed statement in a later batch: it must run B's SQL, not A's.
    m.clear();
    bind_execute_sync(&mut m);
    let got = exchange(&mut b, &m).await;
    assert!(String::from_utf8_lossy(&got).contains("B:"), "{}", String::from_utf8_lossy(&got));
    assert!(!String::from_utf8_lossy(&got).contains("A:"));
}

/// After the client prepares `s1`: Closes of the statements `names`, then Flush; every CloseComplete must come at
/// once, without waiting for Sync, then Sync gets its ReadyForQuery.
async fn closes_before_a_flush_are_answered_at_once(names: &[&str]) {
    let proxy = Proxy::split().await;
    let mut s = common::raw_login(proxy.port).await;
    let mut m = BytesMut::new();
    frontend::parse("s1", "select 1 from reference.countries limit 1", std::iter::empty(), &mut m).unwrap();
    frontend::sync(&mut m);
    exchange(&mut s, &m).await;
    m.clear();
    for name in names {
        frontend::close(b'S', name, &mut m).unwrap();
    }
    frontend::flush(&mut m);
    s.write_all(&m).await.unwrap();
    let mut buf = vec![0u8; 5 * names.len()];
    tokio::time::timeout(std::time::Duration::from_secs(3), s.read_exact(&mut buf))
        .await
        .expect("every CloseComplete without waiting for Sync")
        .unwrap();
    assert_eq!(buf, [b'3', 0, 0, 0, 4].repeat(names.len()));
    m.clear();
    frontend::sync(&mut m);
    assert_eq!(tags(&exchange(&mut s, &m).await), [b'Z']);
}

#[tokio::test]
async fn a_close_answered_by_pgsplit_before_a_flush_is_sent_at_once() {
    closes_before_a_flush_are_answered_at_once(&["s1"]).await;
}

/// A Close pgsplit answers itself (a statement name of the client's) after one the server answers (the unnamed
/// statement), then Flush: both CloseCompletes come at once. pgsplit kept the second until the client's next message,
/// and a client waiting for it waited forever.
#[tokio::test]
async fn a_close_answered_by_pgsplit_after_one_the_server_answers_before_a_flush_is_sent_at_once() {
    closes_before_a_flush_are_answered_at_once(&["", "s1"]).await;
}

/// A FunctionCall of `pg_backend_pid()` (OID 2026, fixed in PostgreSQL's catalog) with no arguments, text result.
fn call_backend_pid(m: &mut BytesMut) {
    m.extend_from_slice(&[b'F', 0, 0, 0, 14]);
    m.extend_from_slice(&2026i32.to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
}

/// The message types answering: BEGIN; a batch whose flushed part fails, then a Query and a FunctionCall (all in one
/// write: the Query and the FunctionCall arrive before the server answers the batch), then Sync; ROLLBACK; a
/// FunctionCall. Also the status of the ReadyForQuery ending the batch.
async fn skip_after_flushed_error<S: AsyncReadExt + AsyncWriteExt + Unpin>(s: &mut S) -> (Vec<u8>, Option<u8>, Vec<u8>, Vec<u8>) {
    let mut m = BytesMut::new();
    frontend::query("BEGIN", &mut m).unwrap();
    let _ = exchange(s, &m).await;
    m.clear();
    frontend::parse("", "select count(*) / 0 from workspace.imports", std::iter::empty(), &mut m).unwrap();
    bind_execute(&mut m);
    frontend::flush(&mut m);
    frontend::query("select 1", &mut m).unwrap();
    call_backend_pid(&mut m);
    frontend::sync(&mut m);
    let skipped = exchange(s, &m).await;
    m.clear();
    frontend::query("ROLLBACK", &mut m).unwrap();
    let ended = exchange(s, &m).await;
    m.clear();
    call_backend_pid(&mut m);
    let called = exchange(s, &m).await;
    (tags(&skipped), skipped.last().copied(), tags(&ended), tags(&called))
}

/// After an error in a batch the client flushed, PostgreSQL ignores a Query and a FunctionCall until Sync: they get
/// no reply. pgsplit read them before the server's error, sent them on, and waited forever for their answer (the
/// session fuzz target's `hang-function-call-after-flushed-error`). The same bytes, directly and through pgsplit.
#[tokio::test]
async fn a_query_or_function_call_after_an_error_in_a_flushed_batch_is_ignored_as_by_postgres() {
    let proxy = Proxy::split().await;
    let mut through = common::raw_login(proxy.port).await;
    let mut direct = direct_data().await;
    let seen = [skip_after_flushed_error(&mut direct).await, skip_after_flushed_error(&mut through).await];
    assert_eq!(seen[0], (vec![b'1', b'2', b'E', b'Z'], Some(b'E'), vec![b'C', b'Z'], vec![b'V', b'Z']), "direct");
    assert_eq!(seen[1], seen[0], "through pgsplit as directly");
}

#[tokio::test]
async fn a_refusal_before_sync_sends_only_the_error_and_skips_the_rest_of_the_batch() {
    let proxy = Proxy::split().await;
    let mut s = common::raw_login(proxy.port).await;
    let mut m = BytesMut::new();
    frontend::parse("", "select * from config.users, workspace.imports", std::iter::empty(), &mut m).unwrap();
    frontend::describe(b'S', "", &mut m).unwrap();
    frontend::flush(&mut m);
    s.write_all(&m).await.unwrap();
    let mut got = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(3), s.read(&mut got)).await.expect("the error at once").unwrap();
    assert_eq!(tags(&got[..n]), [b'E'], "only the ErrorResponse before Sync");
    assert!(got[..n].windows(6).any(|w| w == b"C0A000"));
    // What follows before Sync is skipped; Sync gets one ReadyForQuery; the session goes on.
    m.clear();
    bind_execute_sync(&mut m);
    assert_eq!(tags(&exchange(&mut s, &m).await), [b'Z']);
    m.clear();
    frontend::query("select 1", &mut m).unwrap();
    assert_eq!(tags(&exchange(&mut s, &m).await), [b'T', b'D', b'C', b'Z']);
}

/// A NoticeResponse a server sends while a connection logs in (here a WARNING about a database setting that no
/// longer applies) reaches the client, as it reaches a direct connection's client at its start: the first client to
/// use the new server connection gets it before its first reply (issue 16, point 10).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_the_server_sends_at_connection_start_reaches_the_client() {
    use tokio::io::AsyncWriteExt;
    let c = common::clusters();
    let db = format!("handled_notice_{}", std::process::id());
    common::direct(&c.data, "handled_data", &format!("create database {db} owner pgsplit")).await;
    common::direct(
        &c.data,
        "handled_data",
        &format!("alter database {db} set default_text_search_config = 'pg_catalog.nowhere'"),
    )
    .await;
    // Directly, the WARNING arrives at connection start.
    let dsn = format!("host=127.0.0.1 port={} user=pgsplit password={} dbname={db}", c.data.port(), c.server_password);
    let (_direct, mut conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await.unwrap();
    let first = std::future::poll_fn(|cx| conn.poll_message(cx)).await;
    assert!(matches!(first, Some(Ok(tokio_postgres::AsyncMessage::Notice(_)))), "{first:?}");
    let extra = format!(
        "  noticed:\n    url: postgresql://pgsplit:{}@127.0.0.1:{}/{db}\n    pool: {{ max: 2, checkout_timeout: 3s }}\n    schemas: []\n",
        c.server_password,
        c.data.port()
    );
    let yaml = common::config_yaml("verify-full", "").replace("users:\n", &format!("{extra}users:\n"));
    let proxy = Proxy::start(&yaml).await;
    let (mut s, _) = common::raw_login_with(proxy.port, &[("database", "noticed")]).await;
    let mut q = BytesMut::new();
    common::encode_query_bytes(b"select 1", &mut q);
    s.write_all(&q).await.unwrap();
    let (tags, status) = common::read_until_ready(&mut s).await;
    assert_eq!((tags.as_slice(), status), (&b"NTDCZ"[..], b'I'), "the login's WARNING first, then the reply");
    // Once: the next statement on the same connection has none.
    s.write_all(&q).await.unwrap();
    assert_eq!(common::read_until_ready(&mut s).await, (b"TDCZ".to_vec(), b'I'));
}
