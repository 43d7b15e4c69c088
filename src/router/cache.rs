//! The decision cache: analyses by statement text, bounded in bytes (SPEC §3.7), shared by all sessions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::hash::BuildHasher;

use foldhash::fast::RandomState;

use super::{Analysis, Command, SharedAnalysis};

/// Shards keep sessions on different cores from contending on one lock.
const SHARDS: usize = 16;

/// A byte-bounded map from statement text to its analysis.
pub struct RouteCache {
    /// Each shard holds a slice of the byte budget.
    shards: Vec<Mutex<Shard>>,
    /// Per-shard byte budget.
    shard_budget: usize,
    /// Texts longer than this are analysed every time (an ORM's 600-element IN list must not crowd out the rest).
    max_text: usize,
    /// Lookups answered from the cache.
    hits: AtomicU64,
    /// Lookups that had to analyse the text.
    misses: AtomicU64,
    /// Hash state shared by shard selection and the maps.
    hasher: RandomState,
}

/// One shard: the map and the bytes it holds.
#[derive(Default)]
struct Shard {
    /// text → analysis.
    map: HashMap<Box<str>, SharedAnalysis, RandomState>,
    /// Bytes held by keys and analyses.
    bytes: usize,
}

/// Hit and miss counts, for metrics and `pgsplit route`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that analysed the text.
    pub misses: u64,
    /// Entries held now.
    pub entries: usize,
    /// Bytes held now.
    pub bytes: usize,
}

impl RouteCache {
    /// A cache holding at most about `max_bytes` of texts and analyses.
    pub fn new(max_bytes: usize) -> Self {
        let shard_budget = (max_bytes / SHARDS).max(1);
        RouteCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            shard_budget,
            max_text: (shard_budget / 8).max(64),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            hasher: RandomState::default(),
        }
    }

    /// The analysis of `sql`, from the cache or computed (and stored) now. Texts that differ only in numeric
    /// literals share one entry (`literals::shape`), unless the statement carries values into session state
    /// (`SET x = 5`), which is then cached under its own text.
    pub fn analysis(&self, sql: &str) -> SharedAnalysis {
        // The exact text first: texts without numeric literals (parameters, identifiers only) are stored under
        // themselves and need no shaping.
        if sql.len() <= self.max_text {
            if let Some(a) = lock(self.shard(sql)).map.get(sql) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return a.clone();
            }
        }
        let shaped = super::literals::shape(sql);
        if shaped.len() > self.max_text {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return Arc::new(Analysis::of(sql));
        }
        if shaped != sql {
            if let Some(a) = lock(self.shard(&shaped)).map.get(&*shaped) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return a.clone();
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let a = Arc::new(Analysis::of(sql));
        let literal_free = a.session_changes.is_empty() && !matches!(a.command, Command::SetTarget(_));
        let key: &str = if literal_free { &shaped } else { sql };
        self.store(key, a.clone());
        a
    }

    fn shard(&self, key: &str) -> &Mutex<Shard> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    fn store(&self, key: &str, a: SharedAnalysis) {
        let size = key.len() + a.heap_bytes() + 32;
        let mut s = lock(self.shard(key));
        while s.bytes + size > self.shard_budget && !s.map.is_empty() {
            // Evict in the map's (randomised) order: O(1), no bookkeeping per hit.
            let Some(victim) = s.map.keys().next().cloned() else { break };
            if let Some(old) = s.map.remove(&victim) {
                s.bytes = s.bytes.saturating_sub(victim.len() + old.heap_bytes() + 32);
            }
        }
        if s.map.insert(key.into(), a).is_none() {
            s.bytes += size;
        }
    }

    /// Current figures.
    pub fn stats(&self) -> CacheStats {
        let (mut entries, mut bytes) = (0, 0);
        for s in &self.shards {
            let s = lock(s);
            entries += s.map.len();
            bytes += s.bytes;
        }
        CacheStats { hits: self.hits.load(Ordering::Relaxed), misses: self.misses.load(Ordering::Relaxed), entries, bytes }
    }
}

fn lock(m: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    // A panic while holding the lock cannot leave a shard inconsistent beyond its byte count; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lookup_is_a_hit() {
        let c = RouteCache::new(1 << 20);
        c.analysis("select * from workspace.t");
        c.analysis("select * from workspace.t");
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.entries), (1, 1, 1));
    }

    #[test]
    fn stays_within_its_byte_budget() {
        let c = RouteCache::new(64 * 1024);
        for i in 0..5000 {
            c.analysis(&format!(
                "select * from workspace.t where id in ({})",
                (0..i % 50).map(|x| x.to_string()).collect::<Vec<_>>().join(",")
            ));
            c.analysis(&format!("select {i} from config.users"));
        }
        assert!(c.stats().bytes <= 64 * 1024, "{:?}", c.stats());
        assert!(c.stats().entries > 10);
    }

    #[test]
    fn texts_that_differ_only_in_numbers_share_an_entry_but_set_values_do_not() {
        let c = RouteCache::new(1 << 20);
        c.analysis("select * from workspace.t where id = 1");
        c.analysis("select * from workspace.t where id = 2");
        assert_eq!((c.stats().hits, c.stats().entries), (1, 1));
        let a = c.analysis("set statement_timeout = 1000");
        let b = c.analysis("set statement_timeout = 2000");
        assert_eq!(a.session_changes, [Command::SetParam { name: "statement_timeout".into(), value: "1000".into() }]);
        assert_eq!(b.session_changes, [Command::SetParam { name: "statement_timeout".into(), value: "2000".into() }]);
        assert_eq!(c.analysis("set statement_timeout = 2000").session_changes, b.session_changes);
        assert_eq!(c.stats().entries, 3);
    }

    #[test]
    fn long_texts_skip_the_cache() {
        let c = RouteCache::new(16 * 1024);
        let long = format!("select * from workspace.t where id in ({})", vec!["1"; 2000].join(","));
        c.analysis(&long);
        c.analysis(&long);
        assert_eq!(c.stats().entries, 0);
        assert_eq!(c.stats().misses, 2);
    }
}
