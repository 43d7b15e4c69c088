//! Cross-field validation and the final model: every problem is collected, each with the line of its key.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::load::{RawConfig, RawPool, RawServerTls, RawSessionCache, RawTarget};
use super::model::*;
use super::{Issue, UrlError};

/// Default byte budget of the route cache.
pub(crate) const DEFAULT_ROUTE_CACHE: usize = 16 << 20;
/// Default period of catalog snapshot refreshes.
pub(crate) const DEFAULT_CATALOG_REFRESH: std::time::Duration = std::time::Duration::from_secs(60);
/// Default time above `alert_connections` before a connection alert: three probe ticks.
pub(crate) const DEFAULT_ALERT_SUSTAIN: std::time::Duration = std::time::Duration::from_secs(15);
/// Default period of the background health probes.
pub(crate) const DEFAULT_HEALTH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
/// Default time sessions may go on after SIGTERM/SIGINT.
pub(crate) const DEFAULT_SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// PgBouncer's default `client_login_timeout`.
pub(crate) const DEFAULT_CLIENT_LOGIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Default time for a new connection's first packet: a client sends it at once.
pub(crate) const DEFAULT_FIRST_PACKET_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Default most logged-in clients: PgBouncer's.
pub(crate) const DEFAULT_MAX_CLIENT_CONN: usize = 100;
/// Default most connections logging in at once.
pub(crate) const DEFAULT_MAX_LOGIN_CONN: usize = 512;

/// Builds the model from the parsed file, or every problem found.
pub fn build(raw: RawConfig, text: &str, base: &Path, split_env: Option<&str>) -> Result<Config, Vec<Issue>> {
    let mut issues = Issues { text, found: Vec::new() };
    let resolve = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
    let names: Vec<String> = raw.targets.keys().filter_map(|k| k.as_str().map(str::to_owned)).collect();
    let auth_query = auth_query(&raw, &names, &mut issues);
    let limits = super::limits::build(&raw, &mut issues);
    let listen = listen(raw.listen, &mut issues);
    let tls = client_tls(raw.tls, &resolve, &mut issues);
    let targets = targets(raw.targets, &resolve, &limits.pool_defaults(), &mut issues);
    let (default_target, single_target) = chosen_targets(raw.default_target, raw.single_target, &targets, &mut issues);
    named_targets([("any_database", &raw.any_database), ("mode_store", &raw.mode_store)], &targets, &mut issues);
    check_users(&raw.users, &raw.admin_users, &targets, auth_query.is_some(), &mut issues);
    let auth_type = auth_type(raw.auth_type.as_deref(), &mut issues);
    let mode = mode(split_env, raw.mode);
    let workers = raw.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if workers > MAX_WORKERS {
        issues.add(&["workers"], format!("at most {MAX_WORKERS}"));
    }
    for (key, value) in
        [("max_client_conn", raw.max_client_conn), ("max_login_conn", raw.max_login_conn), ("workers", raw.workers)]
    {
        if value == Some(0) {
            issues.add(&[key], "must be at least 1");
        }
    }
    let cache = raw.cache.and_then(|c| session_cache(c, &targets, &mut issues));
    let migrations_table = migrations_table(raw.migrations, &mut issues);
    let route_cache_bytes = raw.route_cache.map(|c| c.max_bytes).unwrap_or(DEFAULT_ROUTE_CACHE);
    let health_interval = raw.health_interval.unwrap_or(DEFAULT_HEALTH_INTERVAL);
    if health_interval.is_zero() {
        issues.add(&["health_interval"], "must be longer than 0s");
    }
    let stats_period = raw.stats_period.unwrap_or(Duration::from_secs(60));
    if stats_period < Duration::from_secs(1) {
        issues.add(&["stats_period"], "must be at least 1s");
    }
    if !issues.found.is_empty() {
        return Err(issues.found);
    }
    Ok(Config {
        listen,
        tls,
        http: raw.http,
        mode,
        mode_store: raw.mode_store,
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
        limits,
        workers,
        health_interval,
        stats_period,
        auth_type,
        auth_query,
        pool_mode: raw.pool_mode.unwrap_or_default(),
        any_database: raw.any_database,
        prepare_unnamed: raw.prepare_unnamed.unwrap_or(false),
        cache,
        migrations_table,
    })
}

