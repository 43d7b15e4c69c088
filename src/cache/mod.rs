//! The session cache (SPEC §11; the design, its states and why each step is safe: `docs/session-cache.md`).
//!
//! One store per process: replies to reads of the configured tables, keyed by everything that changes them
//! (`session::cache` builds the key), kept within a byte budget in LRU order, each for its table's TTL. A read or
//! a write concerns `Part`s of tables: a whole table, or, for a table with a configured `key` column, the rows of
//! one key value (`WHERE token = $1`). Each part has a generation, moved on by every write through pgsplit (before
//! it is sent, and again when its transaction ends), every notification from the table's target and every loss of
//! the LISTEN connection; an entry is inserted only if the generations its read started under still hold and no
//! write to its parts is in flight, so an entry never predates a write whose result a client has seen. A write to
//! one key evicts that key's entries and the table's entries that are not confined to a key; a write to the whole
//! table evicts all of them.

pub mod listen;
pub mod reply;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::CacheConfig;
use crate::router::{RoutingTable, TargetId};

/// Index of a cached table in the configuration's `cache.tables`.
pub type TableId = usize;

/// What a read or a write concerns of a cached table: all its rows, or those of one key value (its `key_class`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Part {
    /// The table.
    pub table: TableId,
    /// The class of the key value the rows are confined to, if they are.
    pub key: Option<u64>,
}

impl Part {
    /// The whole table.
    pub fn whole(table: TableId) -> Part {
        Part { table, key: None }
    }
}

/// Bytes counted for an entry besides its key and reply: the LRU node, the key's second reference in its table's
/// index, the entry's fields and the allocators' rounding.
pub const ENTRY_OVERHEAD: usize = 160;

/// The channel a cached table's trigger notifies on (README, *Session cache*).
pub const CHANNEL: &str = "pgsplit_cache";

/// Key generations kept per table: keys share them by hash (a collision only holds back an insert).
const BUCKETS: usize = 1024;

/// The class of a key value: values PostgreSQL may find equal share a class, so that a write to one evicts the
/// entries of all. The class is the value's ASCII letters and digits in lower case (case-insensitive and
/// punctuation-ignoring collations, `citext`, `char(n)` padding, a uuid with or without hyphens), and for one that is
/// digits alone, the number (`'017'`, `17`, `'+17'`, `'1_7'`); `None` (the whole table) for a value with other
/// characters (accent-insensitive collations) or a non-decimal number (`0x11`). Two distinct values in one class
/// only evict more than they must. Meant for text and integer key columns (README, *Session cache*).
pub fn key_class(value: &[u8]) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let text = std::str::from_utf8(value).ok()?.trim();
    if !text.is_ascii() {
        return None;
    }
    // PostgreSQL 16's integer input reads 0x1F, 0o17, 0b101: a value that may be one is not classed.
    let unsigned = text.trim_start_matches(['+', '-']).to_ascii_lowercase();
    let radix = ["0x", "0o", "0b"].iter().any(|p| {
        unsigned.strip_prefix(p).is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_hexdigit() || b == b'_'))
    });
    if radix {
        return None;
    }
    let letters: String = text.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect();
    let class = match letters.bytes().all(|b| b.is_ascii_digit()) && !letters.is_empty() {
        true => letters.trim_start_matches('0').to_owned(),
        false => letters,
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    class.hash(&mut h);
    Some(h.finish())
}

/// One cached table.
#[derive(Debug, Clone)]
pub struct Table {
    /// Its schema, case-folded.
    pub schema: String,
    /// Its name, case-folded.
    pub name: String,
    /// The target that owns it.
    pub target: TargetId,
    /// How long an entry of it may be served.
    pub ttl: Duration,
    /// The column reads and writes are confined by (`WHERE key = ...`), when configured.
    pub key: Option<String>,
}

/// The shared store and its counters.
pub struct SessionCache {
    tables: Vec<Table>,
    /// Per target: whether it owns a cached table.
    owns: Vec<bool>,
    max_bytes: usize,
    max_entry_bytes: usize,
    listen: bool,
    store: Mutex<Store>,
    stats: Stats,
    /// Per target: a LISTEN connection is up (`listen`).
    listening: Vec<AtomicBool>,
}

