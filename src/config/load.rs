//! Loading: `${VAR}` / `${VAR:-default}` expansion on the raw text (so YAML line numbers stay true), then parsing.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::model::{ClientTls, Mode, PoolMode, ServerTlsMode, Upstream, User};
use super::Issue;

/// Expands environment references outside comments. Missing variables without a default are all reported.
///
/// A value goes in as the YAML around it reads it back verbatim: escaped inside a double-quoted scalar (a `"` or `\\`
/// in a password), its `'` doubled inside a single-quoted one, and quoted when it is a whole plain scalar that plain
/// YAML would misread (`: `, ` #`, a leading `*` or `&`). Part of a plain scalar that would be misread is an error that
/// says to quote it, never a silently different configuration.
pub fn expand_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, Vec<Issue>> {
    let mut out = String::with_capacity(text.len());
    let mut issues = Vec::new();
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let (code, comment) = split_comment(line);
        let mut rest = code;
        while let Some(at) = rest.find("${") {
            let before = &rest[..at];
            out.push_str(before);
            let after = &rest[at + 2..];
            let Some(end) = after.find('}') else {
                issues.push(Issue { line: Some(i + 1), key: String::new(), message: "unterminated ${".into() });
                rest = "";
                break;
            };
            let inner = &after[..end];
            rest = &after[end + 1..];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            let Some(value) = env(name).filter(|v| !v.is_empty() || default.is_none()).or(default.map(str::to_owned)) else {
                issues.push(Issue {
                    line: Some(i + 1),
                    key: String::new(),
                    message: format!("environment variable {name} is not set (use ${{{name}:-default}} for a default)"),
                });
                continue;
            };
            let line_so_far = out.rsplit('\n').next().unwrap_or("");
            match place(&value, spot(line_so_far, rest)) {
                Ok(v) => out.push_str(&v),
                Err(why) => issues.push(Issue {
                    line: Some(i + 1),
                    key: String::new(),
                    message: format!("the value of environment variable {name} {why}"),
                }),
            }
        }
        out.push_str(rest);
        out.push_str(comment);
    }
    if issues.is_empty() {
        Ok(out)
    } else {
        Err(issues)
    }
}

/// Which scalar style a position on a line is inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quote {
    Plain,
    Single,
    Double,
}

/// The quoting in force at the end of `line` (the line written so far), and how many flow collections (`[`, `{`)
/// are open there.
fn scan(line: &str) -> (Quote, u32) {
    let (mut state, mut depth) = (Quote::Plain, 0u32);
    let mut prev = ' ';
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        state = match (state, c) {
            // `\x` inside double quotes, `''` inside single quotes: escapes, the quote goes on.
            (Quote::Double, '\\') => {
                chars.next();
                Quote::Double
            }
            (Quote::Single, '\'') if chars.peek() == Some(&'\'') => {
                chars.next();
                Quote::Single
            }
            (Quote::Double, '"') | (Quote::Single, '\'') => Quote::Plain,
            (Quote::Plain, '"') if starts_scalar(prev) => Quote::Double,
            (Quote::Plain, '\'') if starts_scalar(prev) => Quote::Single,
            (Quote::Plain, '[' | '{') => {
                depth += 1;
                Quote::Plain
            }
            (Quote::Plain, ']' | '}') => {
                depth = depth.saturating_sub(1);
                Quote::Plain
            }
            (s, _) => s,
        };
        prev = c;
    }
    (state, depth)
}

/// Whether a quote after `prev` opens a quoted scalar (in `a'b`, it is part of a plain one).
fn starts_scalar(prev: char) -> bool {
    prev.is_whitespace() || matches!(prev, ':' | '[' | '{' | ',' | '-')
}

/// Where a reference sits: `before` is the line written so far, `after` the rest of the line's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spot {
    /// Inside `"..."`.
    Double,
    /// Inside `'...'`.
    Single,
    /// A whole plain value: after `key: `, `- `, or `[`/`{`/`,` in a flow collection, and nothing but a flow
    /// separator after it.
    WholePlain,
    /// Part of a plain value.
    PartPlain,
    /// At the start of a line (a block scalar's content, a continuation line).
    LineStart,
}

