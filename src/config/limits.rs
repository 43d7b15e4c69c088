//! PgBouncer's limits and timeouts, under its names and with its defaults (SPEC §6): what a client may do idle, how
//! long a statement may run or wait for a server connection, how long server connections live, and the sockets'
//! keepalive, backlog and port sharing. `0` turns a timeout off, as in PgBouncer.

use std::time::Duration;

use super::load::{RawConfig, MAX_DURATION};
use super::model::PoolConfig;
use super::validate::Issues;

/// PgBouncer's `query_wait_timeout`.
pub const DEFAULT_QUERY_WAIT_TIMEOUT: Duration = Duration::from_secs(120);
/// PgBouncer's `server_lifetime`.
pub const DEFAULT_SERVER_LIFETIME: Duration = Duration::from_secs(3600);
/// PgBouncer's `server_idle_timeout`.
pub const DEFAULT_SERVER_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// PgBouncer's `listen_backlog`.
pub const DEFAULT_LISTEN_BACKLOG: u32 = 128;
/// PgBouncer's `unix_socket_dir`.
pub const DEFAULT_UNIX_SOCKET_DIR: &str = "/tmp";
/// PgBouncer's `unix_socket_mode`.
pub const DEFAULT_UNIX_SOCKET_MODE: u32 = 0o777;

/// The limits in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// A client idle outside a transaction longer than this is closed with FATAL 57P05 (PostgreSQL's
    /// `idle_session_timeout`). Off by default.
    pub client_idle_timeout: Option<Duration>,
    /// A client idle inside a transaction longer than this is closed with FATAL 25P03 (PostgreSQL's
    /// `idle_in_transaction_session_timeout`); its transaction is rolled back with its server connection. Off by
    /// default.
    pub idle_transaction_timeout: Option<Duration>,
    /// A statement running longer than this is cancelled on its server (the client gets 57014 and goes on); one that
    /// ignores its cancels loses its server connection (`app::timeouts`). Off by default.
    pub query_timeout: Option<Duration>,
    /// How long a client waits for a server connection: the default of every target's `pool.checkout_timeout`.
    pub query_wait_timeout: Duration,
    /// Server connections older than this are closed when given back: the default of `pool.max_lifetime`.
    pub server_lifetime: Duration,
    /// Idle server connections above `pool.min` are closed after this: the default of `pool.idle_timeout`.
    pub server_idle_timeout: Option<Duration>,
    /// SO_KEEPALIVE on client and server connections.
    pub tcp_keepalive: bool,
    /// Idle time before the first keepalive probe (none: the system's).
    pub tcp_keepidle: Option<Duration>,
    /// Time between probes (none: the system's).
    pub tcp_keepintvl: Option<Duration>,
    /// Probes unanswered before the connection is dropped (none: the system's).
    pub tcp_keepcnt: Option<u32>,
    /// Backlog of the listening socket (read at start).
    pub listen_backlog: u32,
    /// SO_REUSEPORT on the listening socket: another pgsplit may listen on the same port (read at start).
    pub so_reuseport: bool,
    /// The directory of the Unix-domain socket `.s.PGSQL.<port>` (`@...`: Linux's abstract namespace); `None`: no
    /// Unix-domain socket (read at start).
    pub unix_socket_dir: Option<String>,
    /// The socket file's permission bits (read at start).
    pub unix_socket_mode: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            client_idle_timeout: None,
            idle_transaction_timeout: None,
            query_timeout: None,
            query_wait_timeout: DEFAULT_QUERY_WAIT_TIMEOUT,
            server_lifetime: DEFAULT_SERVER_LIFETIME,
            server_idle_timeout: Some(DEFAULT_SERVER_IDLE_TIMEOUT),
            tcp_keepalive: true,
            tcp_keepidle: None,
            tcp_keepintvl: None,
            tcp_keepcnt: None,
            listen_backlog: DEFAULT_LISTEN_BACKLOG,
            so_reuseport: false,
            unix_socket_dir: Some(DEFAULT_UNIX_SOCKET_DIR.to_owned()),
            unix_socket_mode: DEFAULT_UNIX_SOCKET_MODE,
        }
    }
}

