//! Every metric pgsplit exports, in one place: the atomics the data path bumps (here), and the Prometheus text
//! rendered from them (and from figures sampled at scrape time) for `GET /metrics` (`exposition`).
//!
//! The hot path only does relaxed atomic adds on handles it already holds (a target's `TargetStats`, the App's
//! `Metrics`): no allocation, no formatting, no lock. Figures that already exist elsewhere (pool states, cache
//! counts, pinned sessions, mode, reachability) are read when Prometheus scrapes, not mirrored.
//!
//! Names (all prefixed `pgsplit_`): see `exposition`.

mod exposition;
pub mod process;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::router::Reason;

pub use exposition::{render, Snapshot, TargetSnapshot, CONTENT_TYPE};

/// Upper bounds (µs) of the checkout-wait histogram: most checkouts are immediate; the tail is the queue.
const CHECKOUT_BOUNDS_US: &[u64] = &[50, 100, 250, 500, 1_000, 5_000, 10_000, 50_000, 100_000, 500_000, 1_000_000, 5_000_000];
/// Upper bounds (µs) of the query-latency histogram (send to ReadyForQuery, relay included).
const QUERY_BOUNDS_US: &[u64] =
    &[250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 10_000_000];

/// Stripes of the counters the data path bumps on every statement: each thread adds to its own cache line, so
/// sessions on different cores never pull the same line back and forth; a scrape sums the stripes.
const STRIPES: usize = 8;

/// This thread's stripe, assigned round-robin at its first count.
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        // Const-initialised (no lazy-init check at each use); `usize::MAX` until the thread's first use.
        static STRIPE: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
    }
    STRIPE.with(|s| match s.get() {
        usize::MAX => {
            let stripe = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
            s.set(stripe);
            stripe
        }
        stripe => stripe,
    })
}

/// One cache line (two, against adjacent-line prefetch) holding `T`.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Line<T>(T);

/// A counter bumped from many threads: one relaxed add on the calling thread's own stripe.
#[derive(Debug, Default)]
pub struct StripedCounter {
    stripes: [Line<AtomicU64>; STRIPES],
}

impl StripedCounter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.stripes[stripe()].0.fetch_add(n, Ordering::Relaxed);
    }

    /// The total over all stripes.
    pub fn get(&self) -> u64 {
        self.stripes.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// Why a statement went where it went, as counted in `pgsplit_route_decisions_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteReason {
    /// The router's own reasons.
    Router(Reason),
    /// Single mode: everything to `single_target`.
    Single,
    /// A passthrough session (database named after a target).
    Passthrough,
}

/// Every label value of `RouteReason`, in index order.
const ROUTE_REASONS: [&str; 7] = ["relations", "hint", "session_hint", "default", "fallback", "single", "passthrough"];

impl RouteReason {
    fn index(self) -> usize {
        match self {
            RouteReason::Router(Reason::Relations) => 0,
            RouteReason::Router(Reason::Hint) => 1,
            RouteReason::Router(Reason::SessionHint) => 2,
            RouteReason::Router(Reason::Default) => 3,
            RouteReason::Router(Reason::Fallback) => 4,
            RouteReason::Single => 5,
            RouteReason::Passthrough => 6,
        }
    }
}

/// Why a checkout failed, as counted in `pgsplit_checkout_failures_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckoutFailure {
    /// The target could not be reached.
    Unavailable = 0,
    /// No connection became free within the checkout timeout.
    Timeout = 1,
}

/// Most buckets a histogram may have (its bounds plus +Inf).
const MAX_BUCKETS: usize = 15;
const _: () = assert!(CHECKOUT_BOUNDS_US.len() < MAX_BUCKETS && QUERY_BOUNDS_US.len() < MAX_BUCKETS);

/// One stripe of a histogram: observations per bucket (not cumulative) and their sum in microseconds.
#[derive(Debug, Default)]
struct HistogramRow {
    counts: [AtomicU64; MAX_BUCKETS],
    sum_us: AtomicU64,
}

