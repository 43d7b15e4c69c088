//! The decision cache: analyses by statement text, bounded in bytes (SPEC §3.7), shared by all sessions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::hash::BuildHasher;

use foldhash::fast::RandomState;

use super::{Analysis, SharedAnalysis};

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

    /// The analysis of `sql`, from the cache or computed (and stored) now.
    pub fn analysis(&self, sql: &str) -> SharedAnalysis {
        if sql.len() > self.max_text {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return Arc::new(Analysis::of(sql));
        }
        let shard = &self.shards[(self.hasher.hash_one(sql) as usize) % SHARDS];
        if let Some(a) = lock(shard).map.get(sql) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return a.clone();
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let a = Arc::new(Analysis::of(sql));
        let size = sql.len() + a.heap_bytes() + 32;
        let mut s = lock(shard);
        while s.bytes + size > self.shard_budget && !s.map.is_empty() {
            // Evict in the map's (randomised) order: O(1), no bookkeeping per hit.
            let Some(victim) = s.map.keys().next().cloned() else { break };
            if let Some(old) = s.map.remove(&victim) {
                s.bytes = s.bytes.saturating_sub(victim.len() + old.heap_bytes() + 32);
            }
        }
        if s.map.insert(sql.into(), a.clone()).is_none() {
            s.bytes += size;
        }
        a
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
    fn long_texts_skip_the_cache() {
        let c = RouteCache::new(16 * 1024);
        let long = format!("select * from workspace.t where id in ({})", vec!["1"; 2000].join(","));
        c.analysis(&long);
        c.analysis(&long);
        assert_eq!(c.stats().entries, 0);
        assert_eq!(c.stats().misses, 2);
    }
}
