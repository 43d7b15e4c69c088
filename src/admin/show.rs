//! The SHOW family of the admin console: one function per kind, each a table read from the App (nothing changes).
//!
//! PgBouncer's views keep PgBouncer 1.18's column names, order and types (`tests/admin_pgbouncer.rs` compares them
//! with a real PgBouncer's), mapped onto pgsplit: a PgBouncer database is a pgsplit pool (a target, or a database
//! reached through `any_database`), its user the login the pool's connections use. pgsplit's own views (`TARGETS`,
//! `ROUTES`, `MODE`, `CACHE`) have their own names.

use std::time::SystemTime;

use crate::app::App;
use crate::backend::Backend;
use crate::metrics::{TargetSnapshot, Totals};
use crate::protocol::encode::PgError;
use crate::session::errors;

use super::{Table, Type};

/// What a SHOW asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// PgBouncer's: a row per pool (target, or `any_database` database) and login.
    Pools,
    /// PgBouncer's: a row per logged-in client.
    Clients,
    /// PgBouncer's: a row per server connection.
    Servers,
    /// PgBouncer's: totals and averages per pool.
    Stats,
    /// PgBouncer's: totals per pool.
    StatsTotals,
    /// PgBouncer's: averages over the last `stats_period` per pool.
    StatsAverages,
    /// PgBouncer's: each pool's address, login and limits.
    Databases,
    /// PgBouncer's: the configured users and their `pool_mode`.
    Users,
    /// PgBouncer's: counts of pgsplit's lists (pools, clients, servers).
    Lists,
    /// PgBouncer's: the configuration in force, secrets redacted, with defaults and whether RELOAD changes it.
    Config,
    /// PgBouncer's: the version.
    Version,
    /// pgsplit's: each target's address, TLS, upstream, health and counters.
    Targets,
    /// pgsplit's: which target each routed schema goes to, and the default and single targets.
    Routes,
    /// pgsplit's: the routing mode in force.
    Mode,
    /// pgsplit's: the session cache's figures (SPEC §11).
    Cache,
}

/// The SHOW items, as SHOW HELP and errors list them.
pub const SHOW_ITEMS: &str =
    "HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION|LISTS|STATS|STATS_TOTALS|STATS_AVERAGES|TARGETS|ROUTES|MODE|CACHE";

impl Show {
    /// The kind a (lower-case) word names; another word is a 42601.
    pub fn parse(what: &str) -> Result<Show, PgError> {
        Ok(match what {
            "pools" => Show::Pools,
            "clients" => Show::Clients,
            "servers" => Show::Servers,
            "stats" => Show::Stats,
            "stats_totals" => Show::StatsTotals,
            "stats_averages" => Show::StatsAverages,
            "databases" => Show::Databases,
            "users" => Show::Users,
            "lists" => Show::Lists,
            "config" => Show::Config,
            "version" => Show::Version,
            "targets" => Show::Targets,
            "routes" => Show::Routes,
            "mode" => Show::Mode,
            "cache" => Show::Cache,
            other => {
                return Err(errors::admin_syntax(format!("unknown SHOW item: {other}")).with_hint(format!("SHOW {SHOW_ITEMS}")))
            }
        })
    }
}

/// The table a SHOW answers.
pub fn table(app: &App, what: Show) -> Table {
    match what {
        Show::Pools => pools(app),
        Show::Clients => clients(app),
        Show::Servers => servers(app),
        Show::Stats => stats(app),
        Show::StatsTotals => stats_part(app, |b| b.stats.totals()),
        Show::StatsAverages => stats_part(app, |b| b.stats.averages()),
        Show::Databases => databases(app),
        Show::Users => users(app),
        Show::Lists => lists(app),
        Show::Config => super::config::table(app),
        Show::Version => Table {
            columns: &[("version", Type::Text)],
            rows: vec![vec![text(format!("PgBouncer 1.18.0 (pgsplit {})", env!("CARGO_PKG_VERSION")))]],
        },
        Show::Targets => targets(app),
        Show::Routes => routes(app),
        Show::Mode => Table { columns: &[("mode", Type::Text)], rows: vec![vec![text(app.mode().as_str())]] },
        Show::Cache => cache(app),
    }
}

/// A text value.
pub(super) fn text(v: impl Into<String>) -> Option<String> {
    Some(v.into())
}

