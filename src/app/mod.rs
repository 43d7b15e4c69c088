//! App: everything a session needs, built once from the configuration and passed explicitly (no globals):
//! routing table and cache, the targets' pools, client users and TLS. This file holds the state and its accessors;
//! the jobs done over it have a file each.

mod analysis;
mod auth;
mod cancel;
mod catalogs;
mod databases;
mod health;
mod logins;
pub mod mode_store;
mod params;
mod reload;
mod targets;
pub mod timeouts;
mod tls;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_rustls::TlsAcceptor;

use crate::auth::UserStore;
use crate::backend::Backend;
use crate::cancel::CancelRegistry;
use crate::catalog::Catalog;
pub use crate::config::ClientTlsMode;
use crate::config::{Config, Mode};
use crate::router::{RouteCache, RoutingTable, TargetId};

pub use catalogs::CatalogError;
pub use reload::{ReloadError, Reloaded};
pub use targets::target_spec;

/// The routing table a configuration describes (target names, schema owners, default target).
pub fn routing_table_of(config: &Config) -> RoutingTable {
    routing_table(config)
}
use targets::{pool_settings, routing_table};

/// Why the configuration could not be turned into a running App.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A TLS file could not be read or used.
    #[error("{0}")]
    Tls(String),
    /// A configured user's password is unusable.
    #[error("user \"{user}\": {reason}")]
    User {
        /// The user.
        user: String,
        /// Why.
        reason: String,
    },
}

/// The running proxy's shared state.
pub struct App {
    /// The configuration in force; replaced whole by a reload.
    config: ArcSwap<Config>,
    /// Where the configuration was read from, for RELOAD and SIGHUP.
    source: Option<std::path::PathBuf>,
    /// The logical database name clients connect to (fixed for the process).
    database: String,
    /// Client TLS mode (fixed for the process).
    tls_mode: ClientTlsMode,
    /// Routing mode in force: `MODE_SPLIT` or `MODE_SINGLE`. Switched by the admin console, RELOAD or SIGHUP.
    mode: std::sync::atomic::AtomicU8,
    /// Target names and schema ownership, for the router; replaced by a reload.
    table: ArcSwap<RoutingTable>,
    /// Analyses by statement text.
    cache: RouteCache,
    /// Which relations live in which schema on each target; replaced whole when a target's snapshot is re-read.
    catalog: ArcSwap<Catalog>,
    /// Every client's cancel key and the statement it has in flight.
    cancels: CancelRegistry,
    /// Sessions that keep a server connection of their own (LISTEN, temporary tables, ...), for metrics.
    pinned: std::sync::atomic::AtomicUsize,
    /// One pool per target, indexed by `TargetId`.
    backends: Vec<Backend>,
    /// Pools of databases reached through `any_database` (PgBouncer's `*`), by name.
    databases: databases::Databases,
    /// Client users and their SCRAM verifiers; replaced by a reload.
    users: ArcSwap<UserStore>,
    /// Client-side TLS, when enabled; rebuilt from the files at each reload (renewed certificates).
    tls: arc_swap::ArcSwapOption<TlsAcceptor>,
    /// `client_idle_timeout` and `idle_transaction_timeout`, for the sessions.
    idle_limits: timeouts::IdleLimits,
    /// The fleet's shared mode, when `mode_store` names a target (fixed for the process).
    mode_store: Option<Arc<mode_store::ModeStore>>,
    /// Target of every statement in single mode.
    single_target: std::sync::atomic::AtomicUsize,
    /// Bumped whenever a reload changes the routes: statements prepared under older routes are routed again.
    routes_generation: std::sync::atomic::AtomicU64,
    /// Moved on after every swap of `table` or `catalog`: a session's decision memo (`router::DecisionMemo`) made at
    /// this generation still holds, without loading either.
    routing_inputs: std::sync::atomic::AtomicU64,
    /// Serialises reloads (RELOAD, SIGHUP) so two never interleave.
    reloading: tokio::sync::Mutex<()>,
    /// Set when pgsplit shuts down: sessions at rest end, sessions in a transaction end with it. An atomic flag,
    /// as every session checks it before each wait for its client.
    is_draining: std::sync::atomic::AtomicBool,
    /// Counters the sessions bump, exported on `/metrics` (per-target ones live in each backend).
    metrics: crate::metrics::Metrics,
    /// The session cache (SPEC §11), when tables are configured for it (fixed for the process).
    session_cache: Option<Arc<crate::cache::SessionCache>>,
    /// Fired by the admin console's SHUTDOWN: the token `run` serves until (set when it starts).
    shutdown: std::sync::OnceLock<tokio_util::sync::CancellationToken>,
    /// Which login roles the targets have (`logins`).
    login_roles: logins::LoginRoles,
    /// Secrets `auth_query` found (`auth`).
    auth_cache: auth::AuthCache,
}

