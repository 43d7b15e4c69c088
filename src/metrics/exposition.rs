//! The `/metrics` exposition: the figures read at one scrape (`Snapshot`, `TargetSnapshot`) and their Prometheus
//! text, every metric's name, type and help in `Snapshot`'s `Collector::encode`.

use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeCounterValue, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{HistogramSnapshot, Metrics, TargetStats, ROUTE_REASONS};
use crate::config::Mode;
use crate::router::cache::CacheStats;

/// The Content-Type of `render`'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// One target's figures at scrape time.
#[derive(Debug, Clone, Default)]
pub struct TargetSnapshot {
    /// Target name.
    pub name: String,
    /// Reachable as the last probe or connection attempt saw it.
    pub up: bool,
    /// Server connections open.
    pub connections: u32,
    /// Of those, idle in the pool.
    pub idle: u32,
    /// Clients in the checkout queue.
    pub waiting: i64,
    /// Requests run.
    pub queries: u64,
    /// Requests that ended in an error.
    pub errors: u64,
    /// Route decisions by `ROUTE_REASONS`.
    pub routed: [u64; ROUTE_REASONS.len()],
    /// Checkout failures by `CheckoutFailure`.
    pub checkout_failures: [u64; 2],
    /// Checkout wait.
    checkout_wait: HistogramSnapshot,
    /// Query latency.
    query_latency: HistogramSnapshot,
    /// `alert_connections`, if set.
    pub alert_threshold: Option<u32>,
    /// Whether the connection alert is raised.
    pub alert_raised: bool,
    /// PgBouncer's `SHOW STATS` totals: transactions and statements, bytes each way, time in each.
    pub totals: super::Totals,
    /// The pool's `max` (server connections it may open).
    pub pool_max: u32,
}

impl TargetSnapshot {
    /// Reads a target's counters; the caller fills in what the pool and the configuration know.
    pub fn of(name: &str, stats: &TargetStats) -> TargetSnapshot {
        TargetSnapshot {
            name: name.to_owned(),
            waiting: stats.sum(|c| c.waiting.load(Ordering::Relaxed)).max(0),
            queries: stats.sum(|c| c.queries.load(Ordering::Relaxed)),
            errors: stats.sum(|c| c.errors.load(Ordering::Relaxed)),
            routed: std::array::from_fn(|i| stats.sum(|c| c.routed[i].load(Ordering::Relaxed))),
            checkout_failures: std::array::from_fn(|i| stats.checkout_failures[i].load(Ordering::Relaxed)),
            checkout_wait: stats.checkout_wait.snapshot(),
            query_latency: stats.query_latency.snapshot(),
            alert_raised: stats.alert.is_raised(),
            totals: stats.totals(),
            ..TargetSnapshot::default()
        }
    }
}

/// Everything `/metrics` shows, read at one scrape.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The routing mode in force.
    pub mode: Mode,
    /// Authenticated clients.
    pub clients: i64,
    /// Sessions pinned to a server connection.
    pub pinned: u64,
    /// Route cache figures.
    pub cache: CacheStats,
    /// Refusals by (cause, SQLSTATE).
    pub refusals: Vec<((&'static str, &'static str), u64)>,
    /// Startup refusals by SQLSTATE.
    pub startup_refusals: Vec<(&'static str, u64)>,
    /// Per target, in configuration order.
    pub targets: Vec<TargetSnapshot>,
    /// The session cache's figures, when it is configured.
    pub session_cache: Option<crate::cache::Snapshot>,
    /// `max_client_conn`.
    pub max_client_conn: usize,
    /// The process's CPU, memory, files and start time.
    pub process: Option<super::process::Sample>,
}

impl Snapshot {
    /// Reads the process-wide counters; the caller adds targets, mode, cache and pins.
    pub fn new(metrics: &Metrics, mode: Mode, cache: CacheStats, pinned: u64) -> Snapshot {
        let refusals = metrics.refusals.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (*k, *v)).collect();
        let startup_refusals =
            metrics.startup_refusals.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (*k, *v)).collect();
        Snapshot {
            mode,
            clients: metrics.clients(),
            pinned,
            cache,
            refusals,
            startup_refusals,
            targets: Vec::new(),
            session_cache: None,
            max_client_conn: 0,
            process: None,
        }
    }
}