/// A number.
pub(super) fn num(v: impl std::fmt::Display) -> Option<String> {
    Some(v.to_string())
}

/// PgBouncer's 0/1 for a flag.
fn flag(b: bool) -> Option<String> {
    num(u8::from(b))
}

/// A moment as PgBouncer shows it: `2026-12-05 04:22:35 UTC`.
fn time(t: SystemTime) -> Option<String> {
    let iso = crate::http::health::rfc3339(t);
    Some(format!("{} UTC", iso.get(..19).unwrap_or(&iso).replace('T', " ")))
}

/// Every pool: the targets in configuration order, then the databases `any_database` made, by name.
fn each_pool(app: &App, mut f: impl FnMut(&str, &Backend)) {
    for b in app.backends() {
        f(b.name(), b);
    }
    for (name, b) in app.database_pools() {
        f(&name, &b);
    }
}

/// The pool mode of a pool's sessions (the global one; a user's own is in SHOW USERS).
fn pool_mode(app: &App) -> Option<String> {
    text(app.config().pool_mode.as_str())
}

/// SHOW POOLS: PgBouncer's columns, a row per pool and login (the URL's first, then each user's own login once
/// used); a pool's clients are the transactions running or waiting on it (the waiting ones, queued for the
/// target whatever their login, on the URL login's row), its servers those of that login.
fn pools(app: &App) -> Table {
    const COLUMNS: &[(&str, Type)] = &[
        ("database", Type::Text),
        ("user", Type::Text),
        ("cl_active", Type::Int4),
        ("cl_waiting", Type::Int4),
        ("cl_active_cancel_req", Type::Int4),
        ("cl_waiting_cancel_req", Type::Int4),
        ("sv_active", Type::Int4),
        ("sv_active_cancel", Type::Int4),
        ("sv_being_canceled", Type::Int4),
        ("sv_idle", Type::Int4),
        ("sv_used", Type::Int4),
        ("sv_tested", Type::Int4),
        ("sv_login", Type::Int4),
        ("maxwait", Type::Int4),
        ("maxwait_us", Type::Int4),
        ("pool_mode", Type::Text),
    ];
    let mode = pool_mode(app);
    let mut rows = Vec::new();
    each_pool(app, |name, b| {
        let (open, idle) = b.pool_state();
        let opening = open.saturating_sub(idle).saturating_sub(b.in_use());
        let waiting = TargetSnapshot::of(b.name(), &b.stats).waiting;
        let wait = b.oldest_wait().unwrap_or_default();
        let servers = b.spec.servers.list();
        for (id, login) in b.logins().iter().enumerate() {
            let first = id == 0;
            let of_login: Vec<_> = servers.iter().filter(|s| s.details.login as usize == id).collect();
            let active = of_login.iter().filter(|s| s.active.load(std::sync::atomic::Ordering::Relaxed)).count();
            let either = |v: u64| if first { num(v) } else { num(0) };
            rows.push(vec![
                text(name),
                text(login.shown()),
                num(active),
                either(waiting.max(0) as u64),
                num(0),
                num(0),
                num(active),
                num(0),
                num(0),
                num(of_login.len() - active),
                num(0),
                num(0),
                either(u64::from(opening)),
                either(wait.as_secs()),
                either(u64::from(wait.subsec_micros())),
                mode.clone(),
            ]);
        }
    });
    Table { columns: COLUMNS, rows }
}

/// The columns of SHOW CLIENTS and SHOW SERVERS (PgBouncer's, the same for both).
const SOCKET_COLUMNS: &[(&str, Type)] = &[
    ("type", Type::Text),
    ("user", Type::Text),
    ("database", Type::Text),
    ("state", Type::Text),
    ("addr", Type::Text),
    ("port", Type::Int4),
    ("local_addr", Type::Text),
    ("local_port", Type::Int4),
    ("connect_time", Type::Text),
    ("request_time", Type::Text),
    ("wait", Type::Int4),
    ("wait_us", Type::Int4),
    ("close_needed", Type::Int4),
    ("ptr", Type::Text),
    ("link", Type::Text),
    ("remote_pid", Type::Int4),
    ("tls", Type::Text),
    ("application_name", Type::Text),
];

/// A client's address as PgBouncer shows it: the IP address, or `unix` for a client of the Unix-domain socket.
fn addr_of(ip: Option<std::net::SocketAddr>, unix_socket: Option<&str>) -> String {
    match (ip, unix_socket) {
        (Some(a), _) => a.ip().to_string(),
        (None, Some(_)) => "unix".to_owned(),
        (None, None) => String::new(),
    }
}