/// `any_database` and `mode_store` name targets; the mode store's keeps one connection outside its pool, which must
/// keep at least one.
fn named_targets(named: [(&str, &Option<String>); 2], targets: &[Target], issues: &mut Issues) {
    for (key, named) in named {
        match named.as_deref().map(|t| (t, targets.iter().find(|x| x.name == *t))) {
            Some((t, None)) => issues.add(&[key], format!("unknown target {t:?}")),
            Some((_, Some(t))) if key == "mode_store" && t.pool.max < 2 => issues.add(
                &["targets", &t.name, "pool", "max"],
                "must be at least 2 on the mode_store target: one of its connections follows the mode",
            ),
            _ => {}
        }
    }
}

/// `migrations.table`, when set: a name or `schema.name`.
fn migrations_table(raw: Option<super::load::RawMigrations>, issues: &mut Issues) -> Option<String> {
    let table = raw.and_then(|m| m.table);
    if let Some(t) = &table {
        let qualified = t.contains('.');
        if (qualified && crate::quote::split_qualified(t).is_none()) || t.trim().is_empty() {
            issues.add(&["migrations", "table"], format!("{t:?} is not a table name (name or schema.name)"));
        }
    }
    table
}

/// Default `cache.max_bytes`.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;
/// Default `cache.max_entry_bytes`.
pub const DEFAULT_CACHE_ENTRY_BYTES: usize = 1 << 20;

/// `cache:`, checked: each table `schema.name` in a schema a target owns, once; a TTL above zero; budgets that hold
/// at least one entry. `None` when no table is listed (nothing to cache).
fn session_cache(raw: RawSessionCache, targets: &[Target], issues: &mut Issues) -> Option<CacheConfig> {
    let max_bytes = raw.max_bytes.unwrap_or(DEFAULT_CACHE_BYTES);
    let max_entry_bytes = raw.max_entry_bytes.unwrap_or(DEFAULT_CACHE_ENTRY_BYTES.min(max_bytes / 4));
    if max_bytes < 4096 {
        issues.add(&["cache", "max_bytes"], "must be at least 4KiB");
    }
    if max_entry_bytes == 0 || max_entry_bytes > max_bytes / 4 {
        issues.add(&["cache", "max_entry_bytes"], "must be above 0 and at most a quarter of max_bytes");
    }
    let mut tables: Vec<CachedTable> = Vec::new();
    for t in raw.tables {
        let Some((schema, name)) = crate::quote::split_qualified(&t.name) else {
            issues.add(&["cache", "tables"], format!("{:?} is not schema.table", t.name));
            continue;
        };
        let Some(target) = targets.iter().find(|x| x.schemas.contains(&schema)) else {
            issues.add(&["cache", "tables"], format!("schema {schema:?} of {:?} is not owned by any target", t.name));
            continue;
        };
        if t.ttl.is_zero() {
            issues.add(&["cache", "tables"], format!("ttl of {:?} must be longer than 0s", t.name));
        }
        if tables.iter().any(|x| x.schema == schema && x.name == name) {
            issues.add(&["cache", "tables"], format!("{:?} is listed twice", t.name));
            continue;
        }
        let key = t.key.as_deref().map(str::trim).map(|k| match k.strip_prefix('"').and_then(|k| k.strip_suffix('"')) {
            Some(quoted) => quoted.replace("\"\"", "\""),
            None => k.to_lowercase(),
        });
        if key.as_deref() == Some("") {
            issues.add(&["cache", "tables"], format!("key of {:?} is empty", t.name));
        }
        tables.push(CachedTable { schema, name, ttl: t.ttl, target: target.name.clone(), key });
    }
    let stats_period = raw.stats_period.unwrap_or(Duration::from_secs(60));
    if stats_period.is_zero() {
        issues.add(&["cache", "stats_period"], "must be longer than 0s");
    }
    (!tables.is_empty()).then_some(CacheConfig {
        max_bytes,
        max_entry_bytes,
        listen: raw.listen.unwrap_or(true),
        stats_period,
        tables,
    })
}

/// Most `workers`: more threads than this only add contention.
const MAX_WORKERS: usize = 256;

/// The problems found so far, in the order found, each pointed at the line of its key.
pub(super) struct Issues<'t> {
    /// The (expanded) configuration text, where keys' lines are looked up.
    text: &'t str,
    /// Every problem found.
    found: Vec<Issue>,
}

