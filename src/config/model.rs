//! The configuration's types: what `routing.yaml` means once loaded (SPEC §2).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address clients connect to.
    pub listen: String,
    /// Client-side TLS.
    pub tls: ClientTls,
    /// Address of the health and metrics endpoint.
    pub http: Option<String>,
    /// Split by schema, or everything to `single_target`. With `mode_store`, only what the store starts with.
    pub mode: Mode,
    /// The target whose table `pgsplit.mode` holds the mode every instance follows (`app::mode_store`).
    pub mode_store: Option<String>,
    /// The logical database name clients connect to.
    pub database: String,
    /// Where statements that touch no routed schema go.
    pub default_target: String,
    /// Where everything goes in single mode.
    pub single_target: String,
    /// The real databases, in file order.
    pub targets: Vec<Target>,
    /// Who may connect to pgsplit.
    pub users: Vec<User>,
    /// Users allowed on the admin console.
    pub admin_users: Vec<String>,
    /// Byte budget of the route decision cache.
    pub route_cache_bytes: usize,
    /// Period of catalog snapshot refreshes.
    pub catalog_refresh: Duration,
    /// How long a target's server connections must stay above its `alert_connections` before the alert is raised.
    pub alert_sustain: Duration,
    /// On SIGTERM/SIGINT, how long open sessions may go on before pgsplit exits anyway.
    pub shutdown_timeout: Duration,
    /// How long a client may take from connecting to logging in (startup, TLS, authentication) before it is
    /// disconnected (PgBouncer's `client_login_timeout`).
    pub client_login_timeout: Duration,
    /// How long a new connection may take to send its StartupMessage (after any SSLRequest and TLS handshake) before
    /// it is disconnected: real clients send it at once; a silent connection is not let hold a login slot for long.
    pub client_first_packet_timeout: Duration,
    /// Most logged-in clients, admin console included (PgBouncer's `max_client_conn`); one more gets 53300.
    pub max_client_conn: usize,
    /// PgBouncer's limits and timeouts: idle clients, statements, waits, server connections' life, sockets.
    pub limits: super::Limits,
    /// Threads that run sessions, pools and the rest (`pgsplit serve`; 1: a single event loop on the main thread,
    /// as PgBouncer's). Read at start only.
    pub workers: usize,
    /// Most connections between accept and the end of authentication; past it the oldest silent one is dropped,
    /// or the new one gets 53300. Counted apart from `max_client_conn` so anonymous connections cannot fill it.
    pub max_login_conn: usize,
    /// Period of the background health probes (which also sample connection alerts).
    pub health_interval: Duration,
    /// The period SHOW STATS_AVERAGES averages over (PgBouncer's `stats_period`; default 60 s, fixed at start).
    pub stats_period: Duration,
    /// How clients authenticate (PgBouncer's `auth_type`).
    pub auth_type: AuthType,
    /// Looking up verifiers of users not in `users` on a target (PgBouncer's `auth_query`), when configured.
    pub auth_query: Option<AuthQuery>,
    /// How long a client keeps its server connections (PgBouncer's `pool_mode`) in the logical database, unless its
    /// user says otherwise.
    pub pool_mode: PoolMode,
    /// Under transaction pooling, a client's unnamed Parse is served from a statement prepared on the server under a
    /// name of pgsplit's (`session::prepared`), parsed and planned once per server connection instead of at every
    /// query; the client still sees its own unnamed statement. Read at each login.
    pub prepare_unnamed: bool,
    /// PgBouncer's `*` database: a client that names any database other than the logical one, the admin console
    /// and the targets' names reaches the database of that name on this target's server, with the target's login,
    /// TLS, pool settings and `pool_mode` (a pool per database, made at its first login, dropped once unused and
    /// empty). Unset: such names are 3D000.
    pub any_database: Option<String>,
    /// The session cache (SPEC §11): `None` when no table is cached.
    pub cache: Option<CacheConfig>,
    /// `migrations.table`: the table `pgsplit migrate` records applied migrations in on each target (unqualified:
    /// in the first schema the target owns). `None`: `schema_migrations`.
    pub migrations_table: Option<String>,
}

/// `cache:`: reads of these tables answered from memory (`crate::cache`).
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    /// Budget of every entry's key, reply and bookkeeping together.
    pub max_bytes: usize,
    /// The largest reply kept (and the most a session's capture holds).
    pub max_entry_bytes: usize,
    /// LISTEN on each target that owns a cached table, for the trigger's notifications (default true).
    pub listen: bool,
    /// How often the `SessionCache` line is logged (PgBouncer's `stats_period`; default 60 s).
    pub stats_period: Duration,
    /// The cached tables, in file order.
    pub tables: Vec<CachedTable>,
}

