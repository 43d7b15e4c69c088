//! App: everything a session needs, built once from the configuration and passed explicitly (no globals):
//! routing table and cache, the targets' pools, client users and TLS.

use std::collections::HashMap;
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
    /// The configuration this App was built from.
    config: Config,
    /// Target names and schema ownership, for the router.
    table: RoutingTable,
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
    /// Client users and their SCRAM verifiers.
    users: UserStore,
    /// Client-side TLS, when enabled.
    tls: Option<TlsAcceptor>,
    /// Target of every statement in single mode.
    single_target: TargetId,
    /// Cancelled when pgsplit shuts down: sessions at rest end, sessions in a transaction end with it.
    draining: tokio_util::sync::CancellationToken,
    /// Counters the sessions bump, exported on `/metrics` (per-target ones live in each backend).
    metrics: crate::metrics::Metrics,
}

impl App {
    /// Builds the App: TLS material is read, verifiers computed, pools created (connections open lazily).
    pub fn build(config: Config) -> Result<App, AppError> {
        let table = routing_table(&config);
        let mut backends = Vec::new();
        for t in &config.targets {
            backends.push(Backend::new(target_spec(t)?, &pool_settings(t)));
        }
        let users = UserStore::new(config.users.iter().map(|u| (u.name.as_str(), u.password.as_str())))
            .map_err(|e| AppError::User { user: "?".into(), reason: e.to_string() })?;
        let tls = match config.tls.mode {
            ClientTlsMode::Disabled => None,
            _ => Some(acceptor(&config)?),
        };
        let single_target = table.target_id(&config.single_target).unwrap_or(table.default_target);
        let cache = RouteCache::new(config.route_cache_bytes);
        let catalog = ArcSwap::from_pointee(Catalog::unknown(backends.len()));
        Ok(App {
            config,
            table,
            cache,
            catalog,
            cancels: CancelRegistry::default(),
            pinned: Default::default(),
            backends,
            users,
            tls,
            single_target,
            draining: Default::default(),
            metrics: Default::default(),
        })
    }

    /// The analysis of a statement. In single mode routing needs none, so only texts that may change session state
    /// (SET, RESET, DISCARD, set_config) are analysed, for the session to follow them; others give `None`.
    pub fn analysis(&self, sql: &str) -> Option<SharedAnalysis> {
        match self.mode() {
            Mode::Single if !may_change_session(sql) => None,
            _ => Some(self.cache.analysis(sql)),
        }
    }

    /// The routing mode in force. Every read of the mode goes through here.
    pub fn mode(&self) -> Mode {
        self.config.mode
    }

    /// Whether every statement goes to `single_target`.
    pub fn is_single(&self) -> bool {
        self.mode() == Mode::Single
    }

    /// Fires when pgsplit stops accepting clients and waits for sessions to end.
    pub fn draining(&self) -> &tokio_util::sync::CancellationToken {
        &self.draining
    }

    /// Process-wide counters for `/metrics`.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// The routing table.
    pub fn table(&self) -> &RoutingTable {
        &self.table
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
            // Broken until the exchange completes: if the timeout drops it half-way, it is closed, not reused.
            conn.broken = true;
            let snapshot = TargetCatalog::load(&mut conn).await;
            conn.broken = snapshot.is_err();
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

    /// Re-reads every target's catalog; a target that cannot be read is logged and keeps its old snapshot.
    pub async fn refresh_catalogs(&self) {
        for t in 0..self.backends.len() {
            if let Err(e) = self.refresh_catalog(t).await {
                tracing::warn!(target = self.backend(t).name(), error = %e, "catalog not refreshed");
            }
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
        let sustain = self.config.alert_sustain;
        for (b, t) in self.backends.iter().zip(&self.config.targets) {
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
        self.config.catalog_refresh
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
        self.single_target
    }

    /// Client users.
    pub fn users(&self) -> &UserStore {
        &self.users
    }

    /// The logical database name clients connect to.
    pub fn database(&self) -> &str {
        &self.config.database
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Client TLS mode.
    pub fn tls_mode(&self) -> ClientTlsMode {
        self.config.tls.mode
    }

    /// Client TLS acceptor, when enabled.
    pub fn tls(&self) -> Option<&TlsAcceptor> {
        self.tls.as_ref()
    }

    /// Server parameters to greet clients with: `target`'s (connecting once if none is known yet), else any
    /// target's, else neutral values.
    pub async fn server_params(&self, target: TargetId) -> Vec<(String, String)> {
        let default = self.backend(target);
        let mut params = default.server_params();
        if params.is_empty() {
            if let Ok(conn) = default.checkout().await {
                drop(conn);
                params = default.server_params();
            }
        }
        if params.is_empty() {
            params = self.backends.iter().map(Backend::server_params).find(|p| !p.is_empty()).unwrap_or_default();
        }
        if params.is_empty() {
            params = [
                ("server_version", "15.0"),
                ("server_encoding", "UTF8"),
                ("client_encoding", "UTF8"),
                ("DateStyle", "ISO, MDY"),
                ("TimeZone", "UTC"),
                ("integer_datetimes", "on"),
                ("standard_conforming_strings", "on"),
                ("IntervalStyle", "postgres"),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        }
        params
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