impl Issues<'_> {
    /// Records a problem with the key at `path`.
    pub(super) fn add(&mut self, path: &[&str], message: impl Into<String>) {
        self.found.push(Issue { line: line_of(self.text, path), key: path.join("."), message: message.into() });
    }
}

/// `listen:`, by default 127.0.0.1:6432.
fn listen(raw: Option<String>, issues: &mut Issues) -> String {
    let listen = raw.unwrap_or_else(|| "127.0.0.1:6432".into());
    if !valid_listen(&listen) {
        issues.add(&["listen"], format!("{listen:?} is not host:port"));
    }
    listen
}

/// The clients' `tls:`, its files resolved; a mode other than disabled needs both.
fn client_tls(raw: Option<ClientTls>, resolve: &impl Fn(PathBuf) -> PathBuf, issues: &mut Issues) -> ClientTls {
    let mut tls = raw.unwrap_or_default();
    tls.cert = tls.cert.map(resolve);
    tls.key = tls.key.map(resolve);
    if tls.mode != ClientTlsMode::Disabled && (tls.cert.is_none() || tls.key.is_none()) {
        issues.add(&["tls"], "modes optional and required need cert and key");
    }
    tls
}

/// Every target that can be built, in file order; a schema may belong to one target only.
fn targets(
    raw: serde_yaml::Mapping,
    resolve: &impl Fn(PathBuf) -> PathBuf,
    defaults: &PoolConfig,
    issues: &mut Issues,
) -> Vec<Target> {
    let mut targets = Vec::new();
    let mut owner: HashMap<String, String> = HashMap::new();
    if raw.is_empty() {
        issues.add(&["targets"], "at least one target is required");
    }
    for (key, value) in raw {
        let Some(name) = key.as_str().map(str::to_owned) else {
            issues.add(&["targets"], "target names must be strings");
            continue;
        };
        let t: RawTarget = match serde_yaml::from_value(value) {
            Ok(t) => t,
            Err(e) => {
                issues.add(&["targets", &name], e.to_string());
                continue;
            }
        };
        targets.extend(target(name, t, resolve, defaults, &mut owner, issues));
    }
    targets
}

/// One target, checked; `None` when its URL does not parse (the other problems are only recorded). `owner` maps
/// each schema claimed so far to its target.
fn target(
    name: String,
    t: RawTarget,
    resolve: &impl Fn(PathBuf) -> PathBuf,
    defaults: &PoolConfig,
    owner: &mut HashMap<String, String>,
    issues: &mut Issues,
) -> Option<Target> {
    let server = match parse_url(&t.url) {
        Ok(s) => Some(s),
        Err(e) => {
            issues.add(&["targets", &name, "url"], e.to_string());
            None
        }
    };
    let tls = server_tls(&name, t.tls, &t.url, resolve, issues);
    let pool = pool(&name, &t.pool, defaults, t.alert_connections, issues);
    claim_schemas(&name, &t.schemas, owner, issues);
    let (schemas, upstream, alert_connections, pool_mode) = (t.schemas, t.upstream, t.alert_connections, t.pool_mode);
    server.map(|server| Target { name, server, tls, pool, schemas, upstream, alert_connections, pool_mode })
}

/// A target's TLS: its `tls:`, else the URL's `sslmode`/`sslrootcert`; the verify modes need a CA file.
fn server_tls(
    name: &str,
    raw: Option<RawServerTls>,
    url: &str,
    resolve: &impl Fn(PathBuf) -> PathBuf,
    issues: &mut Issues,
) -> ServerTls {
    let tls = match raw {
        Some(x) => ServerTls { mode: x.mode, ca: x.ca.map(resolve) },
        None => match url_tls(url) {
            Ok(found) => found.map(|(m, ca)| ServerTls { mode: m, ca: ca.map(resolve) }).unwrap_or_default(),
            Err(e) => {
                issues.add(&["targets", name, "url"], e.to_string());
                ServerTls::default()
            }
        },
    };
    if matches!(tls.mode, ServerTlsMode::VerifyCa | ServerTlsMode::VerifyFull) && tls.ca.is_none() {
        issues.add(&["targets", name, "tls"], "verify-ca and verify-full need a ca file");
    }
    tls
}