impl Snapshot {
    /// Everything at once, from a running App.
    pub fn of(app: &crate::App) -> Snapshot {
        let pinned = app.pinned_sessions().load(Ordering::Relaxed) as u64;
        let mut s = Snapshot::new(app.metrics(), app.mode(), app.cache().stats(), pinned);
        for (i, b) in app.backends().iter().enumerate() {
            let mut t = TargetSnapshot::of(b.name(), &b.stats);
            (t.connections, t.idle) = b.pool_state();
            t.up = b.is_up();
            t.alert_threshold = app.config().targets.get(i).and_then(|c| c.alert_connections);
            t.pool_max = app.config().targets.get(i).map_or(0, |c| c.pool.max);
            s.targets.push(t);
        }
        s.session_cache = app.session_cache().map(|c| c.snapshot());
        s.max_client_conn = app.config().max_client_conn;
        s.process = super::process::sample();
        s
    }
}

/// Renders a snapshot as Prometheus text (version 0.0.4).
pub fn render(snapshot: Snapshot) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot));
    let mut out = String::with_capacity(8192);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
    out
}

/// The encoder a `Collector` writes its metric families to.
type Enc<'a> = DescriptorEncoder<'a>;

/// One gauge family: its descriptor, then one sample per label set.
fn gauge<L: EncodeLabelSet>(
    e: &mut Enc<'_>,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, i64)>,
) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        m.encode_family(&labels)?.encode_gauge(&v)?;
    }
    Ok(())
}

/// One counter family (exposed with the `_total` suffix), of counts or seconds: its descriptor, then one sample per
/// label set.
fn counter<L: EncodeLabelSet, V: EncodeCounterValue>(
    e: &mut Enc<'_>,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, V)>,
) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        m.encode_family(&labels)?.encode_counter::<NoLabelSet, _, u64>(&v, None)?;
    }
    Ok(())
}

/// One histogram family, one histogram per target.
fn histogram<'a>(
    e: &mut Enc<'_>,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (&'a str, &'a HistogramSnapshot)>,
) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (target, h) in rows {
        let labels = [("target", target)];
        m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)?;
    }
    Ok(())
}

/// No labels: a process-wide figure.
const NO_LABELS: [(&str, &str); 0] = [];

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let e = &mut e;
        self.encode_process(e)?;
        self.encode_target_states(e)?;
        self.encode_target_counts(e)?;
        self.encode_refusals(e)?;
        self.encode_cache(e)?;
        self.encode_latencies(e)?;
        self.encode_alerts(e)?;
        self.encode_stats(e)?;
        self.encode_build_and_limits(e)?;
        self.encode_os_process(e)
    }
}

impl Snapshot {
    /// Clients, pinned sessions and the mode.
    fn encode_process(&self, e: &mut Enc<'_>) -> std::fmt::Result {
        gauge(e, "pgsplit_clients", "Client sessions connected (authenticated).", [(NO_LABELS, self.clients)])?;
        gauge(e, "pgsplit_pinned_sessions", "Sessions pinned to a server connection.", [(NO_LABELS, self.pinned as i64)])?;
        let modes = [("split", Mode::Split), ("single", Mode::Single)];
        gauge(
            e,
            "pgsplit_mode",
            "Routing mode in force (1 for the current one).",
            modes.map(|(name, m)| ([("mode", name)], i64::from(self.mode == m))),
        )
    }

    /// Each target's reachability, server connections and queue now.
    fn encode_target_states(&self, e: &mut Enc<'_>) -> std::fmt::Result {
        let t = &self.targets;
        gauge(
            e,
            "pgsplit_target_up",
            "Whether the target is reachable (1) or down (0).",
            t.iter().map(|x| ([("target", x.name.as_str())], i64::from(x.up))),
        )?;
        gauge(
            e,
            "pgsplit_server_connections",
            "Server connections open per target and state.",
            t.iter().flat_map(|x| {
                let n = x.name.as_str();
                [
                    ([("target", n), ("state", "idle")], i64::from(x.idle)),
                    ([("target", n), ("state", "active")], i64::from(x.connections.saturating_sub(x.idle))),
                ]
            }),
        )?;
        gauge(
            e,
            "pgsplit_waiting_clients",
            "Clients waiting for a server connection of the target.",
            t.iter().map(|x| ([("target", x.name.as_str())], x.waiting)),
        )
    }