/// A fixed-bucket histogram of durations, updated with two relaxed atomic adds on the calling thread's stripe.
#[derive(Debug)]
pub struct Histogram {
    /// Bucket upper bounds in microseconds, ascending; one bucket more for +Inf.
    bounds_us: &'static [u64],
    /// One row per stripe.
    rows: Box<[Line<HistogramRow>; STRIPES]>,
}

impl Histogram {
    fn new(bounds_us: &'static [u64]) -> Histogram {
        Histogram { bounds_us, rows: Box::default() }
    }

    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let us = micros(d);
        let bucket = self.bounds_us.iter().position(|&b| us <= b).unwrap_or(self.bounds_us.len());
        let row = &self.rows[stripe()].0;
        if let Some(c) = row.counts.get(bucket) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        row.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// `observe(Duration::ZERO)`, without the arithmetic: the first bucket counts one more, the sum stays.
    #[inline]
    pub fn observe_zero(&self) {
        if let Some(c) = self.rows[stripe()].0.counts.first() {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Observations and their sum in microseconds.
    fn totals(&self) -> (u64, u64) {
        let count = self.rows.iter().flat_map(|r| r.0.counts.iter()).map(|c| c.load(Ordering::Relaxed)).sum();
        (count, self.rows.iter().map(|r| r.0.sum_us.load(Ordering::Relaxed)).sum())
    }

    /// Buckets as (upper bound in seconds, count), the sum in seconds and the total count.
    fn snapshot(&self) -> HistogramSnapshot {
        let mut buckets = Vec::with_capacity(self.bounds_us.len() + 1);
        let mut count = 0;
        for i in 0..=self.bounds_us.len() {
            let n: u64 = self.rows.iter().map(|r| r.0.counts[i].load(Ordering::Relaxed)).sum();
            count += n;
            let bound = self.bounds_us.get(i).map(|&b| b as f64 / 1e6).unwrap_or(f64::INFINITY);
            buckets.push((bound, n));
        }
        let sum: u64 = self.rows.iter().map(|r| r.0.sum_us.load(Ordering::Relaxed)).sum();
        HistogramSnapshot { buckets, sum: sum as f64 / 1e6, count }
    }
}

/// A histogram's figures at scrape time.
#[derive(Debug, Clone, Default)]
struct HistogramSnapshot {
    /// (upper bound in seconds, observations in that bucket only).
    buckets: Vec<(f64, u64)>,
    /// Sum in seconds.
    sum: f64,
    /// Observations.
    count: u64,
}

/// What one thread counts for one target, on lines no other thread writes.
#[derive(Debug, Default)]
struct Counts {
    /// Client requests (a Query, or an extended batch up to Sync) run on the target.
    queries: AtomicU64,
    /// Of those, the ones that ended in an error (the server's ErrorResponse or a lost connection).
    errors: AtomicU64,
    /// Route decisions for the target, by `RouteReason` index.
    routed: [AtomicU64; ROUTE_REASONS.len()],
    /// Transactions ended on the target (PgBouncer's `xact_count`): a request that ended outside a transaction.
    xacts: AtomicU64,
    /// Their durations summed, from the start of their first request to the end of their last, in microseconds.
    xact_us: AtomicU64,
    /// Bytes of the clients' requests sent to the target (PgBouncer's `bytes_received`: from the clients).
    received: AtomicU64,
    /// Bytes the target replied, relayed to the clients (PgBouncer's `bytes_sent`: to the clients).
    sent: AtomicU64,
    /// Clients that joined the checkout queue on this thread and have not left it yet (a client leaves the
    /// stripe it joined, whatever thread it is on by then; the sum over the stripes is the queue's length).
    waiting: AtomicI64,
}

/// What the data path counts about one target; each `Backend` owns one. Counters bumped per statement are striped
/// by thread (`stripe`).
#[derive(Debug)]
pub struct TargetStats {
    /// Per-statement counters, one stripe per thread.
    counts: Box<[Line<Counts>; STRIPES]>,
    /// Checkouts that failed, by `CheckoutFailure`.
    checkout_failures: [AtomicU64; 2],
    /// The totals at the last `roll`, and the averages over the period that ended there (SHOW STATS_AVERAGES).
    window: Mutex<(Totals, Totals)>,
    /// Time from asking for a server connection to having one.
    checkout_wait: Histogram,
    /// Time from sending a request to its ReadyForQuery.
    query_latency: Histogram,
    /// The connection alert (`alert_connections`), driven by the health probes.
    pub alert: Alert,
}

impl Default for TargetStats {
    fn default() -> Self {
        TargetStats {
            counts: Box::default(),
            checkout_failures: Default::default(),
            window: Mutex::default(),
            checkout_wait: Histogram::new(CHECKOUT_BOUNDS_US),
            query_latency: Histogram::new(QUERY_BOUNDS_US),
            alert: Alert::default(),
        }
    }
}

/// Counts a client in the checkout queue while it lives.
pub struct Waiting<'a>(&'a AtomicI64);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl TargetStats {
    /// `field` summed over the stripes.
    fn sum<T: std::iter::Sum<T>>(&self, field: impl Fn(&Counts) -> T) -> T {
        self.counts.iter().map(|c| field(&c.0)).sum()
    }