/// A client's port as PgBouncer shows it: the TCP port, or for a client of the Unix-domain socket, the port its
/// name carries (`.s.PGSQL.6432`).
fn port_of(ip: Option<std::net::SocketAddr>, unix_socket: Option<&str>) -> i64 {
    match (ip, unix_socket) {
        (Some(a), _) => i64::from(a.port()),
        (None, Some(name)) => name.rsplit(".s.PGSQL.").next().and_then(|p| p.parse::<u16>().ok()).map_or(0, i64::from),
        (None, None) => 0,
    }
}

/// SHOW CLIENTS: every logged-in client, `active` as on PgBouncer (logged in; `active_cancel_req` while its cancel
/// is forwarded); `link` names the pool a statement of it runs on now; `ptr` and `remote_pid` are the process id
/// pgsplit gave it (its cancel key).
fn clients(app: &App) -> Table {
    let table = app.table();
    let rows = app
        .cancels()
        .all()
        .into_iter()
        .filter_map(|(pid, slot)| {
            let info = slot.info.get()?;
            let (state, link) = match slot.running.peek() {
                crate::cancel::InFlight::Running(r) => ("active", table.name(r.target).to_owned()),
                crate::cancel::InFlight::Nothing => ("active", String::new()),
                crate::cancel::InFlight::Cancelling => ("active_cancel_req", String::new()),
            };
            Some(vec![
                text("C"),
                text(info.user.as_str()),
                text(info.database.as_str()),
                text(state),
                text(addr_of(info.peer_addr, info.unix_socket.as_deref())),
                num(port_of(info.peer_addr, info.unix_socket.as_deref())),
                text(addr_of(info.local_addr, info.unix_socket.as_deref())),
                num(port_of(info.local_addr, info.unix_socket.as_deref())),
                time(info.since),
                time(info.since),
                num(0),
                num(0),
                num(0),
                text(format!("{pid:x}")),
                text(link),
                num(pid),
                text(info.tls_version.as_str()),
                text(info.application_name.as_str()),
            ])
        })
        .collect();
    Table { columns: SOCKET_COLUMNS, rows }
}

/// SHOW SERVERS: every server connection of every pool; `active` while lent to a client, else `idle`;
/// `close_needed` after RECONNECT until it closes; `remote_pid` is the server's process id.
fn servers(app: &App) -> Table {
    let mut rows = Vec::new();
    each_pool(app, |name, b| {
        let generation = b.spec.servers.generation();
        for s in b.spec.servers.list() {
            let active = s.active.load(std::sync::atomic::Ordering::Relaxed);
            rows.push(vec![
                text("S"),
                text(s.details.user.as_str()),
                text(name),
                text(if active { "active" } else { "idle" }),
                text(s.details.addr.as_str()),
                num(s.details.port),
                text(s.details.local.map(|a| a.ip().to_string()).unwrap_or_default()),
                num(s.details.local.map_or(0, |a| a.port())),
                time(s.connect_time),
                time(s.request_time()),
                num(0),
                num(0),
                flag(s.generation < generation),
                text(format!("{:x}", s.id)),
                text(""),
                num(s.details.remote_pid),
                text(s.details.tls.as_str()),
                text("pgsplit"),
            ]);
        }
    });
    Table { columns: SOCKET_COLUMNS, rows }
}

/// SHOW STATS: each pool's totals, then its averages over the last `stats_period`.
fn stats(app: &App) -> Table {
    const COLUMNS: &[(&str, Type)] = &[
        ("database", Type::Text),
        ("total_xact_count", Type::Numeric),
        ("total_query_count", Type::Numeric),
        ("total_received", Type::Numeric),
        ("total_sent", Type::Numeric),
        ("total_xact_time", Type::Numeric),
        ("total_query_time", Type::Numeric),
        ("total_wait_time", Type::Numeric),
        ("avg_xact_count", Type::Numeric),
        ("avg_query_count", Type::Numeric),
        ("avg_recv", Type::Numeric),
        ("avg_sent", Type::Numeric),
        ("avg_xact_time", Type::Numeric),
        ("avg_query_time", Type::Numeric),
        ("avg_wait_time", Type::Numeric),
    ];
    let mut rows = Vec::new();
    each_pool(app, |name, b| {
        let mut row = vec![text(name)];
        row.extend(figures(&b.stats.totals()));
        row.extend(figures(&b.stats.averages()));
        rows.push(row);
    });
    Table { columns: COLUMNS, rows }
}

