//! The session cache (SPEC §11; the design, its states and why each step is safe: `docs/session-cache.md`).
//!
//! One store per process: replies to reads of the configured tables, keyed by everything that changes them
//! (`session::cache` builds the key), kept within a byte budget in LRU order, each for its table's TTL. Each table
//! has a generation, moved on by every write through pgsplit (before it is sent, and again when its transaction
//! ends), every notification from the table's target and every loss of the LISTEN connection; an entry is inserted
//! only if the generations its read started under still hold and no write to its tables is in flight, so an entry
//! never predates a write whose result a client has seen.

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

/// Bytes counted for an entry besides its key and reply: the LRU node, the key's second reference in its table's
/// index, the entry's fields and the allocators' rounding.
pub const ENTRY_OVERHEAD: usize = 160;

/// The channel a cached table's trigger notifies on, with `schema.table` as the payload (README, *Session cache*).
pub const CHANNEL: &str = "pgsplit_cache";

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
}

/// The shared store and its counters.
pub struct SessionCache {
    tables: Vec<Table>,
    by_name: HashMap<(String, String), TableId>,
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
    /// Per table, the keys of its entries.
    by_table: Vec<HashSet<Arc<[u8]>>>,
    /// Per table, moved on by each write, notification and loss of notifications.
    generations: Vec<u64>,
    /// Per table, writes through pgsplit whose transaction has not ended.
    writers: Vec<u32>,
    /// Every entry's bytes (`Entry::bytes`).
    bytes: usize,
}