/// One cached table.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedTable {
    /// Its schema, as PostgreSQL names it (case-folded unless quoted).
    pub schema: String,
    /// Its name, likewise.
    pub name: String,
    /// How long an entry may be served without the server.
    pub ttl: Duration,
    /// The target that owns the schema.
    pub target: String,
    /// The column reads and writes are confined by (`WHERE key = $1`): a write to one key value evicts only that
    /// value's entries (and those of reads not confined to a key). Case-folded unless quoted.
    pub key: Option<String>,
}

impl Config {
    /// A target by name.
    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// The target that owns a schema.
    pub fn target_of_schema(&self, schema: &str) -> Option<&str> {
        self.targets.iter().find(|t| t.schemas.iter().any(|s| s == schema)).map(|t| t.name.as_str())
    }
}

/// How long a client keeps a server connection (PgBouncer's `pool_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// From the first statement of a transaction to its end (what pins a session keeps it longer).
    #[default]
    Transaction,
    /// For the whole session: the client's own backends, the real process id in BackendKeyData; reset with
    /// `DISCARD ALL` and given back to the pool when the client leaves.
    Session,
}

impl PoolMode {
    /// The word in `routing.yaml` and the admin console.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::Transaction => "transaction",
            PoolMode::Session => "session",
        }
    }
}

/// Routing mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Route by schema.
    Split,
    /// Send everything to `single_target` (the rollback).
    Single,
}

impl Mode {
    /// The word in `routing.yaml`, logs and the admin console.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Split => "split",
            Mode::Single => "single",
        }
    }
}

/// Client TLS settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    /// disabled | optional | required.
    pub mode: ClientTlsMode,
    /// Server certificate chain (PEM) presented to clients.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[serde(default)]
    pub key: Option<PathBuf>,
}

impl Default for ClientTls {
    fn default() -> Self {
        ClientTls { mode: ClientTlsMode::Disabled, cert: None, key: None }
    }
}

/// Whether clients may or must use TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientTlsMode {
    /// SSLRequest answered `N`.
    Disabled,
    /// TLS when the client asks.
    Optional,
    /// Plain connections are refused.
    Required,
}

/// A real database.
#[derive(Debug, Clone)]
pub struct Target {
    /// The target's name (routing, hints, passthrough database name).
    pub name: String,
    /// Where and as whom to connect, parsed from the URL.
    pub server: ServerAddr,
    /// TLS towards the server.
    pub tls: ServerTls,
    /// Pool sizes and timeouts.
    pub pool: PoolConfig,
    /// Schemas this target owns.
    pub schemas: Vec<String>,
    /// Whether the address is itself a transaction pooler (PgBouncer).
    pub upstream: Upstream,
    /// More open server connections than this, sustained for `alert_sustain`, raise a connection alert.
    pub alert_connections: Option<u32>,
    /// `pool_mode` of clients connected with this target's name as the database (passthrough); the top-level
    /// `pool_mode` when unset.
    pub pool_mode: Option<PoolMode>,
}

/// Host, port and login from a target's URL.
#[derive(Clone)]
pub struct ServerAddr {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Login role.
    pub user: String,
    /// Password (never printed).
    pub password: Option<String>,
    /// Database.
    pub dbname: String,
}

impl std::fmt::Debug for ServerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}:{}/{}", self.user, self.host, self.port, self.dbname)
    }
}

/// TLS towards a server.
#[derive(Debug, Clone, Default)]
pub struct ServerTls {
    /// disable | allow | prefer | require | verify-ca | verify-full (libpq's `sslmode`).
    pub mode: ServerTlsMode,
    /// CA certificates (PEM) to verify the server with.
    pub ca: Option<PathBuf>,
}

/// libpq's sslmode values pgsplit supports towards servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerTlsMode {
    /// Plain TCP.
    #[default]
    Disable,
    /// libpq's `allow` (plain first, TLS if the server insists) is taken as `prefer`: TLS first, plain TCP when the
    /// server has none. It connects where libpq's would, and never in plain text to a server that offers TLS.
    Allow,
    /// TLS without verification when the server offers it, plain TCP when it answers the SSLRequest with `N`.
    Prefer,
    /// TLS without verification.
    Require,
    /// TLS, chain verified.
    VerifyCa,
    /// TLS, chain and host name verified.
    VerifyFull,
}