    /// Each target's requests, errors, checkout failures and route decisions so far.
    fn encode_target_counts(&self, e: &mut Enc<'_>) -> std::fmt::Result {
        let t = &self.targets;
        counter(
            e,
            "pgsplit_queries",
            "Client requests (Query, or extended batch) run on the target.",
            t.iter().map(|x| ([("target", x.name.as_str())], x.queries)),
        )?;
        counter(
            e,
            "pgsplit_query_errors",
            "Client requests on the target that ended in an error.",
            t.iter().map(|x| ([("target", x.name.as_str())], x.errors)),
        )?;
        counter(
            e,
            "pgsplit_checkout_failures",
            "Server connections that could not be had, by reason.",
            t.iter().flat_map(|x| {
                let n = x.name.as_str();
                [
                    ([("target", n), ("reason", "unavailable")], x.checkout_failures[0]),
                    ([("target", n), ("reason", "timeout")], x.checkout_failures[1]),
                ]
            }),
        )?;
        counter(
            e,
            "pgsplit_route_decisions",
            "Statements routed, by target and reason.",
            t.iter().flat_map(|x| {
                ROUTE_REASONS.iter().zip(x.routed).map(move |(r, v)| ([("target", x.name.as_str()), ("reason", *r)], v))
            }),
        )
    }

    /// Statements and connections pgsplit refused.
    fn encode_refusals(&self, e: &mut Enc<'_>) -> std::fmt::Result {
        counter(
            e,
            "pgsplit_refusals",
            "Statements pgsplit refused, by cause and SQLSTATE.",
            self.refusals.iter().map(|((cause, code), v)| ([("reason", *cause), ("sqlstate", *code)], *v)),
        )?;
        counter(
            e,
            "pgsplit_startup_refusals",
            "Client connections refused at startup (authentication, database, TLS, protocol), by SQLSTATE.",
            self.startup_refusals.iter().map(|(code, v)| ([("sqlstate", *code)], *v)),
        )
    }

    /// The route cache's lookups and size.
    fn encode_cache(&self, e: &mut Enc<'_>) -> std::fmt::Result {
        let c = &self.cache;
        counter(e, "pgsplit_route_cache_hits", "Route cache lookups answered from the cache.", [(NO_LABELS, c.hits)])?;
        counter(e, "pgsplit_route_cache_misses", "Route cache lookups that analysed the text.", [(NO_LABELS, c.misses)])?;
        gauge(e, "pgsplit_route_cache_entries", "Analyses held in the route cache.", [(NO_LABELS, c.entries as i64)])?;
        gauge(e, "pgsplit_route_cache_bytes", "Bytes held by the route cache.", [(NO_LABELS, c.bytes as i64)])?;
        let Some(s) = &self.session_cache else { return Ok(()) };
        let counters: [(&str, &str, u64); 8] = [
            ("pgsplit_session_cache_hits", "Reads answered from the session cache.", s.hits),
            ("pgsplit_session_cache_misses", "Cacheable reads the session cache did not hold.", s.misses),
            ("pgsplit_session_cache_inserts", "Replies kept by the session cache.", s.inserts),
            ("pgsplit_session_cache_evictions", "Entries dropped to stay within the byte budget.", s.evictions),
            (
                "pgsplit_session_cache_invalidations",
                "Entries dropped by writes, notifications or a lost LISTEN.",
                s.invalidations,
            ),
            ("pgsplit_session_cache_expired", "Entries found past their TTL.", s.expired),
            (
                "pgsplit_session_cache_not_kept",
                "Replies of misses not kept (too large, not a clean read, raced by a write).",
                s.not_kept,
            ),
            ("pgsplit_session_cache_notifications", "Notifications received from cached tables' triggers.", s.notifications),
        ];
        for (name, help, v) in counters {
            counter(e, name, help, [(NO_LABELS, v)])?;
        }
        gauge(e, "pgsplit_session_cache_entries", "Entries held by the session cache.", [(NO_LABELS, s.entries as i64)])?;
        gauge(e, "pgsplit_session_cache_bytes", "Bytes held by the session cache.", [(NO_LABELS, s.bytes as i64)])?;
        gauge(e, "pgsplit_session_cache_max_bytes", "The session cache's byte budget.", [(NO_LABELS, s.max_bytes as i64)])
    }

    /// Each target's checkout waits and request durations.
    fn encode_latencies(&self, e: &mut Enc<'_>) -> std::fmt::Result {
        let t = &self.targets;
        histogram(
            e,
            "pgsplit_checkout_wait_seconds",
            "Time to get a server connection.",
            t.iter().map(|x| (x.name.as_str(), &x.checkout_wait)),
        )?;
        histogram(
            e,
            "pgsplit_query_duration_seconds",
            "Time from sending a request to its ReadyForQuery.",
            t.iter().map(|x| (x.name.as_str(), &x.query_latency)),
        )
    }