    /// One request ran on the target: how long it took and whether it ended in an error. Returns when it ended.
    pub fn query(&self, started: Instant, failed: bool) -> Instant {
        let counts = &self.counts[stripe()].0;
        counts.queries.fetch_add(1, Ordering::Relaxed);
        if failed {
            counts.errors.fetch_add(1, Ordering::Relaxed);
        }
        let now = Instant::now();
        self.query_latency.observe(now.saturating_duration_since(started));
        now
    }

    /// A transaction ended on the target: it began when its first request was sent.
    #[inline]
    pub fn transaction(&self, began: Instant, ended: Instant) {
        let counts = &self.counts[stripe()].0;
        counts.xacts.fetch_add(1, Ordering::Relaxed);
        counts.xact_us.fetch_add(micros(ended.saturating_duration_since(began)), Ordering::Relaxed);
    }

    /// A request of `received` bytes went to the target, which replied `sent` bytes.
    #[inline]
    pub fn traffic(&self, received: u64, sent: u64) {
        let counts = &self.counts[stripe()].0;
        counts.received.fetch_add(received, Ordering::Relaxed);
        counts.sent.fetch_add(sent, Ordering::Relaxed);
    }

    /// The target's totals since start, as PgBouncer counts them.
    pub fn totals(&self) -> Totals {
        let (_, query_time_us) = self.query_latency.totals();
        let (assignments, wait_time_us) = self.checkout_wait.totals();
        Totals {
            xact_count: self.sum(|c| c.xacts.load(Ordering::Relaxed)),
            query_count: self.sum(|c| c.queries.load(Ordering::Relaxed)),
            bytes_received: self.sum(|c| c.received.load(Ordering::Relaxed)),
            bytes_sent: self.sum(|c| c.sent.load(Ordering::Relaxed)),
            xact_time_us: self.sum(|c| c.xact_us.load(Ordering::Relaxed)),
            query_time_us,
            wait_time_us,
            assignments,
        }
    }

    /// Ends a stats period of `period`: the averages over it replace the previous period's (`averages`).
    pub fn roll(&self, period: Duration) {
        let now = self.totals();
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        window.1 = now.since(&window.0).averaged(period);
        window.0 = now;
    }

