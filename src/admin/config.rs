//! SHOW CONFIG: the configuration in force as PgBouncer's console shows its own (`key`, `value`, `default`,
//! `changeable`: whether RELOAD applies a change), secrets redacted: passwords never appear.

use std::time::Duration;

use crate::app::App;
use crate::config::validate as v;
use crate::config::PoolConfig;

use super::show::text;
use super::{Table, Type};

/// Keys a RELOAD cannot change (`app::reload::needs_restart`, and what is read once at start).
const FIXED: &[&str] = &[
    "listen",
    "http",
    "database",
    "tls.mode",
    "workers",
    "stats_period",
    "cache",
    "listen_backlog",
    "so_reuseport",
    "unix_socket_dir",
    "unix_socket_mode",
    "mode_store",
    "server_lifetime",
    "server_idle_timeout",
];

/// The table.
pub fn table(app: &App) -> Table {
    let c = app.config();
    let d = |x: Duration| format!("{x:?}");
    let mut rows: Vec<(String, String, String)> = vec![
        ("listen".into(), c.listen.clone(), String::new()),
        ("http".into(), c.http.clone().unwrap_or_default(), String::new()),
        ("mode".into(), app.mode().as_str().to_owned(), "split".into()),
        ("mode (file)".into(), c.mode.as_str().to_owned(), "split".into()),
        ("database".into(), c.database.clone(), "handled".into()),
        ("default_target".into(), c.default_target.clone(), String::new()),
        ("single_target".into(), c.single_target.clone(), String::new()),
        ("tls.mode".into(), format!("{:?}", c.tls.mode).to_lowercase(), "disabled".into()),
        ("pool_mode".into(), c.pool_mode.as_str().to_owned(), "transaction".into()),
        ("mode_store".into(), c.mode_store.clone().unwrap_or_default(), String::new()),
    ];
    let pool = PoolConfig::default();
    for t in &c.targets {
        let a = &t.server;
        let secret = if a.password.is_some() { ":********" } else { "" };
        let p = |k: &str| format!("targets.{}.{k}", t.name);
        rows.push((p("url"), format!("postgresql://{}{secret}@{}:{}/{}", a.user, a.host, a.port, a.dbname), String::new()));
        rows.push((p("tls"), format!("{:?}", t.tls.mode).to_lowercase(), String::new()));
        rows.push((p("upstream"), format!("{:?}", t.upstream).to_lowercase(), "postgres".into()));
        rows.push((p("schemas"), t.schemas.join(", "), String::new()));
        rows.push((p("pool.max"), t.pool.max.to_string(), pool.max.to_string()));
        rows.push((p("pool.min"), t.pool.min.to_string(), pool.min.to_string()));
        rows.push((p("pool.checkout_timeout"), d(t.pool.checkout_timeout), d(pool.checkout_timeout)));
        rows.push((
            p("pool.idle_timeout"),
            t.pool.idle_timeout.map(d).unwrap_or_default(),
            pool.idle_timeout.map(d).unwrap_or_default(),
        ));
        rows.push((p("pool.max_lifetime"), t.pool.max_lifetime.map(d).unwrap_or_default(), String::new()));
        rows.push((p("alert_connections"), t.alert_connections.map(|a| a.to_string()).unwrap_or_default(), String::new()));
    }
    rows.extend([
        ("users".into(), c.users.iter().map(|u| u.name.as_str()).collect::<Vec<_>>().join(", "), String::new()),
        ("admin_users".into(), c.admin_users.join(", "), String::new()),
        ("route_cache_bytes".into(), c.route_cache_bytes.to_string(), v::DEFAULT_ROUTE_CACHE.to_string()),
        ("catalog_refresh".into(), d(c.catalog_refresh), d(v::DEFAULT_CATALOG_REFRESH)),
        ("alert_sustain".into(), d(c.alert_sustain), d(v::DEFAULT_ALERT_SUSTAIN)),
        ("health_interval".into(), d(c.health_interval), d(v::DEFAULT_HEALTH_INTERVAL)),
        ("stats_period".into(), d(c.stats_period), d(Duration::from_secs(60))),
        ("shutdown_timeout".into(), d(c.shutdown_timeout), d(v::DEFAULT_SHUTDOWN_TIMEOUT)),
        ("client_login_timeout".into(), d(c.client_login_timeout), d(v::DEFAULT_CLIENT_LOGIN_TIMEOUT)),
        ("client_first_packet_timeout".into(), d(c.client_first_packet_timeout), d(v::DEFAULT_FIRST_PACKET_TIMEOUT)),
        ("max_client_conn".into(), c.max_client_conn.to_string(), v::DEFAULT_MAX_CLIENT_CONN.to_string()),
        ("max_login_conn".into(), c.max_login_conn.to_string(), v::DEFAULT_MAX_LOGIN_CONN.to_string()),
        ("workers".into(), c.workers.to_string(), String::new()),
    ]);
    rows.extend(limit_rows(&c.limits));
    rows.extend([("cache".into(), if c.cache.is_some() { "on" } else { "off" }.into(), "off".into())]);
    let rows = rows
        .into_iter()
        .map(|(key, value, default)| {
            let fixed =
                FIXED.contains(&key.as_str()) || key.ends_with(".url") || key.ends_with(".tls") || key.ends_with(".upstream");
            let changeable = if fixed { "no" } else { "yes" };
            vec![text(key), text(value), text(default), text(changeable)]
        })
        .collect();
    Table { columns: &[("key", Type::Text), ("value", Type::Text), ("default", Type::Text), ("changeable", Type::Text)], rows }
}

