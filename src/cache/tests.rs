use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::config::{CacheConfig, CachedTable};

fn routing() -> RoutingTable {
    RoutingTable { targets: vec!["primary".into(), "data".into()], schemas: HashMap::new(), default_target: 0 }
}

fn cache(max_bytes: usize, ttl: Duration) -> Arc<SessionCache> {
    let table = |schema: &str, name: &str, target: &str, key: Option<&str>| CachedTable {
        schema: schema.into(),
        name: name.into(),
        ttl,
        target: target.into(),
        key: key.map(str::to_owned),
    };
    let config = CacheConfig {
        max_bytes,
        max_entry_bytes: max_bytes / 4,
        listen: false,
        stats_period: Duration::from_secs(60),
        tables: vec![
            table("config", "sessions", "primary", Some("token")),
            table("config", "users", "primary", None),
            table("workspace", "x", "data", None),
        ],
    };
    Arc::new(SessionCache::new(&config, &routing()))
}

fn whole(t: TableId) -> Part {
    Part::whole(t)
}

fn key(t: TableId, value: &str) -> Part {
    Part { table: t, key: key_class(value.as_bytes()) }
}

fn read(c: &SessionCache, k: &str, reply: &str, parts: &[Part]) {
    let started = c.start_read(parts).expect("no write in flight");
    c.insert(k.as_bytes().to_vec(), reply.as_bytes().to_vec(), parts, &started);
}

fn has(c: &SessionCache, k: &str) -> bool {
    c.lookup(k.as_bytes()).is_some()
}

#[test]
fn a_kept_reply_is_served_until_its_ttl() {
    let c = cache(1 << 20, Duration::from_millis(50));
    assert_eq!(c.lookup(b"k"), None);
    read(&c, "k", "reply", &[whole(0)]);
    assert_eq!(c.lookup(b"k").as_deref(), Some(&b"reply"[..]));
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(c.lookup(b"k"), None, "past its TTL");
    let s = c.snapshot();
    assert_eq!((s.hits, s.misses, s.expired, s.entries, s.bytes), (1, 2, 1, 0, 0));
}

#[test]
fn a_write_evicts_its_tables_and_no_read_overlapping_it_is_kept() {
    let c = cache(1 << 20, Duration::from_secs(60));
    read(&c, "sessions", "a", &[whole(0)]);
    read(&c, "users", "b", &[whole(1)]);
    // A read that started before the write and lands after it.
    let before = c.start_read(&[whole(0)]).unwrap();
    let hold = c.write_begin(vec![whole(0)]);
    assert!(!has(&c, "sessions"), "evicted before the write is sent");
    assert!(has(&c, "users"), "another table's entries stay");
    assert!(c.start_read(&[whole(0)]).is_none(), "no read of it is kept while the write is in flight");
    c.insert(b"sessions".to_vec(), b"old".to_vec(), &[whole(0)], &before);
    assert!(!has(&c, "sessions"));
    // A read that started while the write was in flight cannot be kept after it ended either.
    let during = Started(vec![c.lock().tables[0].stamp(None)]);
    drop(hold);
    c.insert(b"sessions".to_vec(), b"stale".to_vec(), &[whole(0)], &during);
    assert!(!has(&c, "sessions"));
    // After the write: kept again.
    read(&c, "sessions", "new", &[whole(0)]);
    assert_eq!(c.lookup(b"sessions").as_deref(), Some(&b"new"[..]));
    assert!(c.snapshot().not_kept >= 2);
}