    /// The averages over the last stats period (all zero before the first has ended), as PgBouncer's
    /// `SHOW STATS_AVERAGES`: counts and bytes per second, times per transaction, query and assignment.
    pub fn averages(&self) -> Totals {
        self.window.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    /// A statement was routed to the target.
    pub fn routed(&self, reason: RouteReason) {
        self.counts[stripe()].0.routed[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// A client joins the checkout queue until the returned guard drops.
    pub fn waiting(&self) -> Waiting<'_> {
        let waiting = &self.counts[stripe()].0.waiting;
        waiting.fetch_add(1, Ordering::Relaxed);
        Waiting(waiting)
    }

    /// A checkout ended: if it had to wait (`waited_since` when it began), it waited that long, else it counts as
    /// 0 s (an idle connection and a free turn at once: no clock read for the common case); and it failed for
    /// `failure` if it did.
    pub fn checked_out(&self, waited_since: Option<tokio::time::Instant>, failure: Option<CheckoutFailure>) {
        match waited_since {
            Some(started) => self.checkout_wait.observe(started.elapsed()),
            None => self.checkout_wait.observe_zero(),
        }
        if let Some(why) = failure {
            self.checkout_failures[why as usize].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Microseconds in `d`, saturating (not `as_micros`: 128-bit arithmetic).
#[inline]
fn micros(d: Duration) -> u64 {
    d.as_secs().saturating_mul(1_000_000).saturating_add(u64::from(d.subsec_micros()))
}

/// A target's figures as PgBouncer's `SHOW STATS_TOTALS` counts them, or averaged over a stats period
/// (`TargetStats::averages`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Transactions.
    pub xact_count: u64,
    /// Client requests (PgBouncer counts a Query or an extended batch as one).
    pub query_count: u64,
    /// Bytes from the clients.
    pub bytes_received: u64,
    /// Bytes to the clients.
    pub bytes_sent: u64,
    /// Time in transactions, µs.
    pub xact_time_us: u64,
    /// Time in requests, µs.
    pub query_time_us: u64,
    /// Time clients waited for a server connection, µs.
    pub wait_time_us: u64,
    /// Server connections assigned to clients (checkouts).
    pub assignments: u64,
}

impl Totals {
    /// What was counted between `earlier` and these totals.
    fn since(&self, earlier: &Totals) -> Totals {
        Totals {
            xact_count: self.xact_count.saturating_sub(earlier.xact_count),
            query_count: self.query_count.saturating_sub(earlier.query_count),
            bytes_received: self.bytes_received.saturating_sub(earlier.bytes_received),
            bytes_sent: self.bytes_sent.saturating_sub(earlier.bytes_sent),
            xact_time_us: self.xact_time_us.saturating_sub(earlier.xact_time_us),
            query_time_us: self.query_time_us.saturating_sub(earlier.query_time_us),
            wait_time_us: self.wait_time_us.saturating_sub(earlier.wait_time_us),
            assignments: self.assignments.saturating_sub(earlier.assignments),
        }
    }

    /// The averages of a period's counts, as PgBouncer's: counts and bytes per second, each time per event.
    fn averaged(&self, period: Duration) -> Totals {
        let secs = period.as_secs().max(1);
        let per = |total: u64, n: u64| total.checked_div(n).unwrap_or(0);
        Totals {
            xact_count: self.xact_count / secs,
            query_count: self.query_count / secs,
            bytes_received: self.bytes_received / secs,
            bytes_sent: self.bytes_sent / secs,
            xact_time_us: per(self.xact_time_us, self.xact_count),
            query_time_us: per(self.query_time_us, self.query_count),
            wait_time_us: per(self.wait_time_us, self.assignments),
            assignments: self.assignments / secs,
        }
    }
}

/// A target's connection alert: its open server connections stayed above a threshold for a while.
#[derive(Debug, Default)]
pub struct Alert {
    /// Whether the alert is raised (exported as `pgsplit_connection_alert`).
    raised: AtomicBool,
    /// When the count was first seen above the threshold, in the current run of probes above it.
    above_since: Mutex<Option<Instant>>,
}

/// What one observation did to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertChange {
    /// Above the threshold for `sustain`: the alert starts.
    Raised,
    /// Back at or below the threshold: the alert ends.
    Cleared,
}

impl Alert {
    /// Feeds one sample (taken at a probe tick): `count` connections against `threshold`; the alert starts when
    /// every sample for at least `sustain` was above it, and clears at the first sample that is not.
    pub fn observe(&self, count: u32, threshold: u32, sustain: Duration, now: Instant) -> Option<AlertChange> {
        let mut since = self.above_since.lock().unwrap_or_else(|e| e.into_inner());
        let raised = self.raised.load(Ordering::Relaxed);
        if count <= threshold {
            *since = None;
            if raised {
                self.raised.store(false, Ordering::Relaxed);
                return Some(AlertChange::Cleared);
            }
            return None;
        }
        let first = *since.get_or_insert(now);
        if !raised && now.saturating_duration_since(first) >= sustain {
            self.raised.store(true, Ordering::Relaxed);
            return Some(AlertChange::Raised);
        }
        None
    }

    /// Whether the alert is raised now.
    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Relaxed)
    }
}

/// Process-wide figures the data path counts (the per-target ones live in each `Backend`'s `TargetStats`).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Authenticated client sessions now.
    clients: AtomicI64,
    /// Statements refused by pgsplit, by (cause, SQLSTATE). Refusals are rare: a lock here costs nothing.
    refusals: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// Connections refused before or during authentication, by SQLSTATE.
    startup_refusals: Mutex<BTreeMap<&'static str, u64>>,
}

/// Counts a connected client while it lives.
pub struct Connected<'a>(&'a AtomicI64);