/// `App::mode` holding split mode.
const MODE_SPLIT: u8 = 0;
/// `App::mode` holding single mode.
const MODE_SINGLE: u8 = 1;

/// A mode as `App::mode` holds it.
fn mode_byte(m: Mode) -> u8 {
    match m {
        Mode::Split => MODE_SPLIT,
        Mode::Single => MODE_SINGLE,
    }
}

impl App {
    /// Builds the App: TLS material is read, verifiers computed, pools created (connections open lazily).
    pub fn build(config: Config) -> Result<App, AppError> {
        let table = routing_table(&config);
        let mut backends = Vec::new();
        for t in &config.targets {
            backends.push(Backend::new(target_spec(t)?, &pool_settings(t, config.workers, targets::listens_on(&config, t))));
        }
        let users = user_store(&config)?;
        let tls = match config.tls.mode {
            ClientTlsMode::Disabled => None,
            _ => Some(Arc::new(tls::acceptor(&config)?)),
        };
        let idle_limits = timeouts::IdleLimits::default();
        idle_limits.store(&config.limits);
        crate::net::set_keepalive(&config.limits);
        let single_target = table.target_id(&config.single_target).unwrap_or(table.default_target);
        let mode_store =
            config.mode_store.as_deref().and_then(|t| table.target_id(t)).map(|t| Arc::new(mode_store::ModeStore::new(t)));
        let cache = RouteCache::new(config.route_cache_bytes);
        let session_cache = config.cache.as_ref().map(|c| Arc::new(crate::cache::SessionCache::new(c, &table)));
        let catalog = ArcSwap::from_pointee(Catalog::unknown(backends.len()));
        let auth_cache = auth::AuthCache::new(config.auth_query.as_ref().map_or(1, |q| q.size));
        Ok(App {
            source: None,
            database: config.database.clone(),
            tls_mode: config.tls.mode,
            mode: mode_byte(config.mode).into(),
            config: ArcSwap::from_pointee(config),
            table: ArcSwap::from_pointee(table),
            cache,
            catalog,
            cancels: CancelRegistry::default(),
            pinned: Default::default(),
            backends,
            databases: Default::default(),
            users: ArcSwap::from_pointee(users),
            tls: arc_swap::ArcSwapOption::new(tls),
            idle_limits,
            mode_store,
            single_target: single_target.into(),
            routes_generation: Default::default(),
            routing_inputs: Default::default(),
            reloading: Default::default(),
            is_draining: Default::default(),
            metrics: Default::default(),
            session_cache,
            shutdown: Default::default(),
            login_roles: Default::default(),
            auth_cache,
        })
    }

    /// Remembers the file the configuration came from, for RELOAD and SIGHUP.
    pub fn with_source(mut self, path: impl Into<std::path::PathBuf>) -> App {
        self.source = Some(path.into());
        self
    }

    /// Switches the routing mode. Transactions already open finish where they are; each session's next
    /// transaction follows the new mode.
    pub fn set_mode(&self, mode: Mode) {
        let old = self.mode.swap(mode_byte(mode), std::sync::atomic::Ordering::SeqCst);
        if old != mode_byte(mode) {
            tracing::warn!(mode = mode.as_str(), "routing mode switched");
            // Writes made in the other mode went where the cache could not follow them.
            if let Some(c) = &self.session_cache {
                c.clear();
            }
        }
    }