impl Limits {
    /// What a target's `pool:` falls back to for what it does not set.
    pub fn pool_defaults(&self) -> PoolConfig {
        PoolConfig {
            checkout_timeout: self.query_wait_timeout,
            idle_timeout: self.server_idle_timeout,
            max_lifetime: Some(self.server_lifetime),
            ..PoolConfig::default()
        }
    }
}

/// `0` is off.
fn off_if_zero(d: Option<Duration>) -> Option<Duration> {
    d.filter(|d| !d.is_zero())
}

/// The limits as written, checked.
pub(super) fn build(raw: &RawConfig, issues: &mut Issues) -> Limits {
    let d = Limits::default();
    let server_lifetime = raw.server_lifetime.unwrap_or(d.server_lifetime);
    if server_lifetime.is_zero() {
        issues.add(&["server_lifetime"], "must be longer than 0s (PgBouncer's 0, a connection used once, is not offered)");
    }
    let listen_backlog = raw.listen_backlog.unwrap_or(d.listen_backlog);
    if listen_backlog == 0 {
        issues.add(&["listen_backlog"], "must be at least 1");
    }
    // Linux's ranges (TCP_KEEPCNT 1-127, TCP_KEEPIDLE and TCP_KEEPINTVL 1-32767 s): beyond them the socket option
    // would be refused on every connection.
    if raw.tcp_keepcnt.is_some_and(|n| !(1..=127).contains(&n)) {
        issues.add(&["tcp_keepcnt"], "must be between 1 and 127");
    }
    for (key, value) in [("tcp_keepidle", raw.tcp_keepidle), ("tcp_keepintvl", raw.tcp_keepintvl)] {
        if value.is_some_and(|v| v < Duration::from_secs(1) || v > Duration::from_secs(32_767)) {
            issues.add(&[key], "must be between 1s and 32767s (the system counts keepalive time in whole seconds)");
        }
    }
    Limits {
        client_idle_timeout: off_if_zero(raw.client_idle_timeout),
        idle_transaction_timeout: off_if_zero(raw.idle_transaction_timeout),
        query_timeout: off_if_zero(raw.query_timeout),
        // 0: wait as long as it takes, as PgBouncer's 0.
        query_wait_timeout: raw.query_wait_timeout.map_or(d.query_wait_timeout, |t| if t.is_zero() { MAX_DURATION } else { t }),
        server_lifetime,
        server_idle_timeout: raw.server_idle_timeout.map_or(d.server_idle_timeout, |t| off_if_zero(Some(t))),
        tcp_keepalive: raw.tcp_keepalive.unwrap_or(d.tcp_keepalive),
        tcp_keepidle: raw.tcp_keepidle,
        tcp_keepintvl: raw.tcp_keepintvl,
        tcp_keepcnt: raw.tcp_keepcnt,
        listen_backlog,
        so_reuseport: raw.so_reuseport.unwrap_or(d.so_reuseport),
        // "" turns it off, as PgBouncer's.
        unix_socket_dir: raw.unix_socket_dir.clone().map_or(d.unix_socket_dir, |dir| Some(dir).filter(|d| !d.is_empty())),
        unix_socket_mode: raw.unix_socket_mode.unwrap_or(d.unix_socket_mode),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::{load_str, Config, ConfigError};

    fn load(extra: &str) -> Result<Config, ConfigError> {
        let text = format!(
            "targets:\n  main:\n    url: postgresql://u:p@localhost/a\n  own:\n    url: postgresql://u:p@localhost/b\n    \
             pool: {{ checkout_timeout: 7s, max_lifetime: 2m }}\nusers: [{{ name: app, password: x }}]\n{extra}"
        );
        load_str(&text, std::path::Path::new("."), &|_| None)
    }

    #[test]
    fn defaults_are_pgbouncers_and_feed_the_pools_that_do_not_set_their_own() {
        let c = load("").unwrap();
        let l = &c.limits;
        assert_eq!((l.client_idle_timeout, l.idle_transaction_timeout, l.query_timeout), (None, None, None));
        assert_eq!((l.query_wait_timeout, l.server_lifetime), (Duration::from_secs(120), Duration::from_secs(3600)));
        assert_eq!(l.server_idle_timeout, Some(Duration::from_secs(600)));
        assert_eq!((l.tcp_keepalive, l.listen_backlog, l.so_reuseport), (true, 128, false));
        assert_eq!(c.max_client_conn, 100);
        assert_eq!((l.unix_socket_dir.as_deref(), l.unix_socket_mode), (Some("/tmp"), 0o777));
        let main = &c.target("main").unwrap().pool;
        assert_eq!(main.checkout_timeout, Duration::from_secs(120));
        assert_eq!(main.max_lifetime, Some(Duration::from_secs(3600)));

        let c = load("query_wait_timeout: 3s\nserver_lifetime: 10m\nserver_idle_timeout: 0\nclient_idle_timeout: 0\n").unwrap();
        let (main, own) = (&c.target("main").unwrap().pool, &c.target("own").unwrap().pool);
        assert_eq!(
            (main.checkout_timeout, main.max_lifetime, main.idle_timeout),
            (Duration::from_secs(3), Some(Duration::from_secs(600)), None)
        );
        assert_eq!(
            (own.checkout_timeout, own.max_lifetime),
            (Duration::from_secs(7), Some(Duration::from_secs(120))),
            "a pool's own wins"
        );
        assert_eq!(c.limits.client_idle_timeout, None, "0 is off");
        let c = load("query_wait_timeout: 0\nidle_transaction_timeout: 2s\ntcp_keepidle: 30s\ntcp_keepcnt: 3\n").unwrap();
        assert_eq!(c.limits.query_wait_timeout, super::MAX_DURATION, "0 waits as long as it takes");
        assert_eq!(c.limits.idle_transaction_timeout, Some(Duration::from_secs(2)));
        assert_eq!((c.limits.tcp_keepidle, c.limits.tcp_keepcnt), (Some(Duration::from_secs(30)), Some(3)));
        let c = load("unix_socket_dir: ''\nunix_socket_mode: 0770\n").unwrap();
        assert_eq!((c.limits.unix_socket_dir, c.limits.unix_socket_mode), (None, 0o770), "'' is off; the mode is octal");
        let c = load("unix_socket_dir: /run/pgsplit\nunix_socket_mode: '0700'\n").unwrap();
        assert_eq!((c.limits.unix_socket_dir.as_deref(), c.limits.unix_socket_mode), (Some("/run/pgsplit"), 0o700));
    }

    #[test]
    fn impossible_limits_are_each_reported() {
        let e =
            load("server_lifetime: 0\nlisten_backlog: 0\ntcp_keepcnt: 0\ntcp_keepidle: 10ms\nso_reuseport: maybe\n").unwrap_err();
        let text = e.to_string();
        for key in ["server_lifetime", "listen_backlog", "tcp_keepcnt", "tcp_keepidle", "so_reuseport"] {
            assert!(text.contains(key), "{key} not reported: {text}");
        }
        let text = load("unix_socket_mode: 0789\n").unwrap_err().to_string();
        assert!(text.contains("unix_socket_mode") && text.contains("octal"), "{text}");
        let text = load("unix_socket_mode: 01777\n").unwrap_err().to_string();
        assert!(text.contains("unix_socket_mode"), "setuid/sticky bits are refused: {text}");
        // YAML reads 0o770 as 504 and 770 as decimal: refused, never taken for another mode.
        for number in ["0o770", "770"] {
            let text = load(&format!("unix_socket_mode: {number}\n")).unwrap_err().to_string();
            assert!(text.contains("unix_socket_mode") && text.contains("leading zero"), "{number}: {text}");
        }
        let c = load("unix_socket_mode: '0o750'\n").unwrap();
        assert_eq!(c.limits.unix_socket_mode, 0o750);
    }
}
