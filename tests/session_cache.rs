//! The session cache (issue 18, SPEC §11) against the real clusters: reads of cached tables answered from memory
//! (simple and extended protocol, byte for byte), writes through pgsplit evicting before they are acknowledged
//! (also under concurrent sessions), reads that must never be cached, session settings in the key, the byte budget,
//! the mode switch, and two pgsplit instances kept coherent by the trigger's NOTIFY.
//!
//! Each test works on a table of its own in PRIMARY's `config` schema, made by the test.

mod common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use tokio::io::AsyncWriteExt;

use common::{clusters, config_yaml, direct, parse_bind_execute, raw_login, read_until_ready, scalar, Proxy};

/// The trigger function the README shows: at commit, `pgsplit_cache` is notified with `schema.table` for a
/// statement-level trigger (or one without a key column), `schema.table value` for each row's key value.
const TRIGGER: &str = include_str!("../docs/session-cache-notify.sql");

/// A proxy caching `tables` (each `config.NAME`, TTL 10 min: far longer than any test waits; `NAME/COLUMN` with
/// a key column) with `extra` under `cache:`.
async fn proxy(tables: &[&str], extra: &str) -> Proxy {
    let list: Vec<String> = tables
        .iter()
        .map(|t| match t.split_once('/') {
            Some((t, key)) => format!("{{ name: config.{t}, ttl: 10m, key: {key} }}"),
            None => format!("{{ name: config.{t}, ttl: 10m }}"),
        })
        .collect();
    let yaml = config_yaml("verify-full", &format!("cache: {{ {extra} tables: [{}] }}\n", list.join(", ")));
    Proxy::start(&yaml).await
}

/// Makes `config.NAME (k text primary key, v int, t timestamptz)` directly on PRIMARY with rows `k1..kN`, v = 1.
async fn table(name: &str, rows: usize) {
    let p = &clusters().primary;
    direct(
        p,
        "handled_primary",
        &format!(
            "drop table if exists config.{name};
             create table config.{name} (k text primary key, v int not null, t timestamptz not null default '2026-01-02 03:04:05+00');
             insert into config.{name} (k, v) select 'k' || g, 1 from generate_series(1, {rows}) g;
             alter table config.{name} owner to pgsplit;"
        ),
    )
    .await;
}

/// Every byte of the server's reply up to and including ReadyForQuery.
async fn reply_bytes(s: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    loop {
        let (tag, body) = common::read_message(s).await;
        all.push(tag);
        all.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        all.extend_from_slice(&body);
        if tag == b'Z' {
            return all;
        }
    }
}

