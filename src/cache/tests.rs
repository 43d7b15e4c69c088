use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::config::{CacheConfig, CachedTable};

fn routing() -> RoutingTable {
    RoutingTable { targets: vec!["primary".into(), "data".into()], schemas: HashMap::new(), default_target: 0 }
}

fn cache(max_bytes: usize, ttl: Duration) -> Arc<SessionCache> {
    let table = |schema: &str, name: &str, target: &str| CachedTable {
        schema: schema.into(),
        name: name.into(),
        ttl,
        target: target.into(),
    };
    let config = CacheConfig {
        max_bytes,
        max_entry_bytes: max_bytes / 4,
        listen: false,
        stats_period: Duration::from_secs(60),
        tables: vec![
            table("config", "sessions", "primary"),
            table("config", "users", "primary"),
            table("workspace", "x", "data"),
        ],
    };
    Arc::new(SessionCache::new(&config, &routing()))
}

fn read(c: &SessionCache, key: &str, reply: &str, tables: &[TableId]) {
    let started = c.start_read(tables).expect("no write in flight");
    c.insert(key.as_bytes().to_vec(), reply.as_bytes().to_vec(), tables, &started);
}

#[test]
fn a_kept_reply_is_served_until_its_ttl() {
    let c = cache(1 << 20, Duration::from_millis(50));
    assert_eq!(c.lookup(b"k"), None);
    read(&c, "k", "reply", &[0]);
    assert_eq!(c.lookup(b"k").as_deref(), Some(&b"reply"[..]));
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(c.lookup(b"k"), None, "past its TTL");
    let s = c.snapshot();
    assert_eq!((s.hits, s.misses, s.expired, s.entries, s.bytes), (1, 2, 1, 0, 0));
}

#[test]
fn a_write_evicts_its_tables_and_no_read_overlapping_it_is_kept() {
    let c = cache(1 << 20, Duration::from_secs(60));
    read(&c, "sessions", "a", &[0]);
    read(&c, "users", "b", &[1]);
    // A read that started before the write and lands after it.
    let before = c.start_read(&[0]).unwrap();
    let hold = c.write_begin(vec![0]);
    assert_eq!(c.lookup(b"sessions"), None, "evicted before the write is sent");
    assert_eq!(c.lookup(b"users").as_deref(), Some(&b"b"[..]), "another table's entries stay");
    assert!(c.start_read(&[0]).is_none(), "no read of it is kept while the write is in flight");
    c.insert(b"sessions".to_vec(), b"old".to_vec(), &[0], &before);
    assert_eq!(c.lookup(b"sessions"), None);
    // A read that started while the write was in flight cannot be kept after it ended either.
    let during = Started(vec![c.lock().generations[0]]);
    drop(hold);
    c.insert(b"sessions".to_vec(), b"stale".to_vec(), &[0], &during);
    assert_eq!(c.lookup(b"sessions"), None);
    // After the write: kept again.
    read(&c, "sessions", "new", &[0]);
    assert_eq!(c.lookup(b"sessions").as_deref(), Some(&b"new"[..]));
    assert!(c.snapshot().not_kept >= 2);
}

#[test]
fn memory_never_exceeds_the_budget() {
    let max = 64 * 1024;
    let c = cache(max, Duration::from_secs(60));
    let reply = "x".repeat(1000);
    for i in 0..10_000 {
        read(&c, &format!("key-{i}"), &reply, &[(i % 3) as TableId]);
        assert!(c.snapshot().bytes <= max as u64);
    }
    let s = c.snapshot();
    assert!(s.entries > 10 && s.evictions > 9_000, "{s:?}");
    // The most recently used survive, the oldest went first.
    assert!(c.lookup(b"key-9999").is_some());
    assert!(c.lookup(b"key-0").is_none());
    // A reply above max_entry_bytes is not kept.
    read(&c, "big", &"y".repeat(max / 4 + 1), &[0]);
    assert!(c.lookup(b"big").is_none());
    // Table evictions account for every byte.
    c.clear();
    assert_eq!((c.snapshot().entries, c.snapshot().bytes), (0, 0));
}

#[test]
fn a_notification_evicts_its_table_or_every_table_of_its_target() {
    let c = cache(1 << 20, Duration::from_secs(60));
    read(&c, "s", "1", &[0]);
    read(&c, "u", "2", &[1]);
    read(&c, "x", "3", &[2]);
    c.notified(0, "config.sessions");
    assert!(c.lookup(b"s").is_none() && c.lookup(b"u").is_some());
    c.notified(0, "something else");
    assert!(c.lookup(b"u").is_none() && c.lookup(b"x").is_some(), "the other target's stay");
    assert_eq!(c.snapshot().notifications, 2);
}

#[test]
fn an_entry_of_two_tables_goes_with_either() {
    let c = cache(1 << 20, Duration::from_secs(60));
    read(&c, "join", "j", &[0, 1]);
    drop(c.write_begin(vec![1]));
    assert!(c.lookup(b"join").is_none());
    assert_eq!(c.snapshot().bytes, 0);
}