fn spot(before: &str, after: &str) -> Spot {
    let (quote, depth) = scan(before);
    match quote {
        Quote::Double => return Spot::Double,
        Quote::Single => return Spot::Single,
        Quote::Plain => {}
    }
    let lead = before.trim_end();
    if lead.trim_start().is_empty() {
        return Spot::LineStart;
    }
    let spaced = before.len() > lead.len();
    let flow_open = depth > 0 && (lead.ends_with('[') || lead.ends_with('{') || lead.ends_with(','));
    let keyed = spaced && (lead.ends_with(':') || lead.ends_with(" -") || lead.trim_start() == "-");
    let tail = after.trim();
    let ends = tail.is_empty() || depth > 0 && (tail.starts_with(',') || tail.starts_with('}') || tail.starts_with(']'));
    match (flow_open || keyed) && ends {
        true => Spot::WholePlain,
        false => Spot::PartPlain,
    }
}

/// The text that reads back as `value` at that spot, or why there is none.
fn place(value: &str, spot: Spot) -> Result<String, &'static str> {
    let json = || serde_json::to_string(value).unwrap_or_default();
    let breaks = value.contains(['\n', '\r']);
    match spot {
        Spot::Double => Ok(json().get(1..json().len().saturating_sub(1)).unwrap_or_default().to_owned()),
        Spot::Single if breaks => Err("holds a line break: use double quotes around it"),
        Spot::Single => Ok(value.replace('\'', "''")),
        // YAML reads `~` and `null` as no value at all: quoted, they stay the text they are.
        Spot::WholePlain if plain_safe(value) && !matches!(value, "~" | "null" | "Null" | "NULL") => Ok(value.to_owned()),
        Spot::WholePlain => Ok(json()),
        Spot::PartPlain if plain_safe(value) => Ok(value.to_owned()),
        Spot::PartPlain => Err("would change the YAML around it: put double quotes around the whole value"),
        Spot::LineStart if breaks => Err("holds a line break, which would end the line it starts"),
        Spot::LineStart => Ok(value.to_owned()),
    }
}

/// Whether a value reads back as itself in a plain scalar, flow collections included.
fn plain_safe(v: &str) -> bool {
    let mut chars = v.chars();
    let (first, second) = (chars.next(), chars.next());
    // `-`, `?` and `:` start a plain scalar when a non-space follows (`-1`, `-x`).
    let first_ok = first.is_some_and(|c| {
        !c.is_whitespace()
            && !",[]{}#&*!|>'\"%@`".contains(c)
            && (!"-?:".contains(c) || second.is_some_and(|s| !s.is_whitespace()))
    });
    let last_ok = v.chars().last().is_some_and(|c| !c.is_whitespace() && c != ':');
    first_ok
        && last_ok
        && !v.contains(": ")
        && !v.contains(" #")
        && !v.contains(|c: char| c.is_control() || matches!(c, ',' | '[' | ']' | '{' | '}'))
}

/// Splits a line at a YAML comment (`#` at the start or after white space, outside quotes).
fn split_comment(line: &str) -> (&str, &str) {
    let mut quote: Option<char> = None;
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if prev_space => return line.split_at(i),
            _ => {}
        }
        prev_space = c.is_whitespace();
    }
    (line, "")
}

