//! Cross-field validation and the final model: every problem is collected, each with the line of its key.

use std::collections::HashMap;
use std::path::Path;

use super::load::{RawConfig, RawTarget};
use super::model::*;
use super::Issue;

/// Default byte budget of the route cache.
const DEFAULT_ROUTE_CACHE: usize = 16 << 20;
/// Default period of catalog snapshot refreshes.
const DEFAULT_CATALOG_REFRESH: std::time::Duration = std::time::Duration::from_secs(60);
/// Default time above `alert_connections` before a connection alert: three probe ticks.
const DEFAULT_ALERT_SUSTAIN: std::time::Duration = std::time::Duration::from_secs(15);
/// Default period of the background health probes.
const DEFAULT_HEALTH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
/// Default time sessions may go on after SIGTERM/SIGINT.
const DEFAULT_SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// PgBouncer's default `client_login_timeout`.
const DEFAULT_CLIENT_LOGIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Default time for a new connection's first packet: a client sends it at once.
const DEFAULT_FIRST_PACKET_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Default most logged-in clients (PgBouncer's default is 100; pgsplit's per-client memory is bounded, README).
const DEFAULT_MAX_CLIENT_CONN: usize = 10_000;
/// Default most connections logging in at once.
const DEFAULT_MAX_LOGIN_CONN: usize = 512;

/// Builds the model from the parsed file, or every problem found.
pub fn build(raw: RawConfig, text: &str, base: &Path, split_env: Option<&str>) -> Result<Config, Vec<Issue>> {
    let mut issues = Vec::new();
    let mut issue = |path: &[&str], message: String| {
        issues.push(Issue { line: line_of(text, path), key: path.join("."), message });
    };
    let resolve = |p: std::path::PathBuf| if p.is_relative() { base.join(p) } else { p };

    let listen = raw.listen.unwrap_or_else(|| "127.0.0.1:6432".into());
    if !valid_listen(&listen) {
        issue(&["listen"], format!("{listen:?} is not host:port"));
    }
    let mut tls = raw.tls.unwrap_or_default();
    tls.cert = tls.cert.map(resolve);
    tls.key = tls.key.map(resolve);
    if tls.mode != ClientTlsMode::Disabled && (tls.cert.is_none() || tls.key.is_none()) {
        issue(&["tls"], "modes optional and required need cert and key".into());
    }

    let mut targets = Vec::new();
    let mut owner: HashMap<String, String> = HashMap::new();
    if raw.targets.is_empty() {
        issue(&["targets"], "at least one target is required".into());
    }
    for (key, value) in raw.targets {
        let Some(name) = key.as_str().map(str::to_owned) else {
            issue(&["targets"], "target names must be strings".into());
            continue;
        };
        let t: RawTarget = match serde_yaml::from_value(value) {
            Ok(t) => t,
            Err(e) => {
                issue(&["targets", &name], e.to_string());
                continue;
            }
        };
        let server = match parse_url(&t.url) {
            Ok(s) => Some(s),
            Err(m) => {
                issue(&["targets", &name, "url"], m);
                None
            }
        };
        let tls = match t.tls {
            Some(x) => ServerTls { mode: x.mode, ca: x.ca.map(resolve) },
            None => match url_tls(&t.url) {
                Ok(found) => found.map(|(m, ca)| ServerTls { mode: m, ca: ca.map(resolve) }).unwrap_or_default(),
                Err(e) => {
                    issue(&["targets", &name, "url"], e);
                    ServerTls::default()
                }
            },
        };
        if matches!(tls.mode, ServerTlsMode::VerifyCa | ServerTlsMode::VerifyFull) && tls.ca.is_none() {
            issue(&["targets", &name, "tls"], "verify-ca and verify-full need a ca file".into());
        }
        let d = PoolConfig::default();
        let pool = PoolConfig {
            max: t.pool.max.unwrap_or(d.max),
            min: t.pool.min.unwrap_or(d.min),
            checkout_timeout: t.pool.checkout_timeout.unwrap_or(d.checkout_timeout),
            idle_timeout: t.pool.idle_timeout.or(d.idle_timeout),
            max_lifetime: t.pool.max_lifetime,
        };
        if pool.max == 0 {
            issue(&["targets", &name, "pool", "max"], "must be at least 1".into());
        }
        if pool.min > pool.max {
            issue(&["targets", &name, "pool", "min"], format!("min {} is above max {}", pool.min, pool.max));
        }
        match t.alert_connections {
            Some(0) => issue(&["targets", &name, "alert_connections"], "must be at least 1".into()),
            Some(a) if a >= pool.max && pool.max > 0 => {
                issue(&["targets", &name, "alert_connections"], format!("{a} can never be exceeded: pool max is {}", pool.max))
            }
            _ => {}
        }
        for s in &t.schemas {
            if s.is_empty() {
                issue(&["targets", &name, "schemas"], "empty schema name".into());
            } else if let Some(other) = owner.insert(s.clone(), name.clone()) {
                if other != name {
                    issue(&["targets", &name, "schemas"], format!("schema {s:?} is already owned by target {other:?}"));
                }
            }
        }
        if let Some(server) = server {
            let (schemas, upstream, alert_connections) = (t.schemas, t.upstream, t.alert_connections);
            targets.push(Target { name, server, tls, pool, schemas, upstream, alert_connections });
        }
    }

    let first = targets.first().map(|t| t.name.clone()).unwrap_or_default();
    let default_target = raw.default_target.unwrap_or_else(|| first.clone());
    let single_target = raw.single_target.unwrap_or_else(|| default_target.clone());
    let known = |n: &str| targets.iter().any(|t| t.name == n);
    for (key, value) in [("default_target", &default_target), ("single_target", &single_target)] {
        if !known(value) && !targets.is_empty() {
            issue(&[key], format!("unknown target {value:?}"));
        }
    }
    let mut seen = HashMap::new();
    for u in &raw.users {
        if u.name.is_empty() {
            issue(&["users"], "a user needs a name".into());
        } else if seen.insert(u.name.clone(), ()).is_some() {
            issue(&["users"], format!("user {:?} is listed twice", u.name));
        }
    }
    let mode = match split_env.map(|v| v.trim().to_ascii_lowercase()) {
        Some(v) if ["false", "0", "no", "off"].contains(&v.as_str()) => Mode::Single,
        Some(v) if ["true", "1", "yes", "on"].contains(&v.as_str()) => Mode::Split,
        _ => raw.mode.unwrap_or(Mode::Split),
    };
    for (key, value) in [("max_client_conn", raw.max_client_conn), ("max_login_conn", raw.max_login_conn)] {
        if value == Some(0) {
            issue(&[key], "must be at least 1".into());
        }
    }
    let route_cache_bytes = raw.route_cache.map(|c| c.max_bytes).unwrap_or(DEFAULT_ROUTE_CACHE);
    let health_interval = raw.health_interval.unwrap_or(DEFAULT_HEALTH_INTERVAL);
    if health_interval.is_zero() {
        issue(&["health_interval"], "must be longer than 0s".into());
    }
    if !issues.is_empty() {
        return Err(issues);
    }
    Ok(Config {
        listen,
        tls,
        http: raw.http,
        mode,
        database: raw.database.unwrap_or_else(|| "handled".into()),
        default_target,
        single_target,
        targets,
        users: raw.users,
        admin_users: raw.admin_users,
        route_cache_bytes,
        catalog_refresh: raw.catalog_refresh.unwrap_or(DEFAULT_CATALOG_REFRESH),
        alert_sustain: raw.alert_sustain.unwrap_or(DEFAULT_ALERT_SUSTAIN),
        shutdown_timeout: raw.shutdown_timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT),
        client_login_timeout: raw.client_login_timeout.unwrap_or(DEFAULT_CLIENT_LOGIN_TIMEOUT),
        client_first_packet_timeout: raw.client_first_packet_timeout.unwrap_or(DEFAULT_FIRST_PACKET_TIMEOUT),
        max_client_conn: raw.max_client_conn.unwrap_or(DEFAULT_MAX_CLIENT_CONN),
        max_login_conn: raw.max_login_conn.unwrap_or(DEFAULT_MAX_LOGIN_CONN),
        health_interval,
    })
}