/// PgBouncer's limits and timeouts, with PgBouncer's way of showing one that is off (`0`).
fn limit_rows(l: &crate::config::Limits) -> Vec<(String, String, String)> {
    use crate::config::limits as d;
    let off = |x: Option<Duration>| x.map_or_else(|| "0".to_owned(), |x| format!("{x:?}"));
    let opt = |x: Option<Duration>| x.map(|x| format!("{x:?}")).unwrap_or_default();
    vec![
        ("client_idle_timeout".into(), off(l.client_idle_timeout), "0".into()),
        ("idle_transaction_timeout".into(), off(l.idle_transaction_timeout), "0".into()),
        ("query_timeout".into(), off(l.query_timeout), "0".into()),
        ("query_wait_timeout".into(), format!("{:?}", l.query_wait_timeout), format!("{:?}", d::DEFAULT_QUERY_WAIT_TIMEOUT)),
        ("server_lifetime".into(), format!("{:?}", l.server_lifetime), format!("{:?}", d::DEFAULT_SERVER_LIFETIME)),
        ("server_idle_timeout".into(), off(l.server_idle_timeout), format!("{:?}", d::DEFAULT_SERVER_IDLE_TIMEOUT)),
        ("tcp_keepalive".into(), l.tcp_keepalive.to_string(), "true".into()),
        ("tcp_keepidle".into(), opt(l.tcp_keepidle), String::new()),
        ("tcp_keepintvl".into(), opt(l.tcp_keepintvl), String::new()),
        ("tcp_keepcnt".into(), l.tcp_keepcnt.map(|n| n.to_string()).unwrap_or_default(), String::new()),
        ("listen_backlog".into(), l.listen_backlog.to_string(), d::DEFAULT_LISTEN_BACKLOG.to_string()),
        ("so_reuseport".into(), l.so_reuseport.to_string(), "false".into()),
        ("unix_socket_dir".into(), l.unix_socket_dir.clone().unwrap_or_default(), d::DEFAULT_UNIX_SOCKET_DIR.into()),
        ("unix_socket_mode".into(), format!("{:04o}", l.unix_socket_mode), format!("{:04o}", d::DEFAULT_UNIX_SOCKET_MODE)),
    ]
}