/// SHOW STATS_TOTALS and STATS_AVERAGES: one set of figures per pool.
fn stats_part(app: &App, part: impl Fn(&Backend) -> Totals) -> Table {
    const COLUMNS: &[(&str, Type)] = &[
        ("database", Type::Text),
        ("xact_count", Type::Numeric),
        ("query_count", Type::Numeric),
        ("bytes_received", Type::Numeric),
        ("bytes_sent", Type::Numeric),
        ("xact_time", Type::Numeric),
        ("query_time", Type::Numeric),
        ("wait_time", Type::Numeric),
    ];
    let mut rows = Vec::new();
    each_pool(app, |name, b| {
        let mut row = vec![text(name)];
        row.extend(figures(&part(b)));
        rows.push(row);
    });
    Table { columns: COLUMNS, rows }
}

/// The seven figures of a stats row, in PgBouncer's order.
fn figures(t: &Totals) -> [Option<String>; 7] {
    [
        num(t.xact_count),
        num(t.query_count),
        num(t.bytes_received),
        num(t.bytes_sent),
        num(t.xact_time_us),
        num(t.query_time_us),
        num(t.wait_time_us),
    ]
}

/// SHOW DATABASES: each pool's server, login and limits (`max_connections` is the pool's `max`, which holds for
/// the target as a whole).
fn databases(app: &App) -> Table {
    const COLUMNS: &[(&str, Type)] = &[
        ("name", Type::Text),
        ("host", Type::Text),
        ("port", Type::Int4),
        ("database", Type::Text),
        ("force_user", Type::Text),
        ("pool_size", Type::Int4),
        ("min_pool_size", Type::Int4),
        ("reserve_pool", Type::Int4),
        ("pool_mode", Type::Text),
        ("max_connections", Type::Int4),
        ("current_connections", Type::Int4),
        ("paused", Type::Int4),
        ("disabled", Type::Int4),
    ];
    let mode = pool_mode(app);
    let mut rows = Vec::new();
    each_pool(app, |name, b| {
        let s = &b.spec;
        rows.push(vec![
            text(name),
            text(s.host.as_str()),
            num(s.port),
            text(s.dbname.as_str()),
            text(s.user.as_str()),
            num(b.max()),
            num(b.min()),
            num(0),
            mode.clone(),
            num(b.max()),
            num(b.pool_state().0),
            flag(b.is_paused()),
            flag(b.is_disabled()),
        ]);
    });
    Table { columns: COLUMNS, rows }
}

/// SHOW USERS: the configured users and their own `pool_mode` (NULL: the global one).
fn users(app: &App) -> Table {
    let config = app.config();
    let rows = config.users.iter().map(|u| vec![text(u.name.as_str()), u.pool_mode.map(|m| m.as_str().to_owned())]).collect();
    Table { columns: &[("name", Type::Text), ("pool_mode", Type::Text)], rows }
}

/// SHOW LISTS: PgBouncer's list counts (pgsplit resolves no DNS itself: those are 0), then pgsplit's own: pinned
/// sessions and route cache entries.
fn lists(app: &App) -> Table {
    let mut pools = 0usize;
    let (mut idle, mut used) = (0u32, 0u32);
    each_pool(app, |_, b| {
        pools += 1;
        idle += b.pool_state().1;
        used += b.in_use();
    });
    let clients = usize::try_from(app.metrics().clients()).unwrap_or(0);
    let config = app.config();
    let rows = [
        ("databases", pools),
        ("users", config.users.len()),
        ("pools", pools),
        ("free_clients", config.max_client_conn.saturating_sub(clients)),
        ("used_clients", clients),
        ("login_clients", 0),
        ("free_servers", idle as usize),
        ("used_servers", used as usize),
        ("dns_names", 0),
        ("dns_zones", 0),
        ("dns_queries", 0),
        ("dns_pending", 0),
        // pgsplit's own lists.
        ("pinned_sessions", app.pinned_sessions().load(std::sync::atomic::Ordering::Relaxed)),
        ("route_cache_entries", app.cache().stats().entries),
    ];
    let rows = rows.into_iter().map(|(k, v)| vec![text(k), num(v)]).collect();
    Table { columns: &[("list", Type::Text), ("items", Type::Int4)], rows }
}