fn snapshot(p: &Proxy) -> pgsplit::cache::Snapshot {
    p.app.session_cache().expect("the cache is configured").snapshot()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_is_answered_from_memory_until_a_write_through_pgsplit_evicts_it() {
    table("cache_basic", 3).await;
    let p = proxy(&["cache_basic"], "listen: false,").await;
    let c = p.connect().await;
    let read = "select v from config.cache_basic where k = 'k1'";
    assert_eq!(scalar(&c, read).await, "1");
    assert_eq!(scalar(&c, read).await, "1");
    let s = snapshot(&p);
    assert_eq!((s.misses, s.hits, s.entries), (1, 1, 1), "{s:?}");
    // Changed behind pgsplit's back (no trigger, listen off): the entry is still served, proving it comes from memory.
    direct(&clusters().primary, "handled_primary", "update config.cache_basic set v = 2 where k = 'k1'").await;
    assert_eq!(scalar(&c, read).await, "1", "served from the cache within the TTL");
    // A write through pgsplit, from another session: the next read is the server's.
    let w = p.connect().await;
    w.simple_query("update config.cache_basic set v = 3 where k = 'k2'").await.unwrap();
    assert_eq!(scalar(&c, read).await, "2");
    // Kept from the first read that starts once the writer's session has let go of the table (right after it
    // answered; a read that starts before is served, not kept).
    until_kept(&p, &c, read, 1).await;
    // Inside a transaction, the write evicts at once; the value read after COMMIT is the committed one.
    w.batch_execute("begin; update config.cache_basic set v = 4 where k = 'k1'").await.unwrap();
    assert_eq!(scalar(&c, read).await, "2", "not committed yet");
    assert_eq!(scalar(&c, read).await, "2");
    w.batch_execute("commit").await.unwrap();
    assert_eq!(scalar(&c, read).await, "4", "nothing read during the transaction was kept");
    // DDL on the target drops every cached table's entries.
    assert_eq!(scalar(&c, read).await, "4");
    let before = snapshot(&p).hits;
    w.batch_execute("create index if not exists cache_basic_v on config.cache_basic (v)").await.unwrap();
    assert_eq!(scalar(&c, read).await, "4");
    assert_eq!(snapshot(&p).hits, before, "a miss after DDL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_extended_protocol_is_cached_per_statement_parameters_and_formats_and_replies_are_byte_for_byte() {
    table("cache_ext", 5).await;
    let p = proxy(&["cache_ext"], "listen: false,").await;
    let c = p.connect().await;
    // tokio-postgres: a named statement, Bind/Execute per query, binary results.
    let stmt = c.prepare("select v, k from config.cache_ext where k = $1").await.unwrap();
    for round in 0..3 {
        for k in ["k1", "k2"] {
            let row = c.query_one(&stmt, &[&k]).await.unwrap();
            assert_eq!((row.get::<_, i32>(0), row.get::<_, String>(1)), (1, k.to_owned()), "round {round}");
        }
    }
    let s = snapshot(&p);
    assert_eq!((s.misses, s.hits), (2, 4), "one entry per parameter value: {s:?}");
    // The same text as a simple Query is another entry (text results).
    assert_eq!(scalar(&c, "select v, k from config.cache_ext where k = 'k1'").await, "1");

    // Raw protocol: the unnamed statement, as most drivers send it; the hit is the miss's reply, byte for byte.
    let mut s = raw_login(p.port).await;
    let mut out = BytesMut::new();
    let mut replies = Vec::new();
    for _ in 0..2 {
        parse_bind_execute("", "select k, v, t from config.cache_ext where v = 1 order by k", &mut out);
        frontend::sync(&mut out);
        s.write_all(&out).await.unwrap();
        out.clear();
        replies.push(reply_bytes(&mut s).await);
    }
    assert_eq!(replies[0].last(), Some(&b'I'));
    assert_eq!(replies[0], replies[1], "the same bytes");
    let simple = b"select k, v, t from config.cache_ext where v = 1 order by k";
    let mut first = None;
    for _ in 0..2 {
        common::encode_query_bytes(simple, &mut out);
        s.write_all(&out).await.unwrap();
        out.clear();
        let reply = reply_bytes(&mut s).await;
        assert_eq!(*first.get_or_insert_with(|| reply.clone()), reply);
    }
    // After a hit, the unnamed statement is the one the hit parsed: a Bind of it alone runs it.
    let mut out = BytesMut::new();
    common::bind_execute("", &mut out);
    frontend::sync(&mut out);
    s.write_all(&out).await.unwrap();
    let (bytes, status) = read_until_ready(&mut s).await;
    assert_eq!(status, b'I');
    assert_eq!(bytes, b"2DDDDDCZ", "the statement ran: BindComplete, five rows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_whose_reply_is_not_the_tables_alone_are_never_cached() {
    table("cache_never", 2).await;
    table("cache_never_other", 1).await;
    let p = proxy(&["cache_never"], "listen: false,").await;
    let c = p.connect().await;
    for sql in [
        "select v, now() from config.cache_never where k = 'k1'",
        "select v, random() from config.cache_never where k = 'k1'",
        "select v, current_user from config.cache_never where k = 'k1'",
        "select v from config.cache_never where k = 'k1' for update",
        "select v from config.cache_never where t < 'now'::timestamptz and k = 'k1'",
        "select n.v from config.cache_never n join config.cache_never_other o using (k)",
        "select v from config.cache_never where k = 'k1'; select 1",
    ] {
        for _ in 0..2 {
            c.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        let s = snapshot(&p);
        assert_eq!((s.hits, s.misses, s.entries), (0, 0, 0), "{sql}: {s:?}");
    }
    // Inside a transaction, a cacheable read goes to the server, and is not kept.
    c.batch_execute("begin").await.unwrap();
    for _ in 0..2 {
        scalar(&c, "select v from config.cache_never where k = 'k2'").await;
    }
    c.batch_execute("commit").await.unwrap();
    let s = snapshot(&p);
    assert_eq!((s.hits, s.entries), (0, 0), "{s:?}");
    // Outside: cached.
    for _ in 0..2 {
        scalar(&c, "select v from config.cache_never where k = 'k2'").await;
    }
    assert_eq!(snapshot(&p).hits, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_session_gets_the_reply_for_its_own_settings() {
    table("cache_settings", 1).await;
    let p = proxy(&["cache_settings"], "listen: false,").await;
    let read = "select t from config.cache_settings where k = 'k1'";
    let utc = p.connect().await;
    utc.batch_execute("set timezone = 'UTC'").await.unwrap();
    let tokyo = p.connect().await;
    tokyo.batch_execute("set timezone = 'Asia/Tokyo'").await.unwrap();
    let iso_dmy = p.connect().await;
    iso_dmy.batch_execute("set timezone = 'UTC'; set datestyle = 'SQL, DMY'").await.unwrap();
    for _ in 0..2 {
        assert_eq!(scalar(&utc, read).await, "2026-01-02 03:04:05+00");
        assert_eq!(scalar(&tokyo, read).await, "2026-01-02 12:04:05+09");
        assert_eq!(scalar(&iso_dmy, read).await, "02/01/2026 03:04:05 UTC");
    }
    let s = snapshot(&p);
    assert_eq!((s.misses, s.hits, s.entries), (3, 3, 3), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_within_the_budget_under_far_more_than_it_holds() {
    table("cache_budget", 2000).await;
    let p = proxy(&["cache_budget"], "listen: false, max_bytes: 64KiB,").await;
    let c = p.connect().await;
    let filler = "x".repeat(500);
    for i in 1..=2000 {
        let sql = format!("select k, v, '{filler}' as pad from config.cache_budget where k = 'k{i}'");
        c.simple_query(&sql).await.unwrap();
        let s = snapshot(&p);
        assert!(s.bytes <= 64 * 1024, "{s:?}");
    }
    // The last reply is kept right after the client has it: its insert may land a moment later.
    let started = Instant::now();
    while snapshot(&p).inserts < 2000 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let s = snapshot(&p);
    assert!(s.inserts == 2000 && s.evictions > 1800 && s.entries > 10 && s.bytes <= 64 * 1024, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_session_reads_a_value_older_than_a_write_already_acknowledged() {
    table("cache_race", 1).await;
    let p = Arc::new(proxy(&["cache_race"], "listen: false,").await);
    let acked = Arc::new(AtomicI64::new(1));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..4 {
        let (p, acked, stop) = (p.clone(), acked.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            let c = p.connect().await;
            let stmt = c.prepare("select v from config.cache_race where k = $1").await.unwrap();
            let mut reads = 0;
            while !stop.load(Ordering::SeqCst) {
                let floor = acked.load(Ordering::SeqCst);
                let v: i32 = if reads % 2 == 0 {
                    c.query_one(&stmt, &[&"k1"]).await.unwrap().get(0)
                } else {
                    scalar(&c, "select v from config.cache_race where k = 'k1'").await.parse().unwrap()
                };
                assert!(i64::from(v) >= floor, "read {v} after the write of {floor} was acknowledged");
                reads += 1;
            }
            reads
        }));
    }
    let w = p.connect().await;
    for v in 2..=150 {
        if v % 3 == 0 {
            w.batch_execute(&format!("begin; update config.cache_race set v = {v} where k = 'k1'; commit")).await.unwrap();
        } else {
            w.batch_execute(&format!("update config.cache_race set v = {v} where k = 'k1'")).await.unwrap();
        }
        acked.store(v, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    for r in readers {
        total += r.await.expect("a reader saw a stale value");
    }
    let s = snapshot(&p);
    assert!(total > 300 && s.hits > 0, "the readers read ({total}) and some reads were hits: {s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_stay_coherent_through_the_triggers_notify() {
    table("cache_shared", 2).await;
    let p = &clusters().primary;
    direct(p, "handled_primary", TRIGGER).await;
    direct(
        p,
        "handled_primary",
        "create trigger pgsplit_cache after insert or update or delete on config.cache_shared
           for each row execute function public.pgsplit_cache_notify('k');
         create trigger pgsplit_cache_truncate after truncate on config.cache_shared
           for each statement execute function public.pgsplit_cache_notify();",
    )
    .await;
    let a = proxy(&["cache_shared/k"], "").await;
    let b = proxy(&["cache_shared/k"], "").await;
    until_listening(&a).await;
    until_listening(&b).await;
    let ca = a.connect().await;
    let cb = b.connect().await;
    let read = "select v from config.cache_shared where k = 'k1'";
    assert_eq!(scalar(&ca, read).await, "1");
    assert_eq!(scalar(&ca, read).await, "1");
    assert_eq!(snapshot(&a).hits, 1);
    // A write through instance B: instance A evicts on the notification, long before the 10-minute TTL.
    cb.simple_query("update config.cache_shared set v = 2 where k = 'k1'").await.unwrap();
    until_read(&ca, read, "2").await;
    // A write made outside pgsplit altogether, likewise; the notification names the row's key, and the entries of
    // the other keys stay.
    let other = "select v from config.cache_shared where k = 'k2'";
    until_kept(&a, &ca, other, 2).await;
    direct(p, "handled_primary", "update config.cache_shared set v = 3 where k = 'k1'").await;
    until_read(&ca, read, "3").await;
    until_read(&cb, read, "3").await;
    assert!(snapshot(&a).notifications >= 2);
    let hits = snapshot(&a).hits;
    scalar(&ca, other).await;
    assert_eq!(snapshot(&a).hits, hits + 1, "k2's entry outlived the writes to k1");
    // The value is cached again once read.
    let hits = snapshot(&a).hits;
    assert_eq!(scalar(&ca, read).await, "3");
    assert_eq!(scalar(&ca, read).await, "3");
    assert!(snapshot(&a).hits > hits);
    // TRUNCATE: the statement trigger names the table alone; every entry goes.
    direct(p, "handled_primary", "truncate config.cache_shared").await;
    let count = "select count(*) from config.cache_shared";
    until_read(&ca, count, "0").await;
    let started = Instant::now();
    while !ca.simple_query(other).await.unwrap().iter().all(|m| !matches!(m, tokio_postgres::SimpleQueryMessage::Row(_))) {
        assert!(started.elapsed() < Duration::from_secs(10), "k2's entry outlived the TRUNCATE");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the proxy listens on PRIMARY (its first LISTEN flushes the cache).
async fn until_listening(p: &Proxy) {
    let cache = p.app.session_cache().expect("the cache is configured").clone();
    let started = Instant::now();
    while !cache.is_listening(0) {
        assert!(started.elapsed() < Duration::from_secs(30), "the listener is up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads `sql` until the cache holds `entries` entries, for at most 10 s.
async fn until_kept(p: &Proxy, c: &tokio_postgres::Client, sql: &str, entries: u64) {
    let started = Instant::now();
    while snapshot(p).entries != entries {
        assert!(started.elapsed() < Duration::from_secs(10), "{sql} never kept: {:?}", snapshot(p));
        scalar(c, sql).await;
    }
}

/// Reads until `sql` gives `want`, for at most 10 s (the TTL is 10 min: only a notification can make it so soon).
async fn until_read(c: &tokio_postgres::Client, sql: &str, want: &str) {
    let started = Instant::now();
    loop {
        if scalar(c, sql).await == want {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{sql} never gave {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listen_connection_counts_against_the_pool_and_switching_mode_empties_the_cache() {
    table("cache_mode", 1).await;
    let p = proxy(&["cache_mode"], "").await;
    // PRIMARY's pool is 5 in the test configuration: 4 for clients, 1 for the LISTEN connection.
    assert_eq!(p.app.backend(0).max(), 4);
    until_listening(&p).await;
    let c = p.connect().await;
    let read = "select v from config.cache_mode where k = 'k1'";
    until_kept(&p, &c, read, 1).await;
    p.app.set_mode(pgsplit::config::Mode::Single);
    assert_eq!(snapshot(&p).entries, 0);
    // Single mode: not cached (writes there go where the split's tables may not be).
    scalar(&c, read).await;
    scalar(&c, read).await;
    assert_eq!(snapshot(&p).entries, 0);
    p.app.set_mode(pgsplit::config::Mode::Split);
    until_kept(&p, &c, read, 1).await;
}

/// Parse (unnamed), Bind with text-format parameters, Execute, Sync; the reply's messages.
async fn extended_text(s: &mut tokio::net::TcpStream, sql: &str, params: &[&str]) -> Vec<u8> {
    let mut out = BytesMut::new();
    frontend::parse("", sql, std::iter::empty(), &mut out).unwrap();
    frontend::bind(
        "",
        "",
        [0i16],
        params.iter(),
        |p: &&str, buf: &mut BytesMut| {
            buf.extend_from_slice(p.as_bytes());
            Ok(postgres_protocol::IsNull::No)
        },
        [0i16],
        &mut out,
    )
    .map_err(|_| "bind")
    .unwrap();
    frontend::execute("", 0, &mut out).unwrap();
    frontend::sync(&mut out);
    s.write_all(&out).await.unwrap();
    reply_bytes(s).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_key_column_a_write_to_one_key_leaves_the_entries_of_the_others() {
    table("cache_keyed", 3).await;
    let p = proxy(&["cache_keyed/k"], "listen: false,").await;
    let c = p.connect().await;
    let v = |k: &'static str| {
        let c = &c;
        async move { scalar(c, &format!("select v from config.cache_keyed where k = '{k}'")).await }
    };
    for k in ["k1", "k2", "k3", "k1", "k2", "k3"] {
        assert_eq!(v(k).await, "1");
    }
    let count = "select count(*) from config.cache_keyed";
    scalar(&c, count).await;
    scalar(&c, count).await;
    // The same key read with a text parameter: its own entry, confined to that key too.
    let mut raw = raw_login(p.port).await;
    let by_param = "select v from config.cache_keyed where k = $1";
    let k2_reply = extended_text(&mut raw, by_param, &["k2"]).await;
    assert_eq!(extended_text(&mut raw, by_param, &["k2"]).await, k2_reply);
    let s = snapshot(&p);
    assert_eq!((s.misses, s.hits, s.entries), (5, 5, 5), "{s:?}");

    // A write to k1 with a text parameter, from another session: k2 and k3 stay.
    let mut w = raw_login(p.port).await;
    extended_text(&mut w, "update config.cache_keyed set v = 5 where k = $1", &["k1"]).await;
    let hits = snapshot(&p).hits;
    assert_eq!((v("k2").await, v("k3").await), ("1".into(), "1".into()));
    assert_eq!(extended_text(&mut raw, by_param, &["k2"]).await, k2_reply);
    assert_eq!(snapshot(&p).hits, hits + 3, "k2 and k3 stayed");
    assert_eq!(snapshot(&p).entries, 3, "k1's entry went, and so did the read of the whole table (count)");
    assert_eq!(v("k1").await, "5");
    assert_eq!(snapshot(&p).hits, hits + 3, "k1 was read from the server");
    // A literal in a transaction: the same, for the literal's and the parameter's entries of k2.
    let tx = p.connect().await;
    tx.batch_execute("begin; update config.cache_keyed set v = 6 where k = 'k2'; commit").await.unwrap();
    assert_eq!((v("k2").await, v("k3").await), ("6".into(), "1".into()));
    assert_ne!(extended_text(&mut raw, by_param, &["k2"]).await, k2_reply, "the parameter's entry of k2 went too");
    // A binary parameter (tokio-postgres sends them so) is not read: the write takes the whole table.
    scalar(&c, count).await;
    tx.execute("update config.cache_keyed set v = 7 where k = $1", &[&"k1"]).await.unwrap();
    assert_eq!(snapshot(&p).entries, 0, "{:?}", snapshot(&p));
    // A write that moves a row to another key takes the whole table.
    assert_eq!(v("k3").await, "1");
    tx.batch_execute("update config.cache_keyed set k = 'k4' where k = 'k3'").await.unwrap();
    assert_eq!(snapshot(&p).entries, 0);
    assert_eq!(v("k4").await, "1");
    // An INSERT of a key evicts that key's (empty) reply.
    let none = "select v from config.cache_keyed where k = 'k9'";
    for _ in 0..2 {
        assert!(c.simple_query(none).await.unwrap().iter().all(|m| !matches!(m, tokio_postgres::SimpleQueryMessage::Row(_))));
    }
    tx.batch_execute("insert into config.cache_keyed (k, v) values ('k9', 9)").await.unwrap();
    assert_eq!(scalar(&c, none).await, "9");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_write_through_pgsplit_evicts_and_a_flushed_one_before_it_is_sent() {
    use futures_util::SinkExt;
    table("cache_writes", 2).await;
    let p = proxy(&["cache_writes"], "listen: false,").await;
    let c = p.connect().await;
    let w = p.connect().await;
    let count = "select count(*) from config.cache_writes";
    let cached = |want: &'static str| {
        let (c, p) = (&c, &p);
        async move {
            until_kept(p, c, count, 1).await;
            let hits = snapshot(p).hits;
            assert_eq!(scalar(c, count).await, want);
            assert_eq!(snapshot(p).hits, hits + 1, "served from the cache");
        }
    };
    cached("2").await;
    // COPY FROM STDIN.
    let sink = w.copy_in("copy config.cache_writes (k, v) from stdin").await.unwrap();
    let mut sink = std::pin::pin!(sink);
    sink.send(bytes::Bytes::from_static(b"k3\t1\nk4\t1\n")).await.unwrap();
    sink.finish().await.unwrap();
    assert_eq!(scalar(&c, count).await, "4");
    cached("4").await;
    // MERGE.
    w.batch_execute("merge into config.cache_writes t using (select 'k5' as k) s on t.k = s.k when not matched then insert (k, v) values (s.k, 1)")
        .await
        .unwrap();
    assert_eq!(scalar(&c, count).await, "5");
    cached("5").await;
    // DELETE, in a transaction that also reads.
    w.batch_execute("begin; select 1; delete from config.cache_writes where k = 'k5'; commit").await.unwrap();
    assert_eq!(scalar(&c, count).await, "4");
    cached("4").await;
    // TRUNCATE.
    w.batch_execute("truncate config.cache_writes").await.unwrap();
    assert_eq!(scalar(&c, count).await, "0");
    cached("0").await;

    // A write flushed ahead of its Sync (extended protocol): its table's entries are gone before the server has it,
    // and another session's reads meanwhile are the server's (the write not yet committed) and are not kept.
    let mut raw = raw_login(p.port).await;
    let mut out = BytesMut::new();
    frontend::parse("", "insert into config.cache_writes (k, v) values ('k6', 1)", std::iter::empty(), &mut out).unwrap();
    common::bind_execute("", &mut out);
    frontend::flush(&mut out);
    raw.write_all(&out).await.unwrap();
    out.clear();
    assert_eq!(common::read_messages(&mut raw, 3).await, b"12C", "ParseComplete, BindComplete, CommandComplete");
    let hits = snapshot(&p).hits;
    assert_eq!(scalar(&c, count).await, "0", "not committed before Sync");
    assert_eq!(scalar(&c, count).await, "0");
    assert_eq!(snapshot(&p).hits, hits, "read from the server while the write is in flight");
    frontend::sync(&mut out);
    raw.write_all(&out).await.unwrap();
    assert_eq!(common::read_messages(&mut raw, 1).await, b"Z");
    assert_eq!(scalar(&c, count).await, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_the_cache_cannot_confine_evict_every_cached_table_of_the_target() {
    table("cache_wide", 2).await;
    let p = &clusters().primary;
    direct(
        p,
        "handled_primary",
        "create or replace function config.cache_wide_bump(key text) returns int language sql as
           $$ update config.cache_wide set v = v + 10 where k = key returning v $$;
         drop table if exists config.cache_child; drop table if exists config.cache_parent;
         create table config.cache_parent (id int primary key);
         insert into config.cache_parent values (1);
         create table config.cache_child (k text primary key, parent int references config.cache_parent on delete cascade);
         insert into config.cache_child values ('c1', 1);
         alter table config.cache_parent owner to pgsplit; alter table config.cache_child owner to pgsplit;
         alter function config.cache_wide_bump(text) owner to pgsplit;",
    )
    .await;
    let proxy = proxy(&["cache_wide/k", "cache_child/k"], "listen: false,").await;
    let c = proxy.connect().await;
    let w = proxy.connect().await;
    let k1 = "select v from config.cache_wide where k = 'k1'";
    let k2 = "select v from config.cache_wide where k = 'k2'";
    let child = "select count(*) from config.cache_child where k = 'c1'";
    let read_twice = |sql: &'static str| {
        let c = &c;
        async move {
            let first = scalar(c, sql).await;
            assert_eq!(scalar(c, sql).await, first);
            first
        }
    };
    assert_eq!((read_twice(k1).await, read_twice(k2).await, read_twice(child).await), ("1".into(), "1".into(), "1".into()));
    // A function that writes: it names no cached table, yet its write must be seen at once.
    scalar(&w, "select config.cache_wide_bump('k2')").await;
    assert_eq!(scalar(&c, k2).await, "11");
    // A delete on another table that cascades into a cached one.
    read_twice(child).await;
    w.batch_execute("delete from config.cache_parent where id = 1").await.unwrap();
    assert_eq!(scalar(&c, child).await, "0");
    // An unqualified write under a search_path set in its own transaction.
    read_twice(k1).await;
    w.batch_execute("begin; set local search_path = config; update cache_wide set v = 5 where k = 'k1'; commit").await.unwrap();
    assert_eq!(scalar(&c, k1).await, "5");
    // SQL-level PREPARE/EXECUTE of a write.
    read_twice(k1).await;
    w.batch_execute("prepare bump as update config.cache_wide set v = 6 where k = 'k1'; execute bump").await.unwrap();
    assert_eq!(scalar(&c, k1).await, "6");
    // A read of one key that looks at other rows of the table is filed under the whole table.
    w.batch_execute("update config.cache_wide set v = 50 where k = 'k1'").await.unwrap();
    let lonely =
        "select k from config.cache_wide s where k = 'k1' and not exists (select 1 from config.cache_wide n where n.v > s.v)";
    assert_eq!(read_twice(lonely).await, "k1", "k1 (50) is above k2 (11)");
    w.batch_execute("update config.cache_wide set v = 100 where k = 'k2'").await.unwrap();
    let rows = c.simple_query(lonely).await.unwrap();
    assert!(!rows.iter().any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_))), "k2 (100) is above k1 now");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_prepared_before_ddl_gets_postgresqls_0a000_not_another_clients_cached_reply() {
    table("cache_shape", 1).await;
    let p = proxy(&["cache_shape"], "listen: false,").await;
    let b = p.connect().await;
    let sql = "select * from config.cache_shape where k = $1";
    let old = b.prepare(sql).await.unwrap();
    assert_eq!(b.query_one(&old, &[&"k1"]).await.unwrap().len(), 3);
    let admin = p.connect().await;
    admin.batch_execute("alter table config.cache_shape add column extra int default 7").await.unwrap();
    // Another client parses the same text now and fills the cache with the new shape.
    let a = p.connect().await;
    let new = a.prepare(sql).await.unwrap();
    for _ in 0..2 {
        assert_eq!(a.query_one(&new, &[&"k1"]).await.unwrap().len(), 4);
    }
    assert!(snapshot(&p).hits >= 1);
    let e = b.query_one(&old, &[&"k1"]).await.expect_err("the old statement's shape changed");
    assert_eq!(common::sqlstate(&e), "0A000");
}