/// What the lock guards.
struct Store {
    lru: lru::LruCache<Arc<[u8]>, Entry>,
    /// Per table: its entries by part, its generations and its writes in flight.
    tables: Vec<TableState>,
    /// Every entry's bytes (`Entry::bytes`).
    bytes: usize,
}

/// One table's entries, generations and writes in flight.
struct TableState {
    /// Entries not confined to a key: any write to the table makes them stale.
    whole: HashSet<Arc<[u8]>>,
    /// Entries confined to a key, by the key's class.
    by_key: HashMap<u64, HashSet<Arc<[u8]>>>,
    /// Moved on by writes to the whole table.
    generation: u64,
    /// Moved on by writes to any key (the whole-table entries depend on every row).
    keyed_generation: u64,
    /// Moved on by writes to the keys of each bucket.
    buckets: [u64; BUCKETS],
    /// Writes to the whole table in flight.
    writers: u32,
    /// Writes to a key in flight, in all.
    keyed_writers: u32,
    /// Writes to a key in flight, per bucket.
    bucket_writers: [u32; BUCKETS],
}

impl Default for TableState {
    fn default() -> TableState {
        TableState {
            whole: HashSet::new(),
            by_key: HashMap::new(),
            generation: 0,
            keyed_generation: 0,
            buckets: [0; BUCKETS],
            writers: 0,
            keyed_writers: 0,
            bucket_writers: [0; BUCKETS],
        }
    }
}

/// The bucket of a key class.
fn bucket(class: u64) -> usize {
    (class % BUCKETS as u64) as usize
}

impl TableState {
    /// Whether a write that concerns a read of `key` (`None`: the whole table) is in flight.
    fn blocked(&self, key: Option<u64>) -> bool {
        self.writers > 0
            || match key {
                None => self.keyed_writers > 0,
                Some(k) => self.bucket_writers.get(bucket(k)).is_some_and(|&w| w > 0),
            }
    }

    /// The generations a read of `key` depends on.
    fn stamp(&self, key: Option<u64>) -> (u64, u64) {
        let keyed = match key {
            None => self.keyed_generation,
            Some(k) => self.buckets.get(bucket(k)).copied().unwrap_or(0),
        };
        (self.generation, keyed)
    }

    /// A write to `key` (or the whole table): the generations it concerns move on.
    fn moved(&mut self, key: Option<u64>) {
        match key {
            None => self.generation += 1,
            Some(k) => {
                self.keyed_generation += 1;
                if let Some(b) = self.buckets.get_mut(bucket(k)) {
                    *b += 1;
                }
            }
        }
    }

    /// Counts a write to `key` in flight (`starts`) or ended.
    fn writing(&mut self, key: Option<u64>, starts: bool) {
        let step = |w: &mut u32| *w = if starts { *w + 1 } else { w.saturating_sub(1) };
        match key {
            None => step(&mut self.writers),
            Some(k) => {
                step(&mut self.keyed_writers);
                if let Some(b) = self.bucket_writers.get_mut(bucket(k)) {
                    step(b);
                }
            }
        }
    }

    /// Takes the keys of the entries a write to `key` (or the whole table) makes stale out of the index.
    fn stale(&mut self, key: Option<u64>) -> Vec<Arc<[u8]>> {
        let mut out: Vec<Arc<[u8]>> = self.whole.drain().collect();
        match key {
            None => {
                for (_, set) in self.by_key.drain() {
                    out.extend(set);
                }
            }
            Some(k) => out.extend(self.by_key.remove(&k).unwrap_or_default()),
        }
        out
    }
}

struct Entry {
    reply: Bytes,
    expires: Instant,
    parts: Box<[Part]>,
    bytes: usize,
}

/// Counters since start.
#[derive(Default)]
struct Stats {
    hits: AtomicU64,
    misses: AtomicU64,
    inserts: AtomicU64,
    /// Entries dropped to stay within `max_bytes`.
    evictions: AtomicU64,
    /// Entries dropped by a write, a notification or a lost LISTEN connection.
    invalidations: AtomicU64,
    /// Entries found past their TTL.
    expired: AtomicU64,
    /// Replies not kept: too large, not a clean success, or a write raced them.
    not_kept: AtomicU64,
    /// Notifications received.
    notifications: AtomicU64,
}