/// SHOW TARGETS: pgsplit's view of each target: address, login, TLS, upstream, pool and counters.
fn targets(app: &App) -> Table {
    const COLUMNS: &[(&str, Type)] = &[
        ("target", Type::Text),
        ("host", Type::Text),
        ("port", Type::Int4),
        ("database", Type::Text),
        ("user", Type::Text),
        ("tls", Type::Text),
        ("upstream", Type::Text),
        ("max", Type::Int4),
        ("connections", Type::Int4),
        ("idle", Type::Int4),
        ("in_use", Type::Int4),
        ("waiting", Type::Int4),
        ("up", Type::Text),
        ("paused", Type::Text),
        ("disabled", Type::Text),
        ("queries", Type::Int8),
        ("errors", Type::Int8),
        ("routed", Type::Int8),
        ("checkout_failures", Type::Int8),
    ];
    let config = app.config();
    let rows = app
        .backends()
        .iter()
        .zip(&config.targets)
        .map(|(b, t)| {
            let (connections, idle) = b.pool_state();
            let s = TargetSnapshot::of(b.name(), &b.stats);
            vec![
                text(b.name()),
                text(t.server.host.as_str()),
                num(t.server.port),
                text(t.server.dbname.as_str()),
                text(t.server.user.as_str()),
                text(format!("{:?}", t.tls.mode).to_lowercase()),
                text(format!("{:?}", t.upstream).to_lowercase()),
                num(b.max()),
                num(connections),
                num(idle),
                num(b.in_use()),
                num(s.waiting),
                num(b.is_up()),
                num(b.is_paused()),
                num(b.is_disabled()),
                num(s.queries),
                num(s.errors),
                num(s.routed.iter().sum::<u64>()),
                num(s.checkout_failures.iter().sum::<u64>()),
            ]
        })
        .collect();
    Table { columns: COLUMNS, rows }
}

/// SHOW ROUTES: the routed schemas in order, then the default and single-mode targets.
fn routes(app: &App) -> Table {
    let table = app.table();
    let mut rows: Vec<Vec<Option<String>>> =
        table.schemas.iter().map(|(schema, t)| vec![text(schema.as_str()), text(table.name(*t))]).collect();
    rows.sort();
    rows.push(vec![text("(default)"), text(table.name(table.default_target))]);
    rows.push(vec![text("(single mode)"), text(table.name(app.single_target()))]);
    Table { columns: &[("schema", Type::Text), ("target", Type::Text)], rows }
}

/// SHOW CACHE: one row of the session cache's figures (none when no table is cached), and the tables with the
/// state of their target's LISTEN connection.
fn cache(app: &App) -> Table {
    const COLUMNS: &[(&str, Type)] = &[
        ("hits", Type::Int8),
        ("misses", Type::Int8),
        ("hit_rate", Type::Numeric),
        ("entries", Type::Int8),
        ("bytes", Type::Int8),
        ("max_bytes", Type::Int8),
        ("inserts", Type::Int8),
        ("evictions", Type::Int8),
        ("invalidations", Type::Int8),
        ("expired", Type::Int8),
        ("not_kept", Type::Int8),
        ("notifications", Type::Int8),
        ("tables", Type::Text),
    ];
    let Some(c) = app.session_cache() else { return Table { columns: COLUMNS, rows: Vec::new() } };
    let s = c.snapshot();
    let tables: Vec<String> = c
        .tables()
        .iter()
        .map(|t| {
            let listening = if !c.listens() {
                "ttl only"
            } else if c.is_listening(t.target) {
                "listening"
            } else {
                "not listening"
            };
            format!("{}.{} ({}, ttl {:?}, {listening})", t.schema, t.name, app.table().name(t.target), t.ttl)
        })
        .collect();
    let row = vec![
        num(s.hits),
        num(s.misses),
        text(format!("{:.4}", s.hit_rate())),
        num(s.entries),
        num(s.bytes),
        num(s.max_bytes),
        num(s.inserts),
        num(s.evictions),
        num(s.invalidations),
        num(s.expired),
        num(s.not_kept),
        num(s.notifications),
        text(tables.join(", ")),
    ];
    Table { columns: COLUMNS, rows: vec![row] }
}