    /// How many reloads changed the routes so far.
    pub fn routes_generation(&self) -> u64 {
        self.routes_generation.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The routing mode in force. Every read of the mode goes through here.
    pub fn mode(&self) -> Mode {
        match self.mode.load(std::sync::atomic::Ordering::Relaxed) {
            MODE_SINGLE => Mode::Single,
            _ => Mode::Split,
        }
    }

    /// Whether every statement goes to `single_target`.
    pub fn is_single(&self) -> bool {
        self.mode() == Mode::Single
    }

    /// `run` serves until `token` fires; SHUTDOWN on the admin console fires it.
    pub fn serve_until(&self, token: tokio_util::sync::CancellationToken) {
        let _ = self.shutdown.set(token);
    }

    /// SHUTDOWN: pgsplit stops as on SIGTERM (`run`). False when it is not serving (a library caller's App).
    pub fn shut_down(&self) -> bool {
        self.shutdown.get().map(|t| t.cancel()).is_some()
    }

    /// Ends a stats period (`stats_period`): each pool's averages over it (SHOW STATS_AVERAGES).
    pub fn roll_stats(&self, period: Duration) {
        for b in &self.backends {
            b.stats.roll(period);
        }
        for (_, b) in self.database_pools() {
            b.stats.roll(period);
        }
    }

    /// Whether pgsplit is draining: one atomic load.
    pub fn is_draining(&self) -> bool {
        self.is_draining.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Starts draining: the flag is set and every session is woken through its own slot.
    pub fn start_draining(&self) {
        self.is_draining.store(true, std::sync::atomic::Ordering::Release);
        for (_, slot) in self.cancels.all() {
            slot.drain.wake();
        }
    }

    /// Process-wide counters for `/metrics`.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// The routing table.
    pub fn table(&self) -> arc_swap::Guard<Arc<RoutingTable>> {
        self.table.load()
    }

    /// The catalog snapshot in force.
    pub fn catalog(&self) -> arc_swap::Guard<Arc<Catalog>> {
        self.catalog.load()
    }

    /// The generation of the routing table and the catalog (`routing_inputs`); read it before loading them.
    #[inline]
    pub fn routing_inputs(&self) -> u64 {
        self.routing_inputs.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The routing table or the catalog was swapped.
    fn routing_inputs_changed(&self) {
        self.routing_inputs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// How often catalogs are re-read in the background.
    pub fn catalog_refresh(&self) -> Duration {
        self.config().catalog_refresh
    }

    /// The decision cache (for figures).
    pub fn cache(&self) -> &RouteCache {
        &self.cache
    }

    /// A target's backend.
    pub fn backend(&self, t: TargetId) -> &Backend {
        &self.backends[t.min(self.backends.len() - 1)]
    }

    /// The session cache, when tables are configured for it.
    pub fn session_cache(&self) -> Option<&Arc<crate::cache::SessionCache>> {
        self.session_cache.as_ref()
    }

    /// All backends, in target order.
    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// Where everything goes in single mode.
    pub fn single_target(&self) -> TargetId {
        self.single_target.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Client users.
    pub fn users(&self) -> arc_swap::Guard<Arc<UserStore>> {
        self.users.load()
    }

    /// The logical database name clients connect to.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// How long `user`'s sessions keep their server connections (PgBouncer's precedence): the user's `pool_mode`,
    /// else the database's (a passthrough target's own, else the top-level one).
    pub fn pool_mode(&self, user: &str, passthrough: Option<TargetId>) -> crate::config::PoolMode {
        let config = self.config();
        let of_user = config.users.iter().find(|u| u.name == user).and_then(|u| u.pool_mode);
        let of_target = passthrough.and_then(|t| config.target(self.backend(t).name())).and_then(|t| t.pool_mode);
        of_user.or(of_target).unwrap_or(config.pool_mode)
    }

    /// The target whose backend a session-mode client is given at login (its BackendKeyData): a passthrough
    /// session's target, else where statements naming nothing go now.
    pub fn home_target(&self, passthrough: Option<TargetId>) -> TargetId {
        passthrough.unwrap_or_else(|| if self.is_single() { self.single_target() } else { self.table().default_target })
    }

    /// The configuration in force.
    pub fn config(&self) -> arc_swap::Guard<Arc<Config>> {
        self.config.load()
    }

    /// Client TLS mode.
    pub fn tls_mode(&self) -> ClientTlsMode {
        self.tls_mode
    }

    /// Client TLS acceptor, when enabled (the one the last reload built).
    pub fn tls(&self) -> Option<Arc<TlsAcceptor>> {
        self.tls.load_full()
    }

    /// The fleet's shared mode, when configured.
    pub fn mode_store(&self) -> Option<&Arc<mode_store::ModeStore>> {
        self.mode_store.as_ref()
    }

    /// `client_idle_timeout` and `idle_transaction_timeout` in force.
    pub fn idle_limits(&self) -> &timeouts::IdleLimits {
        &self.idle_limits
    }

    /// How many sessions are pinned to a server connection now.
    pub fn pinned_sessions(&self) -> &std::sync::atomic::AtomicUsize {
        &self.pinned
    }

    /// Client cancel keys.
    pub fn cancels(&self) -> &CancelRegistry {
        &self.cancels
    }
}

/// The client users of a configuration, with their verifiers.
fn user_store(config: &Config) -> Result<UserStore, AppError> {
    UserStore::new(config.users.iter().map(|u| (u.name.as_str(), u.password.as_str())))
        .map_err(|e| AppError::User { user: "?".into(), reason: e.to_string() })
}