/// A target's `pool:` over the defaults (`query_wait_timeout`, `server_idle_timeout`, `server_lifetime`), checked
/// together with its `alert_connections`.
fn pool(name: &str, raw: &RawPool, d: &PoolConfig, alert_connections: Option<u32>, issues: &mut Issues) -> PoolConfig {
    let pool = PoolConfig {
        max: raw.max.unwrap_or(d.max),
        min: raw.min.unwrap_or(d.min),
        checkout_timeout: raw.checkout_timeout.unwrap_or(d.checkout_timeout),
        idle_timeout: raw.idle_timeout.or(d.idle_timeout),
        max_lifetime: raw.max_lifetime.or(d.max_lifetime),
    };
    if pool.max == 0 {
        issues.add(&["targets", name, "pool", "max"], "must be at least 1");
    }
    if pool.min > pool.max {
        issues.add(&["targets", name, "pool", "min"], format!("min {} is above max {}", pool.min, pool.max));
    }
    match alert_connections {
        Some(0) => issues.add(&["targets", name, "alert_connections"], "must be at least 1"),
        Some(a) if a >= pool.max && pool.max > 0 => {
            issues.add(&["targets", name, "alert_connections"], format!("{a} can never be exceeded: pool max is {}", pool.max))
        }
        _ => {}
    }
    pool
}

/// Records `schemas` as the target's in `owner`; an empty name, or one another target owns, is a problem.
fn claim_schemas(name: &str, schemas: &[String], owner: &mut HashMap<String, String>, issues: &mut Issues) {
    for s in schemas {
        if s.is_empty() {
            issues.add(&["targets", name, "schemas"], "empty schema name");
        } else if let Some(other) = owner.insert(s.clone(), name.to_owned()) {
            if other != name {
                issues.add(&["targets", name, "schemas"], format!("schema {s:?} is already owned by target {other:?}"));
            }
        }
    }
}

/// `default_target` (by default the first target) and `single_target` (by default `default_target`); each must
/// name a target.
fn chosen_targets(
    default_target: Option<String>,
    single_target: Option<String>,
    targets: &[Target],
    issues: &mut Issues,
) -> (String, String) {
    let first = targets.first().map(|t| t.name.clone()).unwrap_or_default();
    let default_target = default_target.unwrap_or_else(|| first.clone());
    let single_target = single_target.unwrap_or_else(|| default_target.clone());
    let known = |n: &str| targets.iter().any(|t| t.name == n);
    for (key, value) in [("default_target", &default_target), ("single_target", &single_target)] {
        if !known(value) && !targets.is_empty() {
            issues.add(&[key], format!("unknown target {value:?}"));
        }
    }
    (default_target, single_target)
}

/// Every user needs a name, listed once, and server logins only on known targets; someone must be able to log in,
/// and every admin user must be a user.
fn check_users(users: &[User], admin_users: &[String], targets: &[Target], looked_up: bool, issues: &mut Issues) {
    let mut seen = HashMap::new();
    for u in users {
        if u.name.is_empty() {
            issues.add(&["users"], "a user needs a name");
        } else if seen.insert(u.name.clone(), ()).is_some() {
            issues.add(&["users"], format!("user {:?} is listed twice", u.name));
        }
        for t in u.targets.keys().filter(|t| !targets.iter().any(|k| &k.name == *t)) {
            issues.add(&["users", &u.name, "targets", t], format!("unknown target {t:?}"));
        }
        let alone = |t: &Target| {
            let login = u.login_on(&t.name);
            login.server_password.is_some() && login.server_user.is_none()
        };
        if targets.iter().any(alone) {
            issues.add(&["users", &u.name, "server_password"], "server_password needs server_user");
        }
    }
    if looked_up {
        return;
    }
    if users.is_empty() {
        issues.add(&["users"], "no user can log in: list at least one user, or set auth_query");
    }
    for a in admin_users.iter().filter(|a| !users.iter().any(|u| &u.name == *a)) {
        issues.add(&["admin_users"], format!("admin user {a:?} is not in users: nobody could log in as it"));
    }
}

/// PgBouncer's default `auth_query` (`pg_shadow` needs a superuser `auth_user`).
/// Schema-qualified: a search_path a client set on a pooled connection cannot swap in another `pg_shadow`.
pub(crate) const DEFAULT_AUTH_QUERY: &str = "SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename=$1";