struct Entry {
    reply: Bytes,
    expires: Instant,
    tables: Box<[TableId]>,
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
pub struct Started(Vec<u64>);

impl SessionCache {
    /// The cache the configuration describes; tables whose target the routing table does not know are left out
    /// (validation refuses them).
    pub fn new(config: &CacheConfig, table: &RoutingTable) -> SessionCache {
        let tables: Vec<Table> = config
            .tables
            .iter()
            .filter_map(|t| {
                let target = table.target_id(&t.target)?;
                Some(Table { schema: t.schema.clone(), name: t.name.clone(), target, ttl: t.ttl })
            })
            .collect();
        let by_name = tables.iter().enumerate().map(|(i, t)| ((t.schema.clone(), t.name.clone()), i)).collect();
        let mut owns = vec![false; table.targets.len()];
        for t in &tables {
            if let Some(o) = owns.get_mut(t.target) {
                *o = true;
            }
        }
        let n = tables.len();
        SessionCache {
            tables,
            by_name,
            owns,
            max_bytes: config.max_bytes,
            max_entry_bytes: config.max_entry_bytes,
            listen: config.listen,
            store: Mutex::new(Store {
                lru: lru::LruCache::unbounded(),
                by_table: vec![HashSet::new(); n],
                generations: vec![0; n],
                writers: vec![0; n],
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
        // Borrowed lookup without building a tuple of Strings: few tables, a scan is as fast.
        if self.tables.len() <= 8 {
            return self.tables.iter().position(|t| t.schema == schema && t.name == name);
        }
        self.by_name.get(&(schema.to_owned(), name.to_owned())).copied()
    }

    /// Whether the target owns a cached table.
    pub fn owns(&self, target: TargetId) -> bool {
        self.owns.get(target).copied().unwrap_or(false)
    }

    /// The cached tables of a target.
    pub fn tables_of(&self, target: TargetId) -> Vec<TableId> {
        (0..self.tables.len()).filter(|&i| self.tables[i].target == target).collect()
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

    /// The generations of `tables` before a read that missed is sent; `None` while a write to one of them is in
    /// flight (its reply could not be kept).
    pub fn start_read(&self, tables: &[TableId]) -> Option<Started> {
        let store = self.lock();
        if tables.iter().any(|&t| store.writers.get(t).copied().unwrap_or(1) > 0) {
            return None;
        }
        Some(Started(tables.iter().map(|&t| store.generations.get(t).copied().unwrap_or(0)).collect()))
    }

    /// Keeps a read's reply, unless it is too large or a write, notification or lost LISTEN moved one of its
    /// tables on since `started` (or a write is in flight). Evicts least recently used entries past the budget.
    pub fn insert(&self, key: Vec<u8>, reply: Vec<u8>, tables: &[TableId], started: &Started) {
        let bytes = key.len() + reply.len() + ENTRY_OVERHEAD * (1 + tables.len());
        if reply.len() > self.max_entry_bytes || bytes > self.max_bytes || started.0.len() != tables.len() {
            self.stats.not_kept.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let ttl = tables.iter().filter_map(|&t| self.tables.get(t)).map(|t| t.ttl).min().unwrap_or_default();
        let key: Arc<[u8]> = key.into();
        let entry = Entry { reply: reply.into(), expires: Instant::now() + ttl, tables: tables.into(), bytes };
        let mut store = self.lock();
        let moved = tables
            .iter()
            .zip(&started.0)
            .any(|(&t, &g)| store.generations.get(t).copied() != Some(g) || store.writers.get(t).copied().unwrap_or(1) > 0);
        if moved {
            drop(store);
            self.stats.not_kept.fetch_add(1, Ordering::Relaxed);
            return;
        }
        store.remove(&key);
        for &t in tables {
            if let Some(set) = store.by_table.get_mut(t) {
                set.insert(key.clone());
            }
        }
        store.bytes += bytes;
        store.lru.put(key, entry);
        let mut evicted = 0;
        while store.bytes > self.max_bytes {
            let Some((k, _)) = store.lru.peek_lru().map(|(k, e)| (k.clone(), e.bytes)) else { break };
            store.remove(&k);
            evicted += 1;
        }
        drop(store);
        self.stats.inserts.fetch_add(1, Ordering::Relaxed);
        self.stats.evictions.fetch_add(evicted, Ordering::Relaxed);
    }

    /// A write to `tables` is about to be sent: their entries go, their generations move on, and nothing is inserted
    /// for them until the hold is dropped (when the writer's transaction has ended).
    pub fn write_begin(self: &Arc<Self>, tables: Vec<TableId>) -> WriteHold {
        let mut store = self.lock();
        for &t in &tables {
            if let Some(w) = store.writers.get_mut(t) {
                *w += 1;
            }
        }
        let dropped = store.invalidate(&tables);
        drop(store);
        self.stats.invalidations.fetch_add(dropped, Ordering::Relaxed);
        WriteHold { cache: self.clone(), tables }
    }

    /// A reply that missed and was not kept (too large, not a clean success, or the session left meanwhile).
    pub fn not_kept(&self) {
        self.stats.not_kept.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops the entries of `tables` and moves their generations on (a notification, a lost LISTEN connection, a
    /// mode switch).
    pub fn invalidate(&self, tables: &[TableId]) {
        let dropped = self.lock().invalidate(tables);
        self.stats.invalidations.fetch_add(dropped, Ordering::Relaxed);
    }

    /// A notification from the target for `schema.table` (the trigger's payload): that table's entries go.
    pub fn notified(&self, target: TargetId, payload: &str) {
        self.stats.notifications.fetch_add(1, Ordering::Relaxed);
        let ids: Vec<TableId> = match crate::quote::split_qualified(payload).and_then(|(s, n)| self.table_id(&s, &n)) {
            Some(t) => vec![t],
            // A payload pgsplit does not know (another trigger's, or empty): every table of the target, to be safe.
            None => self.tables_of(target),
        };
        self.invalidate(&ids);
    }

    /// Every entry goes.
    pub fn clear(&self) {
        let all: Vec<TableId> = (0..self.tables.len()).collect();
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
        if let Some(e) = self.lru.pop(key) {
            self.bytes -= e.bytes;
            for &t in e.tables.iter() {
                if let Some(set) = self.by_table.get_mut(t) {
                    set.remove(key);
                }
            }
        }
    }

    /// Drops every entry of `tables` and moves their generations on; returns how many entries went.
    fn invalidate(&mut self, tables: &[TableId]) -> u64 {
        let mut dropped = 0;
        for &t in tables {
            if let Some(g) = self.generations.get_mut(t) {
                *g += 1;
            }
            let keys = self.by_table.get_mut(t).map(std::mem::take).unwrap_or_default();
            for k in keys {
                if self.lru.contains(&k) {
                    self.remove(&k);
                    dropped += 1;
                }
            }
        }
        dropped
    }
}

/// A write through pgsplit to cached tables whose transaction has not ended: while it lives, nothing of those
/// tables is inserted; dropping it moves their generations on once more.
pub struct WriteHold {
    cache: Arc<SessionCache>,
    tables: Vec<TableId>,
}

impl WriteHold {
    /// The tables it holds.
    pub fn tables(&self) -> &[TableId] {
        &self.tables
    }
}

impl Drop for WriteHold {
    fn drop(&mut self) {
        let mut store = self.cache.lock();
        for &t in &self.tables {
            if let Some(w) = store.writers.get_mut(t) {
                *w = w.saturating_sub(1);
            }
            if let Some(g) = store.generations.get_mut(t) {
                *g += 1;
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
