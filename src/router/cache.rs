//! The decision cache: analyses by statement text, bounded in bytes (SPEC §3.7), shared by all sessions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use std::hash::BuildHasher;

use foldhash::fast::RandomState;

use super::{Analysis, Command, SharedAnalysis};
use crate::metrics::StripedCounter;

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
    /// Lookups answered from the cache: the shared map, or a session's memo of its last lookup (which may hold an
    /// analysis the map has evicted since).
    hits: StripedCounter,
    /// Lookups that had to analyse the text.
    misses: StripedCounter,
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

/// A session's last route cache lookup: the key its analysis is cached under (the text, or its shape), the
/// analysis, and a buffer for shaping texts; texts up to `MEMO_TEXT` bytes only.
#[derive(Debug, Default)]
pub struct LookupMemo {
    /// The cache key of `analysis`.
    key: String,
    /// The analysis found or made last.
    analysis: Option<SharedAnalysis>,
    /// The last text's shape, when it had literals (`literals::shape_into`).
    shaped: String,
}

/// Which key an analysis is cached under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    /// The text's shape, shared by every text of that shape.
    Shape,
    /// The text itself: the statement carries a value into session state.
    Text,
}

/// Whether texts of one shape may share `a`: nothing in it carries a literal's value into session state, and it is
/// sqlparser's analysis, not the fallback scan's (which reads words, numbers among them, where a parse would not).
pub(crate) fn shared_by_shape(a: &Analysis) -> bool {
    !a.fallback && a.session_changes.is_empty() && !matches!(a.command, Command::SetTarget(_))
}

/// Texts longer than this are not kept in a session's memo, so an idle session holds at most a few KB for it.
const MEMO_TEXT: usize = 1024;

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
            hits: StripedCounter::default(),
            misses: StripedCounter::default(),
            hasher: RandomState::default(),
        }
    }

    /// The analysis of `sql`, from the cache or computed (and stored) now. Texts that differ only in numeric
    /// literals share one entry (`literals::shape_into`), unless the statement carries values into session state
    /// (`SET x = 5`), which is then cached under its own text.
    pub fn analysis(&self, sql: &str) -> SharedAnalysis {
        self.analysis_memo(sql, &mut LookupMemo::default())
    }

    /// `analysis`, first asking the session's `memo` of its last lookup: a client repeating a text, or its shape
    /// with other numbers, is answered without the shared map's lock and hash.
    pub fn analysis_memo(&self, sql: &str, memo: &mut LookupMemo) -> SharedAnalysis {
        // The last text again: whatever key its analysis is cached under, that key is this text.
        if let Some(a) = memo.analysis.as_ref().filter(|_| memo.key == sql) {
            self.hits.add(1);
            return a.clone();
        }
        let mut long = String::new();
        let buf = if sql.len() <= MEMO_TEXT { &mut memo.shaped } else { &mut long };
        let literals = super::literals::shape_into(sql, buf);
        let shaped: &str = if literals { buf } else { sql };
        if shaped.len() > self.max_text {
            self.misses.add(1);
            return Arc::new(Analysis::of(sql));
        }
        // Another text of the last one's shape, if its analysis is shared by the shape.
        if let Some(a) = memo.analysis.as_ref().filter(|a| literals && memo.key == shaped && shared_by_shape(a)) {
            self.hits.add(1);
            return a.clone();
        }
        let found = match self.lookup(shaped) {
            // An entry under the shape is either shared by its texts, or (a SET whose text is its own shape, as
            // `SET x = 0`) belongs to that one text only.
            Some(a) if !literals || shared_by_shape(&a) => Some((a, Key::Shape)),
            _ if literals => self.lookup(sql).map(|a| (a, Key::Text)),
            _ => None,
        };
        let (a, key) = match found {
            Some(found) => {
                self.hits.add(1);
                found
            }
            None => {
                self.misses.add(1);
                let a = Arc::new(Analysis::of(sql));
                let key = if shared_by_shape(&a) { Key::Shape } else { Key::Text };
                self.store(if key == Key::Shape { shaped } else { sql }, a.clone());
                (a, key)
            }
        };
        if sql.len() <= MEMO_TEXT {
            memo.key.clear();
            memo.key.push_str(if key == Key::Shape { shaped } else { sql });
            memo.analysis = Some(a.clone());
        }
        a
    }

    /// The cached analysis under `key`, if any.
    fn lookup(&self, key: &str) -> Option<SharedAnalysis> {
        lock(self.shard(key)).map.get(key).cloned()
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
        CacheStats { hits: self.hits.get(), misses: self.misses.get(), entries, bytes }
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

    #[test]
    fn a_sessions_memo_answers_repeats_and_shapes_but_never_mixes_set_values() {
        let c = RouteCache::new(1 << 20);
        let mut memo = LookupMemo::default();
        let a = c.analysis_memo("select * from workspace.t where id = 1", &mut memo);
        let b = c.analysis_memo("select * from workspace.t where id = 2", &mut memo);
        assert!(Arc::ptr_eq(&a, &b), "one shape, one analysis");
        let set = |v: &str| vec![Command::SetParam { name: "statement_timeout".into(), value: v.into() }];
        assert_eq!(c.analysis_memo("set statement_timeout = 1000", &mut memo).session_changes, set("1000"));
        assert_eq!(c.analysis_memo("set statement_timeout = 2000", &mut memo).session_changes, set("2000"));
        assert_eq!(c.analysis_memo("set statement_timeout = 2000", &mut memo).session_changes, set("2000"));
        assert_eq!(c.analysis_memo("set statement_timeout = 1000", &mut memo).session_changes, set("1000"));
        let d = c.analysis_memo("select * from workspace.t where id = 3", &mut memo);
        assert!(Arc::ptr_eq(&a, &d));
        let e = c.analysis_memo("select * from workspace.t where id = $1", &mut memo);
        assert!(!Arc::ptr_eq(&a, &e));
        assert!(Arc::ptr_eq(&e, &c.analysis_memo("select * from workspace.t where id = $1", &mut memo)));
        // Misses: the first select, the two SET values, the $1 text; everything else is a hit.
        assert_eq!((c.stats().hits, c.stats().misses, c.stats().entries), (5, 4, 4));
    }

    #[test]
    fn a_set_whose_text_is_its_own_shape_is_never_shared_with_other_values() {
        // `= 0` shapes to itself: its entry sits where the shape of every `= N` would be looked up.
        let c = RouteCache::new(1 << 20);
        let value = |a: SharedAnalysis| match &a.session_changes[..] {
            [Command::SetParam { value, .. }] => value.clone(),
            other => panic!("{other:?}"),
        };
        let mut memo = LookupMemo::default();
        for v in ["0", "5", "0", "30000", "30000", "0"] {
            let sql = format!("set statement_timeout = {v}");
            assert_eq!(value(c.analysis_memo(&sql, &mut memo)), v, "session memo");
            assert_eq!(value(c.analysis(&sql)), v, "shared cache");
        }
    }

    #[test]
    fn long_texts_are_not_kept_in_the_memo() {
        let c = RouteCache::new(16 << 20);
        let mut memo = LookupMemo::default();
        let long = format!("select * from workspace.t where id in ({})", vec!["1"; 1000].join(","));
        c.analysis_memo(&long, &mut memo);
        assert!(memo.key.capacity() + memo.shaped.capacity() <= 2 * MEMO_TEXT, "{}", memo.key.capacity());
        assert!(memo.analysis.is_none());
    }
}