/// `auth_type`: `scram-sha-256` (default) or `md5`, as PgBouncer spells them.
fn auth_type(raw: Option<&str>, issues: &mut Issues) -> AuthType {
    match raw.map(str::to_ascii_lowercase).as_deref() {
        None | Some("scram-sha-256") => AuthType::ScramSha256,
        Some("md5") => AuthType::Md5,
        Some(other) => {
            issues.add(&["auth_type"], format!("{other:?} is not scram-sha-256 or md5"));
            AuthType::ScramSha256
        }
    }
}

/// `auth_query` and its settings; the target must exist and the query take the user name as `$1`.
fn auth_query(raw: &RawConfig, targets: &[String], issues: &mut Issues) -> Option<AuthQuery> {
    // PgBouncer's default query once `auth_user` is set.
    let sql = match (&raw.auth_query, &raw.auth_user) {
        (Some(sql), _) => sql.clone(),
        (None, Some(_)) => DEFAULT_AUTH_QUERY.to_owned(),
        (None, None) => return None,
    };
    if !sql.contains("$1") {
        issues.add(&["auth_query"], "the query must take the user name as $1");
    }
    let target = raw.auth_target.clone().or_else(|| raw.default_target.clone()).unwrap_or_default();
    if !targets.contains(&target) {
        issues.add(&["auth_target"], format!("unknown target {target:?}"));
    }
    if raw.auth_password.is_some() && raw.auth_user.is_none() {
        issues.add(&["auth_password"], "auth_password needs auth_user");
    }
    let size = raw.auth_cache_size.unwrap_or(1000);
    if size == 0 {
        issues.add(&["auth_cache_size"], "must be at least 1");
    }
    Some(AuthQuery {
        sql,
        target,
        user: raw.auth_user.clone(),
        password: raw.auth_password.clone(),
        ttl: raw.auth_cache_ttl.unwrap_or(Duration::from_secs(60)),
        size,
    })
}

/// The mode: `SPLIT_DB_MODE` when it holds a boolean word, else `mode:`, else split.
fn mode(split_env: Option<&str>, configured: Option<Mode>) -> Mode {
    match split_env.map(|v| v.trim().to_ascii_lowercase()) {
        Some(v) if ["false", "0", "no", "off"].contains(&v.as_str()) => Mode::Single,
        Some(v) if ["true", "1", "yes", "on"].contains(&v.as_str()) => Mode::Split,
        _ => configured.unwrap_or(Mode::Split),
    }
}

fn valid_listen(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok(),
        None => false,
    }
}

/// Parses a `postgres://` / `postgresql://` URL. Errors never echo the URL (it may hold a password).
pub fn parse_url(s: &str) -> Result<ServerAddr, UrlError> {
    let url = url::Url::parse(s).map_err(UrlError::NotUrl)?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(UrlError::Scheme(url.scheme().to_owned()));
    }
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or(UrlError::NoHost)?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let user = percent_decode(url.username());
    if user.is_empty() {
        return Err(UrlError::NoUser);
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

/// `sslmode` and `sslrootcert` from a URL's query, when `tls:` is absent. `allow`/`prefer` try TLS first. A
/// value libpq does not know (`verfy-full`, `VERIFY-FULL`: libpq's values are lower case) is an error, as libpq
/// makes it, never plain TCP by mistake.
fn url_tls(s: &str) -> Result<Option<(ServerTlsMode, Option<PathBuf>)>, UrlError> {
    let Ok(url) = url::Url::parse(s) else { return Ok(None) };
    let mut mode = None;
    let mut ca = None;
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "sslmode" => {
                mode = Some(match v.as_ref() {
                    "disable" => ServerTlsMode::Disable,
                    "allow" => ServerTlsMode::Allow,
                    "prefer" => ServerTlsMode::Prefer,
                    "require" => ServerTlsMode::Require,
                    "verify-ca" => ServerTlsMode::VerifyCa,
                    "verify-full" => ServerTlsMode::VerifyFull,
                    other => return Err(UrlError::SslMode(other.to_owned())),
                })
            }
            "sslrootcert" => ca = Some(PathBuf::from(v.as_ref())),
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