/// Pool settings of a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Most server connections.
    pub max: u32,
    /// Idle connections kept.
    pub min: u32,
    /// How long a client waits for a connection.
    pub checkout_timeout: Duration,
    /// Idle connections above `min` close after this.
    pub idle_timeout: Option<Duration>,
    /// Connections are replaced after this age.
    pub max_lifetime: Option<Duration>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max: 20,
            min: 0,
            checkout_timeout: super::limits::DEFAULT_QUERY_WAIT_TIMEOUT,
            idle_timeout: Some(super::limits::DEFAULT_SERVER_IDLE_TIMEOUT),
            max_lifetime: Some(super::limits::DEFAULT_SERVER_LIFETIME),
        }
    }
}

/// What sits at a target's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Upstream {
    /// PostgreSQL itself.
    #[default]
    Direct,
    /// A pooler in transaction mode: no session state may survive a transaction.
    TransactionPooler,
}

/// How clients prove their password (PgBouncer's `auth_type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuthType {
    /// SCRAM-SHA-256 for everyone.
    #[default]
    ScramSha256,
    /// md5 for users whose password is in clear or stored as md5; SCRAM-SHA-256 for those stored as SCRAM.
    Md5,
}

/// `auth_query`: where and how a client's verifier is looked up, and how long it is kept.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthQuery {
    /// The query, `$1` the user name; returns (name, verifier).
    pub sql: String,
    /// The target it runs on.
    pub target: String,
    /// The login it runs as (none: the target URL's).
    pub user: Option<String>,
    /// That login's password.
    pub password: Option<String>,
    /// How long an answer is reused.
    pub ttl: Duration,
    /// Most users kept.
    pub size: usize,
}

impl std::fmt::Debug for AuthQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuthQuery({:?} on {} as {:?})", self.sql, self.target, self.user)
    }
}

/// A client user.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Plaintext password or a `SCRAM-SHA-256$...` verifier.
    pub password: String,
    /// This user's `pool_mode`, over the database's (as in PgBouncer's `[users]`).
    #[serde(default)]
    pub pool_mode: Option<PoolMode>,
    /// The role its server connections log in as on every target, unless `targets` says otherwise (`ServerLogin`'s
    /// fields, spelled out: serde cannot flatten a struct into one that denies unknown fields).
    #[serde(default)]
    pub server_user: Option<String>,
    /// Its password.
    #[serde(default)]
    pub server_password: Option<String>,
    /// A role its server connections take at login (`ServerLogin`).
    #[serde(default)]
    pub role: Option<String>,
    /// Per target (by name): the login its server connections use there, over `server`.
    #[serde(default)]
    pub targets: std::collections::BTreeMap<String, ServerLogin>,
}

/// How a user's server connections log in to a target (issue 20): as `server_user` (with `server_password`), and/or
/// taking `role` at login (the `role` startup parameter: `current_user` is that role from the first statement, and
/// neither `RESET ROLE` nor `DISCARD ALL` leaves it). None given: the client's own name when the target has that login
/// role and pgsplit knows the client's password in clear, else the target URL's login.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerLogin {
    /// The role to log in as.
    #[serde(default)]
    pub server_user: Option<String>,
    /// Its password (none: the server asks for none, or the target URL's password when `server_user` is unset).
    #[serde(default)]
    pub server_password: Option<String>,
    /// A role to take at login (`SET ROLE`), on the URL's login or `server_user`.
    #[serde(default)]
    pub role: Option<String>,
}

impl ServerLogin {
    /// Whether anything is configured.
    pub fn is_set(&self) -> bool {
        self.server_user.is_some() || self.role.is_some() || self.server_password.is_some()
    }

    /// `self` over `base`: each field set here wins.
    pub fn over(&self, base: &ServerLogin) -> ServerLogin {
        ServerLogin {
            server_user: self.server_user.clone().or_else(|| base.server_user.clone()),
            server_password: self.server_password.clone().or_else(|| base.server_password.clone()),
            role: self.role.clone().or_else(|| base.role.clone()),
        }
    }
}

impl User {
    /// How its server connections log in to `target`: the target's own entry over the user's.
    pub fn login_on(&self, target: &str) -> ServerLogin {
        let base = ServerLogin {
            server_user: self.server_user.clone(),
            server_password: self.server_password.clone(),
            role: self.role.clone(),
        };
        match self.targets.get(target) {
            Some(t) => t.over(&base),
            None => base,
        }
    }
}

impl std::fmt::Debug for ServerLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerLogin({:?}, role {:?})", self.server_user, self.role)
    }
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "User({})", self.name)
    }
}