/// The cache's figures at one moment: the `SessionCache` log line, `SHOW CACHE` and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub hits: u64,
    pub misses: u64,
    pub entries: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    pub inserts: u64,
    pub evictions: u64,
    pub invalidations: u64,
    pub expired: u64,
    pub not_kept: u64,
    pub notifications: u64,
}

impl Snapshot {
    /// Hits over lookups, 0 before the first.
    pub fn hit_rate(&self) -> f64 {
        let lookups = self.hits + self.misses;
        if lookups == 0 {
            0.0
        } else {
            self.hits as f64 / lookups as f64
        }
    }
}

/// The generations a read started under, to insert its reply with (`SessionCache::insert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started(Vec<(u64, u64)>);

impl SessionCache {
    /// The cache the configuration describes; tables whose target the routing table does not know are left out
    /// (validation refuses them).
    pub fn new(config: &CacheConfig, table: &RoutingTable) -> SessionCache {
        let tables: Vec<Table> = config
            .tables
            .iter()
            .filter_map(|t| {
                let target = table.target_id(&t.target)?;
                Some(Table { schema: t.schema.clone(), name: t.name.clone(), target, ttl: t.ttl, key: t.key.clone() })
            })
            .collect();
        let mut owns = vec![false; table.targets.len()];
        for t in &tables {
            if let Some(o) = owns.get_mut(t.target) {
                *o = true;
            }
        }
        let n = tables.len();
        SessionCache {
            tables,
            owns,
            max_bytes: config.max_bytes,
            max_entry_bytes: config.max_entry_bytes,
            listen: config.listen,
            store: Mutex::new(Store {
                lru: lru::LruCache::unbounded(),
                tables: (0..n).map(|_| TableState::default()).collect(),
                bytes: 0,
            }),
            stats: Stats::default(),
            listening: table.targets.iter().map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// Records whether the target's LISTEN connection is up.
    pub fn set_listening(&self, target: TargetId, up: bool) {
        if let Some(l) = self.listening.get(target) {
            l.store(up, Ordering::Relaxed);
        }
    }

    /// Whether the target's LISTEN connection is up.
    pub fn is_listening(&self, target: TargetId) -> bool {
        self.listening.get(target).is_some_and(|l| l.load(Ordering::Relaxed))
    }

    /// The cached tables, in configuration order.
    pub fn tables(&self) -> &[Table] {
        &self.tables
    }

    /// The cached table `schema.name`.
    pub fn table_id(&self, schema: &str, name: &str) -> Option<TableId> {
        // A configured list of a few tables: a scan, with no owned strings to hash.
        self.tables.iter().position(|t| t.schema == schema && t.name == name)
    }

    /// The key column of a cached table, if it has one.
    pub fn key_of(&self, table: TableId) -> Option<&str> {
        self.tables.get(table).and_then(|t| t.key.as_deref())
    }

    /// Whether the target owns a cached table.
    pub fn owns(&self, target: TargetId) -> bool {
        self.owns.get(target).copied().unwrap_or(false)
    }

    /// The cached tables of a target, whole.
    pub fn tables_of(&self, target: TargetId) -> Vec<Part> {
        self.tables.iter().enumerate().filter(|(_, t)| t.target == target).map(|(i, _)| Part::whole(i)).collect()
    }

    /// Whether pgsplit listens for the trigger's notifications.
    pub fn listens(&self) -> bool {
        self.listen
    }

    /// The largest reply kept: a session captures at most this much.
    pub fn max_entry_bytes(&self) -> usize {
        self.max_entry_bytes
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave the store inconsistent in a way that matters more than the
        // cache being lost: recover it.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stored reply for `key`, if it is there and within its TTL.
    pub fn lookup(&self, key: &[u8]) -> Option<Bytes> {
        let now = Instant::now();
        let mut store = self.lock();
        let found = match store.lru.get(key) {
            Some(e) if e.expires > now => Some(e.reply.clone()),
            Some(_) => {
                store.remove(key);
                self.stats.expired.fetch_add(1, Ordering::Relaxed);
                None
            }
            None => None,
        };
        drop(store);
        let counter = if found.is_some() { &self.stats.hits } else { &self.stats.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// The generations of `parts` before a read that missed is sent; `None` while a write to one of them is in
    /// flight (its reply could not be kept).
    pub fn start_read(&self, parts: &[Part]) -> Option<Started> {
        let store = self.lock();
        let mut stamps = Vec::with_capacity(parts.len());
        for p in parts {
            let t = store.tables.get(p.table)?;
            if t.blocked(p.key) {
                return None;
            }
            stamps.push(t.stamp(p.key));
        }
        Some(Started(stamps))
    }

    /// Keeps a read's reply, unless it is too large or a write, notification or lost LISTEN moved one of its
    /// parts on since `started` (or a write to one is in flight). Evicts least recently used entries past the
    /// budget.
    pub fn insert(&self, key: Vec<u8>, reply: Vec<u8>, parts: &[Part], started: &Started) {
        let bytes = key.len() + reply.len() + ENTRY_OVERHEAD * (1 + parts.len());
        if reply.len() > self.max_entry_bytes || bytes > self.max_bytes || started.0.len() != parts.len() {
            self.not_kept();
            return;
        }
        let ttl = parts.iter().filter_map(|p| self.tables.get(p.table)).map(|t| t.ttl).min().unwrap_or_default();
        let key: Arc<[u8]> = key.into();
        let entry = Entry { reply: reply.into(), expires: Instant::now() + ttl, parts: parts.into(), bytes };
        let mut store = self.lock();
        let moved = parts
            .iter()
            .zip(&started.0)
            .any(|(p, stamp)| store.tables.get(p.table).is_none_or(|t| t.blocked(p.key) || t.stamp(p.key) != *stamp));
        if moved {
            drop(store);
            self.not_kept();
            return;
        }
        store.remove(&key);
        for p in parts {
            if let Some(t) = store.tables.get_mut(p.table) {
                match p.key {
                    None => t.whole.insert(key.clone()),
                    Some(k) => t.by_key.entry(k).or_default().insert(key.clone()),
                };
            }
        }
        store.bytes += bytes;
        store.lru.put(key, entry);
        let mut evicted = 0;
        while store.bytes > self.max_bytes {
            let Some(k) = store.lru.peek_lru().map(|(k, _)| k.clone()) else { break };
            store.remove(&k);
            evicted += 1;
        }
        drop(store);
        self.stats.inserts.fetch_add(1, Ordering::Relaxed);
        self.stats.evictions.fetch_add(evicted, Ordering::Relaxed);
    }

    /// A reply that missed and was not kept (too large, not a clean success, or the session left meanwhile).
    pub fn not_kept(&self) {
        self.stats.not_kept.fetch_add(1, Ordering::Relaxed);
    }

    /// A write to `parts` is about to be sent: their entries go, their generations move on, and nothing is
    /// inserted for them until the hold is dropped (when the writer's transaction has ended).
    pub fn write_begin(self: &Arc<Self>, parts: Vec<Part>) -> WriteHold {
        let mut store = self.lock();
        for p in &parts {
            if let Some(t) = store.tables.get_mut(p.table) {
                t.writing(p.key, true);
            }
        }
        let dropped = store.invalidate(&parts);
        drop(store);
        self.stats.invalidations.fetch_add(dropped, Ordering::Relaxed);
        WriteHold { cache: self.clone(), parts }
    }

    /// Drops the entries of `parts` and moves their generations on (a notification, a lost LISTEN connection, a
    /// mode switch).
    pub fn invalidate(&self, parts: &[Part]) {
        let dropped = self.lock().invalidate(parts);
        self.stats.invalidations.fetch_add(dropped, Ordering::Relaxed);
    }

    /// A notification from the target: the trigger's payload is `schema.table` (a write to the table, or a
    /// TRUNCATE) or `schema.table key-value` (a row of that key written). A payload pgsplit does not recognise
    /// evicts every cached table of the target, to be safe.
    pub fn notified(&self, target: TargetId, payload: &str) {
        self.stats.notifications.fetch_add(1, Ordering::Relaxed);
        // The trigger sends the catalog's own names (`tg_table_schema`, `tg_table_name`): compared exactly, as
        // configured names are after folding. A name with a space in it ends at the key's space: it is not
        // recognised, and the whole target is evicted.
        let (table, value) = match payload.split_once(' ') {
            Some((t, v)) => (t, Some(v)),
            None => (payload, None),
        };
        let id = self
            .tables
            .iter()
            .position(|t| table.strip_prefix(t.schema.as_str()).and_then(|r| r.strip_prefix('.')) == Some(t.name.as_str()));
        let parts = match (id, value) {
            (Some(t), Some(v)) if self.key_of(t).is_some() => vec![Part { table: t, key: key_class(v.as_bytes()) }],
            (Some(t), _) => vec![Part::whole(t)],
            (None, _) => self.tables_of(target),
        };
        self.invalidate(&parts);
    }

    /// Every entry goes.
    pub fn clear(&self) {
        let all: Vec<Part> = (0..self.tables.len()).map(Part::whole).collect();
        self.invalidate(&all);
    }

    /// The figures now.
    pub fn snapshot(&self) -> Snapshot {
        let (entries, bytes) = {
            let store = self.lock();
            (store.lru.len() as u64, store.bytes as u64)
        };
        let s = &self.stats;
        Snapshot {
            hits: s.hits.load(Ordering::Relaxed),
            misses: s.misses.load(Ordering::Relaxed),
            entries,
            bytes,
            max_bytes: self.max_bytes as u64,
            inserts: s.inserts.load(Ordering::Relaxed),
            evictions: s.evictions.load(Ordering::Relaxed),
            invalidations: s.invalidations.load(Ordering::Relaxed),
            expired: s.expired.load(Ordering::Relaxed),
            not_kept: s.not_kept.load(Ordering::Relaxed),
            notifications: s.notifications.load(Ordering::Relaxed),
        }
    }

    /// Logs the `SessionCache` line (the runbook greps for it).
    pub fn log_line(&self) {
        let s = self.snapshot();
        tracing::info!(
            hits = s.hits,
            misses = s.misses,
            hit_rate = format!("{:.1}%", s.hit_rate() * 100.0),
            entries = s.entries,
            bytes = s.bytes,
            evictions = s.evictions,
            invalidations = s.invalidations,
            "SessionCache"
        );
    }
}

impl Store {
    /// Removes one entry and its index references.
    fn remove(&mut self, key: &[u8]) {
        let Some(e) = self.lru.pop(key) else { return };
        self.bytes -= e.bytes;
        for p in e.parts.iter() {
            let Some(t) = self.tables.get_mut(p.table) else { continue };
            match p.key {
                None => {
                    t.whole.remove(key);
                }
                Some(k) => {
                    if let Some(set) = t.by_key.get_mut(&k) {
                        set.remove(key);
                        if set.is_empty() {
                            t.by_key.remove(&k);
                        }
                    }
                }
            }
        }
    }

    /// Drops the entries `parts` make stale and moves their generations on; returns how many entries went.
    fn invalidate(&mut self, parts: &[Part]) -> u64 {
        let mut dropped = 0;
        for p in parts {
            let Some(t) = self.tables.get_mut(p.table) else { continue };
            t.moved(p.key);
            for k in t.stale(p.key) {
                if self.lru.contains(&k) {
                    self.remove(&k);
                    dropped += 1;
                }
            }
        }
        dropped
    }
}

/// A write through pgsplit to cached tables whose transaction has not ended: while it lives, nothing of its parts
/// is inserted; dropping it moves their generations on once more.
pub struct WriteHold {
    cache: Arc<SessionCache>,
    parts: Vec<Part>,
}

impl Drop for WriteHold {
    fn drop(&mut self) {
        let mut store = self.cache.lock();
        for p in &self.parts {
            if let Some(t) = store.tables.get_mut(p.table) {
                t.writing(p.key, false);
                t.moved(p.key);
            }
        }
    }
}

/// Logs the `SessionCache` line every `period` until the process ends.
pub async fn log_every(cache: Arc<SessionCache>, period: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tick.tick().await;
        cache.log_line();
    }
}

#[cfg(test)]
mod tests;