impl Drop for Connected<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// A client finished startup; it counts as connected until the guard drops.
    pub fn client_connected(&self) -> Connected<'_> {
        self.clients.fetch_add(1, Ordering::Relaxed);
        Connected(&self.clients)
    }

    /// Authenticated clients connected now.
    pub fn clients(&self) -> i64 {
        self.clients.load(Ordering::Relaxed)
    }

    /// pgsplit refused a statement.
    pub fn refused(&self, cause: &'static str, sqlstate: &'static str) {
        *self.refusals.lock().unwrap_or_else(|e| e.into_inner()).entry((cause, sqlstate)).or_default() += 1;
    }

    /// A connection was refused at startup (authentication, unknown database, TLS required, protocol).
    pub fn startup_refused(&self, sqlstate: &'static str) {
        *self.startup_refusals.lock().unwrap_or_else(|e| e.into_inner()).entry(sqlstate).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Mode;
    use crate::router::cache::CacheStats;

    #[test]
    fn histogram_buckets_are_cumulative_with_sum_and_count() {
        let h = Histogram::new(&[1_000, 10_000]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_micros(5_000));
        h.observe(Duration::from_secs(1));
        let stats = TargetStats { query_latency: h, ..TargetStats::default() };
        let mut snap =
            Snapshot::new(&Metrics::default(), Mode::Split, CacheStats { hits: 0, misses: 0, entries: 0, bytes: 0 }, 0);
        snap.targets.push(TargetSnapshot::of("data", &stats));
        let text = render(snap);
        assert!(text.contains("pgsplit_query_duration_seconds_bucket{target=\"data\",le=\"0.001\"} 1\n"), "{text}");
        assert!(text.contains("pgsplit_query_duration_seconds_bucket{target=\"data\",le=\"0.01\"} 2\n"), "{text}");
        assert!(text.contains("pgsplit_query_duration_seconds_bucket{target=\"data\",le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("pgsplit_query_duration_seconds_count{target=\"data\"} 3\n"), "{text}");
        assert!(text.contains("pgsplit_query_duration_seconds_sum{target=\"data\"} 1.0055\n"), "{text}");
    }

    #[test]
    fn observe_zero_counts_as_observing_zero() {
        let (a, b) = (Histogram::new(&[1_000, 10_000]), Histogram::new(&[1_000, 10_000]));
        a.observe(Duration::ZERO);
        b.observe_zero();
        let (a, b) = (a.snapshot(), b.snapshot());
        assert_eq!((a.buckets, a.sum, a.count), (b.buckets, b.sum, b.count));
        assert_eq!(b.count, 1);
    }

    #[test]
    fn striped_counts_from_many_threads_sum_exactly() {
        let (counter, stats) = (StripedCounter::default(), TargetStats::default());
        std::thread::scope(|s| {
            for _ in 0..12 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        counter.add(1);
                        stats.query(Instant::now(), false);
                    }
                    // Joins the queue on this thread and stays in it.
                    std::mem::forget(stats.waiting());
                });
            }
        });
        let waiting: i64 = stats.sum(|c| c.waiting.load(Ordering::Relaxed));
        assert_eq!((counter.get(), stats.sum(|c| c.queries.load(Ordering::Relaxed)), waiting), (12_000, 12_000, 12));
        assert_eq!(stats.query_latency.snapshot().count, 12_000);
        // A client that joined the queue on one thread and leaves it on another.
        let joined = stats.waiting();
        std::thread::scope(|s| s.spawn(move || drop(joined)).join().ok());
        assert_eq!(stats.sum(|c| c.waiting.load(Ordering::Relaxed)), 12, "left where it joined");
    }

    #[test]
    fn counters_gauges_and_labels_render() {
        let m = Metrics::default();
        let _c = m.client_connected();
        m.refused("cross_target", "0A000");
        m.refused("cross_target", "0A000");
        let stats = TargetStats::default();
        stats.routed(RouteReason::Router(Reason::Relations));
        {
            let _w = stats.waiting();
            let _w2 = stats.waiting();
        }
        let _w = stats.waiting();
        let mut snap = Snapshot::new(&m, Mode::Single, CacheStats { hits: 7, misses: 2, entries: 2, bytes: 300 }, 1);
        let mut t = TargetSnapshot::of("primary", &stats);
        (t.connections, t.idle, t.up, t.alert_threshold) = (5, 2, true, Some(12));
        snap.targets.push(t);
        let text = render(snap);
        for line in [
            "pgsplit_clients 1",
            "pgsplit_mode{mode=\"single\"} 1",
            "pgsplit_mode{mode=\"split\"} 0",
            "pgsplit_server_connections{target=\"primary\",state=\"active\"} 3",
            "pgsplit_waiting_clients{target=\"primary\"} 1",
            "pgsplit_route_decisions_total{target=\"primary\",reason=\"relations\"} 1",
            "pgsplit_refusals_total{reason=\"cross_target\",sqlstate=\"0A000\"} 2",
            "pgsplit_route_cache_hits_total 7",
            "pgsplit_route_cache_bytes 300",
            "pgsplit_target_up{target=\"primary\"} 1",
            "pgsplit_connection_alert_threshold{target=\"primary\"} 12",
            "pgsplit_connection_alert{target=\"primary\"} 0",
            "pgsplit_pinned_sessions 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn alert_rises_only_after_the_sustain_period_and_clears_at_once() {
        let a = Alert::default();
        let t0 = Instant::now();
        let s = Duration::from_secs(10);
        assert_eq!(a.observe(13, 12, s, t0), None);
        assert_eq!(a.observe(20, 12, s, t0 + Duration::from_secs(5)), None);
        assert_eq!(a.observe(13, 12, s, t0 + Duration::from_secs(10)), Some(AlertChange::Raised));
        assert!(a.is_raised());
        assert_eq!(a.observe(14, 12, s, t0 + Duration::from_secs(15)), None, "raised once");
        assert_eq!(a.observe(12, 12, s, t0 + Duration::from_secs(20)), Some(AlertChange::Cleared));
        assert!(!a.is_raised());
        // A dip below the threshold restarts the period.
        assert_eq!(a.observe(13, 12, s, t0 + Duration::from_secs(25)), None);
        assert_eq!(a.observe(1, 12, s, t0 + Duration::from_secs(30)), None);
        assert_eq!(a.observe(13, 12, s, t0 + Duration::from_secs(35)), None);
        assert_eq!(a.observe(13, 12, Duration::ZERO, t0 + Duration::from_secs(35)), Some(AlertChange::Raised));
    }
}