#[test]
fn a_write_to_one_key_leaves_the_other_keys_and_takes_the_whole_table_reads() {
    let c = cache(1 << 20, Duration::from_secs(60));
    read(&c, "a", "1", &[key(0, "tok-a")]);
    read(&c, "b", "2", &[key(0, "tok-b")]);
    read(&c, "count", "3", &[whole(0)]);
    let before_a = c.start_read(&[key(0, "tok-a")]).unwrap();
    let before_b = c.start_read(&[key(0, "TOK_B")]).unwrap();
    let before_all = c.start_read(&[whole(0)]).unwrap();
    let hold = c.write_begin(vec![key(0, "tok-a")]);
    assert!(!has(&c, "a") && !has(&c, "count"), "its key's and the whole table's entries go");
    assert!(has(&c, "b"), "another key's stay");
    assert!(c.start_read(&[key(0, "tok-a")]).is_none() && c.start_read(&[whole(0)]).is_none());
    assert!(c.start_read(&[key(0, "tok-b")]).is_some(), "reads of other keys are kept meanwhile");
    drop(hold);
    c.insert(b"a".to_vec(), b"old".to_vec(), &[key(0, "tok-a")], &before_a);
    c.insert(b"count".to_vec(), b"old".to_vec(), &[whole(0)], &before_all);
    c.insert(b"b2".to_vec(), b"2".to_vec(), &[key(0, "tok-b")], &before_b);
    assert!(!has(&c, "a") && !has(&c, "count"), "reads that overlapped the write are not kept");
    assert!(has(&c, "b2"), "a read of another key that overlapped it is");
    // A write to the whole table takes every key.
    drop(c.write_begin(vec![whole(0)]));
    assert!(!has(&c, "b") && !has(&c, "b2"));
    assert_eq!(c.snapshot().bytes, 0);
}

#[test]
fn values_postgresql_may_find_equal_share_a_class() {
    for (a, b) in [
        ("17", "017"),
        ("17", " 17 "),
        ("17", "+17"),
        ("1_000", "1000"),
        ("-0", "0"),
        ("Tok-A", "tok_a"),
        ("ab", "AB  "),
        ("1-7", "17"),
        ("0a1b2c3d-0000-4000-8000-000000000001", "0A1B2C3D000040008000000000000001"),
    ] {
        assert_eq!(key_class(a.as_bytes()), key_class(b.as_bytes()), "{a} ~ {b}");
        assert!(key_class(a.as_bytes()).is_some());
    }
    assert_ne!(key_class(b"tok-1"), key_class(b"tok-2"));
    assert_ne!(key_class(b"17"), key_class(b"18"));
    for whole_table in ["é", "0x11", "0o17", "0b1", "-0x11"] {
        assert_eq!(key_class(whole_table.as_bytes()), None, "{whole_table}");
    }
}

#[test]
fn memory_never_exceeds_the_budget() {
    let max = 64 * 1024;
    let c = cache(max, Duration::from_secs(60));
    let reply = "x".repeat(1000);
    for i in 0..10_000 {
        read(&c, &format!("key-{i}"), &reply, &[key(0, &format!("tok-{i}"))]);
        assert!(c.snapshot().bytes <= max as u64);
    }
    let s = c.snapshot();
    assert!(s.entries > 10 && s.evictions > 9_000, "{s:?}");
    // The most recently used survive, the oldest went first.
    assert!(has(&c, "key-9999"));
    assert!(!has(&c, "key-0"));
    // A reply above max_entry_bytes is not kept.
    read(&c, "big", &"y".repeat(max / 4 + 1), &[whole(0)]);
    assert!(!has(&c, "big"));
    // Evictions by key and by table account for every byte.
    drop(c.write_begin(vec![key(0, "tok-9999")]));
    assert!(!has(&c, "key-9999") && has(&c, "key-9998"));
    c.clear();
    assert_eq!((c.snapshot().entries, c.snapshot().bytes), (0, 0));
}

#[test]
fn a_notification_evicts_its_key_its_table_or_every_table_of_its_target() {
    let c = cache(1 << 20, Duration::from_secs(60));
    read(&c, "s1", "1", &[key(0, "tok-1")]);
    read(&c, "s2", "1", &[key(0, "tok-2")]);
    read(&c, "u", "2", &[whole(1)]);
    read(&c, "x", "3", &[whole(2)]);
    c.notified(0, "config.sessions tok-1");
    assert!(!has(&c, "s1") && has(&c, "s2") && has(&c, "u"));
    c.notified(0, "config.sessions");
    assert!(!has(&c, "s2") && has(&c, "u"));
    c.notified(0, "something else");
    assert!(!has(&c, "u") && has(&c, "x"), "the other target's stay");
    assert_eq!(c.snapshot().notifications, 3);
}

#[test]
fn an_entry_of_two_tables_goes_with_either() {
    let c = cache(1 << 20, Duration::from_secs(60));
    read(&c, "join", "j", &[whole(0), whole(1)]);
    drop(c.write_begin(vec![whole(1)]));
    assert!(!has(&c, "join"));
    assert_eq!(c.snapshot().bytes, 0);
}