    /// The connection alert of each target that has `alert_connections`.
    fn encode_alerts(&self, e: &mut Enc<'_>) -> std::fmt::Result {
        let t = &self.targets;
        gauge(
            e,
            "pgsplit_connection_alert_threshold",
            "alert_connections of the target (targets without one are not listed).",
            t.iter().filter_map(|x| x.alert_threshold.map(|v| ([("target", x.name.as_str())], i64::from(v)))),
        )?;
        gauge(
            e,
            "pgsplit_connection_alert",
            "1 while the target's server connections stay above alert_connections.",
            t.iter().filter(|x| x.alert_threshold.is_some()).map(|x| ([("target", x.name.as_str())], i64::from(x.alert_raised))),
        )
    }
}

impl Snapshot {
    /// PgBouncer's `SHOW STATS` totals per target, under the PgBouncer exporter's names (`pgbouncer_stats_*`, here
    /// `pgsplit_stats_*`): transactions apart from statements, bytes each way, time in transactions, in statements
    /// and waiting for a server connection.
    fn encode_stats(&self, e: &mut Enc<'_>) -> std::fmt::Result {
        let t = &self.targets;
        let per = |f: fn(&super::Totals) -> u64| t.iter().map(move |x| ([("target", x.name.as_str())], f(&x.totals)));
        let secs = |f: fn(&super::Totals) -> u64| per(f).map(|(l, us)| (l, us as f64 / 1e6));
        counter(
            e,
            "pgsplit_stats_sql_transactions_pooled",
            "SQL transactions run on the target (PgBouncer's total_xact_count).",
            per(|x| x.xact_count),
        )?;
        counter(
            e,
            "pgsplit_stats_queries_pooled",
            "SQL statements (a Query, or an extended batch) run on the target (PgBouncer's total_query_count).",
            per(|x| x.query_count),
        )?;
        counter(e, "pgsplit_stats_received_bytes", "Bytes received from clients for the target.", per(|x| x.bytes_received))?;
        counter(e, "pgsplit_stats_sent_bytes", "Bytes sent to clients from the target.", per(|x| x.bytes_sent))?;
        counter(
            e,
            "pgsplit_stats_server_in_transaction_seconds",
            "Time server connections of the target spent in transactions.",
            secs(|x| x.xact_time_us),
        )?;
        counter(
            e,
            "pgsplit_stats_queries_duration_seconds",
            "Time statements spent running on the target.",
            secs(|x| x.query_time_us),
        )?;
        counter(
            e,
            "pgsplit_stats_client_wait_seconds",
            "Time clients spent waiting for a server connection of the target.",
            secs(|x| x.wait_time_us),
        )
    }

    /// The build, and the limits configured: each pool's maximum, `max_client_conn`.
    fn encode_build_and_limits(&self, e: &mut Enc<'_>) -> std::fmt::Result {
        gauge(
            e,
            "pgsplit_build_info",
            "pgsplit's build: its version (always 1).",
            [([("version", env!("CARGO_PKG_VERSION"))], 1)],
        )?;
        gauge(
            e,
            "pgsplit_databases_pool_size",
            "Server connections the target's pool may open (its pool.max; PgBouncer's pool_size).",
            self.targets.iter().map(|x| ([("target", x.name.as_str())], i64::from(x.pool_max))),
        )?;
        gauge(
            e,
            "pgsplit_config_max_client_connections",
            "Clients that may be logged in at once (max_client_conn).",
            [(NO_LABELS, i64::try_from(self.max_client_conn).unwrap_or(i64::MAX))],
        )
    }

    /// The process's CPU, memory, descriptors and start time, as every Prometheus client library names them.
    fn encode_os_process(&self, e: &mut Enc<'_>) -> std::fmt::Result {
        let Some(p) = self.process else { return Ok(()) };
        let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        counter(e, "process_cpu_seconds", "Total user and system CPU time spent in seconds.", [(NO_LABELS, p.cpu_seconds)])?;
        gauge(e, "process_resident_memory_bytes", "Resident memory size in bytes.", [(NO_LABELS, int(p.resident_bytes))])?;
        gauge(e, "process_virtual_memory_bytes", "Virtual memory size in bytes.", [(NO_LABELS, int(p.virtual_bytes))])?;
        gauge(e, "process_open_fds", "Number of open file descriptors.", [(NO_LABELS, int(p.open_fds))])?;
        gauge(e, "process_max_fds", "Maximum number of open file descriptors.", [(NO_LABELS, int(p.max_fds))])?;
        gauge(e, "process_threads", "Number of OS threads in the process.", [(NO_LABELS, int(p.threads))])?;
        let mut m = e.encode_descriptor(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            None,
            MetricType::Gauge,
        )?;
        m.encode_family(&NO_LABELS)?.encode_gauge(&p.start_time_seconds)
    }
}
