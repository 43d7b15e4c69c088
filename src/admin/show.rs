//! The SHOW family of the admin console: one function per kind, each a table read from the App (nothing changes).

use crate::app::App;
use crate::metrics::TargetSnapshot;
use crate::protocol::encode::PgError;
use crate::session::errors;

use super::Table;

/// What a SHOW asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// Each target's pool: size, connections, use, waiters, health, pause.
    Pools,
    /// Each logged-in client and the target its statement runs on.
    Clients,
    /// Each target's address, login, TLS and upstream.
    Servers,
    /// Per-target counters, pinned sessions and the route cache.
    Stats,
    /// Which target each routed schema goes to, and the default and single targets.
    Routes,
    /// The configuration in force, secrets redacted.
    Config,
    /// The routing mode in force.
    Mode,
    /// The session cache's figures (SPEC §11).
    Cache,
}

impl Show {
    /// The kind a (lower-case) word names; another word is a 42601.
    pub fn parse(what: &str) -> Result<Show, PgError> {
        Ok(match what {
            "pools" => Show::Pools,
            "clients" => Show::Clients,
            "servers" => Show::Servers,
            "stats" => Show::Stats,
            "routes" => Show::Routes,
            "config" => Show::Config,
            "mode" => Show::Mode,
            "cache" => Show::Cache,
            other => {
                return Err(errors::admin_syntax(format!("unknown SHOW item: {other}"))
                    .with_hint("SHOW POOLS|CLIENTS|SERVERS|STATS|ROUTES|CONFIG|MODE|CACHE"))
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
        Show::Routes => routes(app),
        Show::Config => Table { columns: &["key", "value"], rows: config_rows(app) },
        Show::Mode => Table { columns: &["mode"], rows: vec![vec![app.mode().as_str().to_owned()]] },
        Show::Cache => cache(app),
    }
}

/// SHOW CACHE: one row of the session cache's figures (none when no table is cached), and the tables with the
/// state of their target's LISTEN connection.
fn cache(app: &App) -> Table {
    const COLUMNS: &[&str] = &[
        "hits",
        "misses",
        "hit_rate",
        "entries",
        "bytes",
        "max_bytes",
        "inserts",
        "evictions",
        "invalidations",
        "expired",
        "not_kept",
        "notifications",
        "tables",
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
    let n = |v: u64| v.to_string();
    let row = vec![
        n(s.hits),
        n(s.misses),
        format!("{:.4}", s.hit_rate()),
        n(s.entries),
        n(s.bytes),
        n(s.max_bytes),
        n(s.inserts),
        n(s.evictions),
        n(s.invalidations),
        n(s.expired),
        n(s.not_kept),
        n(s.notifications),
        tables.join(", "),
    ];
    Table { columns: COLUMNS, rows: vec![row] }
}

/// SHOW POOLS: a row per target, then one per database reached through `any_database` (named `*/database`).
fn pools(app: &App) -> Table {
    let made = app.database_pools();
    let rows = app
        .backends()
        .iter()
        .map(|b| (b.name().to_owned(), b))
        .chain(made.iter().map(|(name, b)| (format!("*/{name}"), &**b)))
        .map(|(name, b)| {
            let (connections, idle) = b.pool_state();
            let s = TargetSnapshot::of(b.name(), &b.stats);
            vec![
                name,
                b.max().to_string(),
                connections.to_string(),
                idle.to_string(),
                b.in_use().to_string(),
                s.waiting.to_string(),
                b.is_up().to_string(),
                b.is_paused().to_string(),
            ]
        })
        .collect();
    Table { columns: &["target", "max", "connections", "idle", "in_use", "waiting", "up", "paused"], rows }
}

/// SHOW SERVERS.
fn servers(app: &App) -> Table {
    let config = app.config();
    let rows = app
        .backends()
        .iter()
        .zip(&config.targets)
        .map(|(b, t)| {
            vec![
                b.name().to_owned(),
                t.server.host.clone(),
                t.server.port.to_string(),
                t.server.dbname.clone(),
                t.server.user.clone(),
                format!("{:?}", t.tls.mode).to_lowercase(),
                format!("{:?}", t.upstream).to_lowercase(),
                b.pool_state().0.to_string(),
                b.is_up().to_string(),
            ]
        })
        .collect();
    Table { columns: &["target", "host", "port", "database", "user", "tls", "upstream", "connections", "up"], rows }
}

/// SHOW CLIENTS: the clients that have logged in, with the target of the statement each has in flight.
fn clients(app: &App) -> Table {
    let table = app.table();
    let rows = app
        .cancels()
        .all()
        .into_iter()
        .filter_map(|(pid, slot)| {
            let info = slot.info.get()?;
            let running = match slot.running.peek() {
                crate::cancel::InFlight::Running(r) => table.name(r.target).to_owned(),
                crate::cancel::InFlight::Nothing => String::new(),
                crate::cancel::InFlight::Cancelling => "(cancel in progress)".to_owned(),
            };
            Some(vec![
                pid.to_string(),
                info.user.clone(),
                info.database.clone(),
                info.peer.clone(),
                info.tls.to_string(),
                crate::http::health::rfc3339(info.since),
                running,
            ])
        })
        .collect();
    Table { columns: &["pid", "user", "database", "peer", "tls", "connected_since", "running_on"], rows }
}

/// SHOW STATS: a row per target, then the pinned sessions and the route cache.
fn stats(app: &App) -> Table {
    let cache = app.cache().stats();
    let mut rows: Vec<Vec<String>> = app
        .backends()
        .iter()
        .map(|b| {
            let s = TargetSnapshot::of(b.name(), &b.stats);
            let failures: u64 = s.checkout_failures.iter().sum();
            let routed: u64 = s.routed.iter().sum();
            vec![b.name().to_owned(), s.queries.to_string(), s.errors.to_string(), routed.to_string(), failures.to_string()]
        })
        .collect();
    let pinned = app.pinned_sessions().load(std::sync::atomic::Ordering::Relaxed);
    rows.push(vec!["(pinned sessions)".into(), pinned.to_string(), String::new(), String::new(), String::new()]);
    rows.push(vec![
        "(route cache)".into(),
        format!("{} hits", cache.hits),
        format!("{} misses", cache.misses),
        format!("{} entries", cache.entries),
        format!("{} bytes", cache.bytes),
    ]);
    Table { columns: &["target", "queries", "errors", "routed", "checkout_failures"], rows }
}

/// SHOW ROUTES: the routed schemas in order, then the default and single-mode targets.
fn routes(app: &App) -> Table {
    let table = app.table();
    let mut rows: Vec<Vec<String>> =
        table.schemas.iter().map(|(schema, t)| vec![schema.clone(), table.name(*t).to_owned()]).collect();
    rows.sort();
    rows.push(vec!["(default)".into(), table.name(table.default_target).to_owned()]);
    rows.push(vec!["(single mode)".into(), table.name(app.single_target()).to_owned()]);
    Table { columns: &["schema", "target"], rows }
}

/// SHOW CONFIG: the configuration in force, secrets redacted (passwords never appear).
fn config_rows(app: &App) -> Vec<Vec<String>> {
    let c = app.config();
    let mut rows = vec![
        ("listen".to_owned(), c.listen.clone()),
        ("http".into(), c.http.clone().unwrap_or_default()),
        ("mode".into(), app.mode().as_str().to_owned()),
        ("mode (file)".into(), c.mode.as_str().to_owned()),
        ("database".into(), c.database.clone()),
        ("default_target".into(), c.default_target.clone()),
        ("single_target".into(), c.single_target.clone()),
        ("tls.mode".into(), format!("{:?}", c.tls.mode).to_lowercase()),
    ];
    for t in &c.targets {
        let a = &t.server;
        let secret = if a.password.is_some() { ":********" } else { "" };
        let p = |k: &str| format!("targets.{}.{k}", t.name);
        rows.push((p("url"), format!("postgresql://{}{secret}@{}:{}/{}", a.user, a.host, a.port, a.dbname)));
        rows.push((p("tls"), format!("{:?}", t.tls.mode).to_lowercase()));
        rows.push((p("upstream"), format!("{:?}", t.upstream).to_lowercase()));
        rows.push((p("schemas"), t.schemas.join(", ")));
        rows.push((p("pool.max"), t.pool.max.to_string()));
        rows.push((p("pool.min"), t.pool.min.to_string()));
        rows.push((p("pool.checkout_timeout"), format!("{:?}", t.pool.checkout_timeout)));
        rows.push((p("alert_connections"), t.alert_connections.map(|a| a.to_string()).unwrap_or_default()));
    }
    rows.push(("users".into(), c.users.iter().map(|u| u.name.as_str()).collect::<Vec<_>>().join(", ")));
    rows.push(("admin_users".into(), c.admin_users.join(", ")));
    rows.push(("route_cache_bytes".into(), c.route_cache_bytes.to_string()));
    rows.push(("catalog_refresh".into(), format!("{:?}", c.catalog_refresh)));
    rows.push(("shutdown_timeout".into(), format!("{:?}", c.shutdown_timeout)));
    rows.push(("client_login_timeout".into(), format!("{:?}", c.client_login_timeout)));
    rows.push(("client_first_packet_timeout".into(), format!("{:?}", c.client_first_packet_timeout)));
    rows.push(("max_client_conn".into(), c.max_client_conn.to_string()));
    rows.push(("max_login_conn".into(), c.max_login_conn.to_string()));
    rows.into_iter().map(|(k, v)| vec![k, v]).collect()
}
