//! App: everything a session needs, built once from the configuration and passed explicitly (no globals):
//! routing table and cache, the targets' pools, client users and TLS.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::auth::UserStore;
use crate::backend::tls::{self, Verify};
use crate::backend::{Backend, PoolSettings, TargetSpec};
use crate::cancel::CancelRegistry;
use crate::catalog::{Catalog, TargetCatalog};
pub use crate::config::ClientTlsMode;
use crate::config::{Config, Mode, ServerTlsMode, Target};
use crate::router::cache::LookupMemo;
use crate::router::{RouteCache, RoutingTable, SharedAnalysis, TargetId};

/// How long a background health probe may take before the target counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long delivering a cancel to a server may take.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one catalog read may take before the old snapshot is kept.
const CATALOG_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Client users and their SCRAM verifiers; replaced by a reload.
    users: ArcSwap<UserStore>,
    /// Client-side TLS, when enabled.
    tls: Option<TlsAcceptor>,
    /// Target of every statement in single mode.
    single_target: std::sync::atomic::AtomicUsize,
    /// Bumped whenever a reload changes the routes: statements prepared under older routes are routed again.
    routes_generation: std::sync::atomic::AtomicU64,
    /// Serialises reloads (RELOAD, SIGHUP) so two never interleave.
    reloading: tokio::sync::Mutex<()>,
    /// Set when pgsplit shuts down: sessions at rest end, sessions in a transaction end with it. An atomic flag,
    /// as every session checks it before each wait for its client.
    is_draining: std::sync::atomic::AtomicBool,
    /// Counters the sessions bump, exported on `/metrics` (per-target ones live in each backend).
    metrics: crate::metrics::Metrics,
}

const MODE_SPLIT: u8 = 0;
const MODE_SINGLE: u8 = 1;

fn mode_byte(m: Mode) -> u8 {
    match m {
        Mode::Split => MODE_SPLIT,
        Mode::Single => MODE_SINGLE,
    }
}

/// What a reload changed, for the log and the admin console.
#[derive(Debug, Default)]
pub struct Reloaded {
    /// Human-readable changes, one per item.
    pub changes: Vec<String>,
}