/// The file as written, before cross-field checks. Unknown keys are found and reported by `strict` first (all of them,
/// with their lines); `deny_unknown_fields` also gives `strict` this struct's key list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<String>,
    pub tls: Option<ClientTls>,
    pub http: Option<String>,
    pub mode: Option<Mode>,
    pub database: Option<String>,
    pub default_target: Option<String>,
    pub single_target: Option<String>,
    #[serde(default)]
    pub targets: serde_yaml::Mapping,
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub admin_users: Vec<String>,
    pub route_cache: Option<RawCache>,
    /// How often the catalog snapshot is re-read (it is also re-read after DDL that passes through pgsplit).
    #[serde(default, deserialize_with = "opt_duration")]
    pub catalog_refresh: Option<Duration>,
    /// How long connections must stay above a target's `alert_connections` before the alert is raised.
    #[serde(default, deserialize_with = "opt_duration")]
    pub alert_sustain: Option<Duration>,
    /// How often every target is probed in the background.
    #[serde(default, deserialize_with = "opt_duration")]
    pub health_interval: Option<Duration>,
    /// How clients prove their password: `scram-sha-256` (default) or `md5` (PgBouncer's `auth_type`).
    pub auth_type: Option<String>,
    /// The query that looks up a client's verifier on `auth_target` (PgBouncer's `auth_query`), `$1` the name.
    pub auth_query: Option<String>,
    /// The target `auth_query` runs on (PgBouncer's `auth_dbname`); default: `default_target`.
    pub auth_target: Option<String>,
    /// The role `auth_query` runs as (PgBouncer's `auth_user`); default: the target URL's login.
    pub auth_user: Option<String>,
    /// Its password.
    pub auth_password: Option<String>,
    /// How long a looked-up verifier (or its absence) is reused (default 60 s).
    #[serde(default, deserialize_with = "opt_duration")]
    pub auth_cache_ttl: Option<Duration>,
    /// Most users whose lookup is kept (default 1,000).
    pub auth_cache_size: Option<usize>,
    /// The period SHOW STATS_AVERAGES averages over (PgBouncer's `stats_period`).
    #[serde(default, deserialize_with = "opt_duration")]
    pub stats_period: Option<Duration>,
    /// How long sessions may go on after SIGTERM/SIGINT.
    #[serde(default, deserialize_with = "opt_duration")]
    pub shutdown_timeout: Option<Duration>,
    /// How long a client may take to log in.
    #[serde(default, deserialize_with = "opt_duration")]
    pub client_login_timeout: Option<Duration>,
    /// How long a new connection may take to send its first startup packet.
    #[serde(default, deserialize_with = "opt_duration")]
    pub client_first_packet_timeout: Option<Duration>,
    /// Most logged-in clients.
    pub max_client_conn: Option<usize>,
    /// Most connections logging in at once.
    pub max_login_conn: Option<usize>,
    /// PgBouncer's limits and timeouts (`config::limits`).
    #[serde(default, deserialize_with = "opt_duration")]
    pub client_idle_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub idle_transaction_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub query_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub query_wait_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub server_lifetime: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub server_idle_timeout: Option<Duration>,
    pub tcp_keepalive: Option<bool>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub tcp_keepidle: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub tcp_keepintvl: Option<Duration>,
    pub tcp_keepcnt: Option<u32>,
    pub listen_backlog: Option<u32>,
    pub so_reuseport: Option<bool>,
    /// Where the Unix-domain socket is made (`""`: none).
    pub unix_socket_dir: Option<String>,
    #[serde(default, deserialize_with = "opt_octal")]
    pub unix_socket_mode: Option<u32>,
    /// `transaction` (default) or `session`.
    pub pool_mode: Option<PoolMode>,
    /// The target whose `pgsplit.mode` table holds the fleet's mode.
    pub mode_store: Option<String>,
    /// PgBouncer's `*` database: the target whose server serves any other database name.
    pub any_database: Option<String>,
    /// Threads that run the proxy (default: the number of cores).
    pub workers: Option<usize>,
    /// Unnamed Parse served from server-side prepared statements (default false).
    pub prepare_unnamed: Option<bool>,
    /// The session cache (SPEC §11).
    pub cache: Option<RawSessionCache>,
    /// `pgsplit migrate` (SPEC §10).
    pub migrations: Option<RawMigrations>,
}