fn valid_listen(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok(),
        None => false,
    }
}

/// Parses a `postgres://` / `postgresql://` URL. Errors never echo the URL (it may hold a password).
pub fn parse_url(s: &str) -> Result<ServerAddr, String> {
    let url = url::Url::parse(s).map_err(|e| format!("not a valid URL ({e})"))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(format!("scheme must be postgresql://, not {}://", url.scheme()));
    }
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or("the URL has no host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let user = percent_decode(url.username());
    if user.is_empty() {
        return Err("the URL has no user".into());
    }
    let password = url.password().map(percent_decode);
    let dbname = url.path().trim_start_matches('/');
    let dbname = if dbname.is_empty() { user.clone() } else { percent_decode(dbname) };
    Ok(ServerAddr { host, port: url.port().unwrap_or(5432), user, password, dbname })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `sslmode` and `sslrootcert` from a URL's query, when `tls:` is absent. `allow`/`prefer` fall back to plain. A
/// value libpq does not know (`verfy-full`, `VERIFY-FULL`: libpq's values are lower case) is an error, as libpq
/// makes it, never plain TCP by mistake.
fn url_tls(s: &str) -> Result<Option<(ServerTlsMode, Option<std::path::PathBuf>)>, String> {
    let Ok(url) = url::Url::parse(s) else { return Ok(None) };
    let mut mode = None;
    let mut ca = None;
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "sslmode" => {
                mode = Some(match v.as_ref() {
                    "disable" | "allow" | "prefer" => ServerTlsMode::Disable,
                    "require" => ServerTlsMode::Require,
                    "verify-ca" => ServerTlsMode::VerifyCa,
                    "verify-full" => ServerTlsMode::VerifyFull,
                    other => {
                        return Err(format!(
                            "invalid sslmode value: \"{other}\" (disable, allow, prefer, require, verify-ca, verify-full)"
                        ))
                    }
                })
            }
            "sslrootcert" => ca = Some(std::path::PathBuf::from(v.as_ref())),
            _ => {}
        }
    }
    Ok(Some((mode.unwrap_or_default(), ca)))
}

/// The 1-based line of a nested mapping key, found by indentation (block style) or within a flow mapping on the
/// parent's line. Used to point validation errors at their key.
pub fn line_of(text: &str, path: &[&str]) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut start = 0;
    let mut min_indent = 0;
    let mut found = None;
    for key in path {
        let mut hit = None;
        for (i, line) in lines.iter().enumerate().skip(start) {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let indent = line.len() - trimmed.len();
            if i > start && indent < min_indent {
                break;
            }
            let bare = trimmed.trim_start_matches("- ");
            if bare.starts_with(&format!("{key}:")) || bare.starts_with(&format!("\"{key}\":")) {
                hit = Some((i, indent + 1));
                break;
            }
            if found.is_some() && i == start && trimmed.contains(&format!("{key}:")) {
                hit = Some((i, indent + 1));
                break;
            }
        }
        match hit {
            Some((i, indent)) => {
                found = Some(i + 1);
                start = i;
                min_indent = indent;
            }
            None => return found,
        }
    }
    found
}