impl App {
    /// Builds the App: TLS material is read, verifiers computed, pools created (connections open lazily).
    pub fn build(config: Config) -> Result<App, AppError> {
        let table = routing_table(&config);
        let mut backends = Vec::new();
        for t in &config.targets {
            backends.push(Backend::new(target_spec(t)?, &pool_settings(t)));
        }
        let users = user_store(&config)?;
        let tls = match config.tls.mode {
            ClientTlsMode::Disabled => None,
            _ => Some(acceptor(&config)?),
        };
        let single_target = table.target_id(&config.single_target).unwrap_or(table.default_target);
        let cache = RouteCache::new(config.route_cache_bytes);
        let catalog = ArcSwap::from_pointee(Catalog::unknown(backends.len()));
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
            users: ArcSwap::from_pointee(users),
            tls,
            single_target: single_target.into(),
            routes_generation: Default::default(),
            reloading: Default::default(),
            is_draining: Default::default(),
            metrics: Default::default(),
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
        }
    }

    /// Re-reads the configuration file and applies it: routes, default and single targets, users, pool sizes and
    /// checkout timeouts, alert thresholds, and `mode` if the file's value changed since it was last read. Anything
    /// that needs a restart (targets added, removed or re-addressed, listen addresses, TLS files) makes the reload
    /// fail: the running configuration stays, and the error says why.
    pub async fn reload(&self) -> Result<Reloaded, String> {
        let _one = self.reloading.lock().await;
        let Some(path) = &self.source else { return Err("pgsplit was not started from a configuration file".into()) };
        let new = crate::config::load_file(path).map_err(|e| e.to_string())?;
        let old = self.config.load_full();
        let restart = needs_restart(&old, &new);
        if !restart.is_empty() {
            return Err(format!("{} changed: restart pgsplit to apply it (nothing was changed)", restart.join(", ")));
        }
        let users = user_store(&new).map_err(|e| e.to_string())?;
        let mut done = Reloaded::default();
        let table = routing_table(&new);
        let routes_changed = table.schemas != self.table().schemas || table.default_target != self.table().default_target;
        if routes_changed {
            done.changes.push("routes".into());
        }
        let single = table.target_id(&new.single_target).unwrap_or(table.default_target);
        if single != self.single_target() {
            done.changes.push(format!("single_target = {}", new.single_target));
        }
        if new.users != old.users {
            done.changes.push("users".into());
        }
        for ((b, t), o) in self.backends.iter().zip(&new.targets).zip(&old.targets) {
            if t.pool != o.pool {
                b.resize(&pool_settings(t));
                done.changes.push(format!("pool of {}: max {}", t.name, t.pool.max));
            }
            if t.alert_connections != o.alert_connections {
                done.changes.push(format!("alert_connections of {}", t.name));
            }
        }
        self.table.store(Arc::new(table));
        if routes_changed {
            self.routes_generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        self.single_target.store(single, std::sync::atomic::Ordering::SeqCst);
        self.users.store(Arc::new(users));
        let file_mode_changed = new.mode != old.mode;
        let mode = new.mode;
        self.config.store(Arc::new(new));
        if file_mode_changed {
            self.set_mode(mode);
            done.changes.push(format!("mode = {}", mode.as_str()));
        }
        tracing::info!(changes = ?done.changes, "configuration reloaded");
        Ok(done)
    }

    /// The analysis of a statement. In single mode routing needs none, so only texts that may change session state
    /// (SET, RESET, DISCARD, set_config) are analysed, for the session to follow them; others give `None`.
    pub fn analysis(&self, sql: &str) -> Option<SharedAnalysis> {
        self.analysis_for(sql, self.is_single(), &mut Default::default())
    }

    /// `analysis` for a session that routes in single mode (`single`) or split mode, whatever the mode is now, with
    /// the session's memo of its last lookup.
    pub fn analysis_for(&self, sql: &str, single: bool, memo: &mut LookupMemo) -> Option<SharedAnalysis> {
        if single && !may_change_session(sql) {
            None
        } else {
            Some(self.cache.analysis_memo(sql, memo))
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

    /// Re-reads one target's catalog over a pooled connection; on failure the previous snapshot stays.
    pub async fn refresh_catalog(&self, target: TargetId) -> Result<usize, String> {
        let backend = self.backend(target);
        let read = async {
            let mut conn = backend.checkout().await.map_err(|e| e.to_string())?;
            // A timeout that drops the read half-way leaves the connection broken (each exchange is guarded).
            let snapshot = TargetCatalog::load(&mut conn).await;
            if snapshot.is_err() {
                conn.retire();
            }
            snapshot.map_err(|e| e.to_string())
        };
        let snapshot = match tokio::time::timeout(CATALOG_TIMEOUT, read).await {
            Ok(r) => r?,
            Err(_) => return Err(format!("reading the catalog of target \"{}\" timed out", backend.name())),
        };
        let objects = snapshot.len();
        let snapshot = Arc::new(snapshot);
        self.catalog.rcu(|c| c.with_target(target, snapshot.clone()));
        tracing::debug!(target = backend.name(), objects, "catalog refreshed");
        Ok(objects)
    }

    /// At start: every target is tried once, all at once, and the catalogs of those that answered are read; a target
    /// down since start (refused, or its certificate refused) is not waited for — the health probes read its catalog
    /// when it comes back. Logins are thus never held up by one target being down.
    pub async fn first_catalogs(&self) {
        let reads = (0..self.backends.len()).map(|t| async move {
            if self.backend(t).reachable().await {
                if let Err(e) = self.refresh_catalog(t).await {
                    tracing::warn!(target = self.backend(t).name(), error = %e, "catalog not read");
                }
            }
        });
        join_all(reads.collect()).await;
    }

    /// Re-reads every target's catalog; a target that cannot be read is logged and keeps its old snapshot.
    pub async fn refresh_catalogs(&self) {
        for t in 0..self.backends.len() {
            if let Err(e) = self.refresh_catalog(t).await {
                tracing::warn!(target = self.backend(t).name(), error = %e, "catalog not refreshed");
            }
        }
    }

    /// Opens each target's `min` connections (at start; the probes keep them topped up).
    pub async fn open_min_connections(&self) {
        for backend in &self.backends {
            backend.keep_min(PROBE_TIMEOUT).await;
        }
    }

    /// Probes every target; a target that is back (or whose catalog was never read) gets its catalog re-read.
    pub async fn probe_targets(&self) {
        for t in 0..self.backends.len() {
            let backend = self.backend(t);
            let was_up = backend.is_up();
            let up = backend.probe(PROBE_TIMEOUT).await;
            if up && !was_up {
                tracing::info!(target = backend.name(), "target reachable again");
            }
            if up {
                backend.keep_min(PROBE_TIMEOUT).await;
            }
            if up && (!was_up || self.catalog().target(t).is_none()) {
                if let Err(e) = self.refresh_catalog(t).await {
                    tracing::warn!(target = backend.name(), error = %e, "catalog not refreshed");
                }
            }
        }
        self.check_connection_alerts();
    }

    /// Samples each target's open server connections against its `alert_connections` (called at every probe tick):
    /// the alert is raised, with a warning, once every sample for `alert_sustain` was above the threshold, and
    /// cleared, with an info line, at the first sample that is not.
    pub fn check_connection_alerts(&self) {
        use crate::metrics::AlertChange;
        let now = std::time::Instant::now();
        let config = self.config();
        let sustain = config.alert_sustain;
        for (b, t) in self.backends.iter().zip(&config.targets) {
            let Some(threshold) = t.alert_connections else { continue };
            let (connections, _) = b.pool_state();
            match b.stats.alert.observe(connections, threshold, sustain, now) {
                Some(AlertChange::Raised) => tracing::warn!(
                    target = b.name(),
                    connections,
                    threshold,
                    sustained = ?sustain,
                    "connection alert: target has more server connections than its threshold"
                ),
                Some(AlertChange::Cleared) => {
                    tracing::info!(target = b.name(), connections, threshold, "connection alert cleared")
                }
                None => {}
            }
        }
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

    /// The configuration in force.
    pub fn config(&self) -> arc_swap::Guard<Arc<Config>> {
        self.config.load()
    }

    /// Client TLS mode.
    pub fn tls_mode(&self) -> ClientTlsMode {
        self.tls_mode
    }

    /// Client TLS acceptor, when enabled.
    pub fn tls(&self) -> Option<&TlsAcceptor> {
        self.tls.as_ref()
    }

    /// Server parameters to greet clients with, never invented: `target`'s when known, else any target's known ones
    /// at once (a target down since start does not hold up logins for the others), else those of the first target
    /// that answers a connection (each within its checkout timeout). Empty when no target answers: the greeting
    /// then says so (`session::startup`).
    pub async fn server_params(&self, target: TargetId) -> Vec<(String, String)> {
        let known = std::iter::once(self.backend(target)).chain(self.backends.iter()).map(Backend::server_params);
        if let Some(params) = known.into_iter().find(|p| !p.is_empty()) {
            return params;
        }
        // None known yet (every target was down at start): the first target to answer gives them.
        let mut attempts: Vec<_> = self
            .backends
            .iter()
            .map(|b| Box::pin(async move { b.checkout().await.map(drop).map(|()| b.server_params()) }))
            .collect();
        std::future::poll_fn(|cx| {
            let mut i = 0;
            while i < attempts.len() {
                match attempts[i].as_mut().poll(cx) {
                    std::task::Poll::Ready(Ok(p)) if !p.is_empty() => return std::task::Poll::Ready(p),
                    std::task::Poll::Ready(_) => {
                        drop(attempts.swap_remove(i));
                    }
                    std::task::Poll::Pending => i += 1,
                }
            }
            if attempts.is_empty() {
                std::task::Poll::Ready(Vec::new())
            } else {
                std::task::Poll::Pending
            }
        })
        .await
    }

    /// How many sessions are pinned to a server connection now.
    pub fn pinned_sessions(&self) -> &std::sync::atomic::AtomicUsize {
        &self.pinned
    }

    /// Client cancel keys.
    pub fn cancels(&self) -> &CancelRegistry {
        &self.cancels
    }

    /// A CancelRequest from a client: a client waiting for a server connection stops waiting; a statement in flight
    /// is cancelled on its server. The statement cannot finish and its connection go to another client while the
    /// cancel is being delivered (the slot's lock is held meanwhile). Unknown keys are ignored.
    pub async fn cancel(&self, pid: i32, secret: i32) {
        let Some(slot) = self.cancels.find(pid, secret) else {
            tracing::debug!(pid, "cancel request with an unknown key ignored");
            return;
        };
        slot.waiting.notify_waiters();
        let running = slot.running.lock().await;
        if let Some(r) = *running {
            let backend = self.backend(r.target);
            match tokio::time::timeout(CANCEL_TIMEOUT, crate::backend::conn::send_cancel(&backend.spec, r.key)).await {
                Ok(Ok(())) => tracing::info!(pid, target = backend.name(), "statement cancelled at the client's request"),
                Ok(Err(e)) => tracing::warn!(pid, target = backend.name(), error = %e, "cancel not delivered"),
                Err(_) => tracing::warn!(pid, target = backend.name(), "cancel not delivered: timed out"),
            }
        }
    }
}

fn user_store(config: &Config) -> Result<UserStore, AppError> {
    UserStore::new(config.users.iter().map(|u| (u.name.as_str(), u.password.as_str())))
        .map_err(|e| AppError::User { user: "?".into(), reason: e.to_string() })
}

/// What differs between two configurations that a running pgsplit cannot apply.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut what = Vec::new();
    if old.listen != new.listen {
        what.push("listen");
    }
    if old.http != new.http {
        what.push("http");
    }
    if old.database != new.database {
        what.push("database");
    }
    if old.tls != new.tls {
        what.push("tls");
    }
    /// What a running target is built from.
    fn addressed(c: &Config) -> Vec<String> {
        let t = c.targets.iter();
        t.map(|t| {
            let a = &t.server;
            format!(
                "{}|{}|{}|{}|{:?}|{}|{:?}|{:?}|{:?}",
                t.name, a.host, a.port, a.user, a.password, a.dbname, t.tls.mode, t.tls.ca, t.upstream
            )
        })
        .collect()
    }
    if addressed(old) != addressed(new) {
        what.push("targets (names, addresses, logins or TLS)");
    }
    what
}

fn routing_table(config: &Config) -> RoutingTable {
    let targets: Vec<String> = config.targets.iter().map(|t| t.name.clone()).collect();
    let mut schemas = HashMap::new();
    for (i, t) in config.targets.iter().enumerate() {
        for s in &t.schemas {
            schemas.insert(s.clone(), i);
        }
    }
    let default_target = targets.iter().position(|t| *t == config.default_target).unwrap_or(0);
    RoutingTable { targets, schemas, default_target }
}

fn pool_settings(t: &Target) -> PoolSettings {
    PoolSettings {
        max: t.pool.max,
        min: t.pool.min,
        checkout_timeout: t.pool.checkout_timeout,
        idle_timeout: t.pool.idle_timeout,
        max_lifetime: t.pool.max_lifetime,
    }
}

/// Runs futures concurrently to completion (a handful: one per target).
async fn join_all<F: Future<Output = ()>>(futures: Vec<F>) {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        futures.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if futures.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

/// How to reach a target, with its TLS client configuration built from the CA file.
pub fn target_spec(t: &Target) -> Result<TargetSpec, AppError> {
    let verify = match t.tls.mode {
        ServerTlsMode::Disable => None,
        ServerTlsMode::Require => Some(Verify::None),
        ServerTlsMode::VerifyCa => Some(Verify::Ca),
        ServerTlsMode::VerifyFull => Some(Verify::Full),
    };
    let tls = match verify {
        None => None,
        Some(v) => {
            let config =
                tls::client_config(v, t.tls.ca.as_deref()).map_err(|e| AppError::Tls(format!("target \"{}\": {e}", t.name)))?;
            let name = tls::server_name(&t.server.host).map_err(|e| AppError::Tls(format!("target \"{}\": {e}", t.name)))?;
            Some((config, name))
        }
    };
    Ok(TargetSpec {
        name: t.name.clone(),
        host: t.server.host.clone(),
        port: t.server.port,
        user: t.server.user.clone(),
        password: t.server.password.clone(),
        dbname: t.server.dbname.clone(),
        verified: matches!(t.tls.mode, ServerTlsMode::VerifyCa | ServerTlsMode::VerifyFull),
        tls,
        upstream_pooler: t.upstream == crate::config::Upstream::TransactionPooler,
    })
}

fn acceptor(config: &Config) -> Result<TlsAcceptor, AppError> {
    let err = |what: &str, e: &dyn std::fmt::Display| AppError::Tls(format!("client TLS {what}: {e}"));
    let cert_path = config.tls.cert.as_deref().ok_or_else(|| err("cert", &"not configured"))?;
    let key_path = config.tls.key.as_deref().ok_or_else(|| err("key", &"not configured"))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| err("cert", &format!("{}: {e}", cert_path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| err("cert", &format!("{}: {e}", cert_path.display())))?;
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| err("key", &format!("{}: {e}", key_path.display())))?;
    let mut server = ServerConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| err("config", &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| err("config", &e))?;
    server.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// A cheap test for texts that may change session parameters: a leading SET/RESET/DISCARD, or set_config anywhere.
fn may_change_session(sql: &str) -> bool {
    let first = sql.trim_start().as_bytes();
    [&b"set"[..], b"reset", b"discard"].iter().any(|w| {
        first.get(..w.len()).is_some_and(|p| p.eq_ignore_ascii_case(w))
            && !first.get(w.len()).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
    }) || sql.as_bytes().windows(10).any(|w| w.eq_ignore_ascii_case(b"set_config"))
}

#[cfg(test)]
mod tests {
    use super::may_change_session;

    #[test]
    fn single_mode_analyses_only_texts_that_may_change_session_state() {
        for sql in ["SET search_path = a", "  reset all", "discard all", "select SET_CONFIG('a', 'b', false)", "set"] {
            assert!(may_change_session(sql), "{sql}");
        }
        for sql in ["select 1", "settle_accounts()", "select * from resets", "insert into t values (1)", ""] {
            assert!(!may_change_session(sql), "{sql}");
        }
    }
}