/// `route_cache:` settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    #[serde(deserialize_with = "size")]
    pub max_bytes: usize,
}

/// `migrations:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMigrations {
    pub table: Option<String>,
}

/// `cache:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSessionCache {
    #[serde(default, deserialize_with = "opt_size")]
    pub max_bytes: Option<usize>,
    #[serde(default, deserialize_with = "opt_size")]
    pub max_entry_bytes: Option<usize>,
    pub listen: Option<bool>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub stats_period: Option<Duration>,
    #[serde(default)]
    pub tables: Vec<RawCachedTable>,
}

/// One `cache.tables` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCachedTable {
    pub name: String,
    #[serde(deserialize_with = "duration")]
    pub ttl: Duration,
    pub key: Option<String>,
}

/// One target as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub url: String,
    pub tls: Option<RawServerTls>,
    #[serde(default)]
    pub pool: RawPool,
    #[serde(default)]
    pub schemas: Vec<String>,
    #[serde(default)]
    pub upstream: Upstream,
    pub pool_mode: Option<PoolMode>,
    /// Connection alert threshold.
    pub alert_connections: Option<u32>,
}

/// A target's `tls:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServerTls {
    pub mode: ServerTlsMode,
    pub ca: Option<std::path::PathBuf>,
}

/// A target's `pool:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    pub max: Option<u32>,
    pub min: Option<u32>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub checkout_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub idle_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub max_lifetime: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrText {
    Num(u64),
    Text(String),
}

/// The longest duration a setting may have: 2^31-1 seconds (68 years), so that `Instant::now() + d` never overflows.
pub const MAX_DURATION: Duration = Duration::from_secs(i32::MAX as u64);

/// Parses "500ms", "5s", "10m", "1h" or a bare number of seconds; `None` for anything else or beyond
/// [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let d = match unit.trim() {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" | "min" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        _ => return None,
    };
    (d <= MAX_DURATION).then_some(d)
}

/// Parses "16MiB", "512KiB", "1GiB", "64kB" or a bare number of bytes.
pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: usize = n.parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "kib" | "k" => 1 << 10,
        "mb" | "mib" | "m" => 1 << 20,
        "gb" | "gib" | "g" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    match NumOrText::deserialize(d)? {
        NumOrText::Num(n) => parse_duration(&n.to_string())
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("duration {n} s is longer than {MAX_DURATION:?}"))),
        NumOrText::Text(t) => parse_duration(&t)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid duration {t:?} (use e.g. 500ms, 5s, 10m, 1h)"))),
    }
}

/// A file mode written in octal with its leading zero, as PgBouncer's `unix_socket_mode` (`0770`, `'0770'`, `0o770`
/// quoted). YAML reads `0770` as text, but `770` as decimal and `0o770` as the number 504: a number is refused
/// rather than guessed at.
fn opt_octal<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let digits = match NumOrText::deserialize(d)? {
        NumOrText::Num(n) => {
            return Err(serde::de::Error::custom(format!(
                "mode {n} is ambiguous to YAML: write it in octal with its leading zero, e.g. 0770"
            )))
        }
        NumOrText::Text(t) => t,
    };
    let octal = digits.strip_prefix("0o").unwrap_or(&digits);
    match u32::from_str_radix(octal, 8) {
        Ok(mode) if mode <= 0o777 && !octal.starts_with('+') => Ok(Some(mode)),
        _ => Err(serde::de::Error::custom(format!("invalid mode {digits:?} (octal permission bits, e.g. 0770)"))),
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    opt_duration(d).map(Option::unwrap_or_default)
}

fn opt_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    size(d).map(Some)
}

fn size<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    match NumOrText::deserialize(d)? {
        NumOrText::Num(n) => Ok(n as usize),
        NumOrText::Text(t) => {
            parse_size(&t).ok_or_else(|| serde::de::Error::custom(format!("invalid size {t:?} (use e.g. 16MiB)")))
        }
    }
}
