//! PgBouncer's `*` database (`any_database`): a pool per database named by clients, made at its first login on the
//! server of the target `any_database` names and dropped once no session uses it and it holds no connection; and
//! the idle pooled connections closed before a client drops, renames or copies a database (PostgreSQL refuses those
//! while anyone is connected to the database, and pgsplit's idle connections would be that anyone).

use std::collections::HashMap;
use std::sync::Arc;

use crate::backend::{Backend, BackendError, TargetSpec};
use crate::protocol::codes;
use crate::protocol::encode::PgError;
use crate::router::TargetId;

use super::targets::pool_settings;
use super::App;

/// The pools of databases reached through `any_database`, by database name.
#[derive(Default)]
pub struct Databases {
    /// Database name → its pool. A session holds its database's `Arc` for as long as it lasts.
    pools: std::sync::Mutex<HashMap<String, Arc<Backend>>>,
}

impl Databases {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Backend>>> {
        self.pools.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl App {
    /// The target whose server serves `database` through `any_database`, when it is set and `database` is none of
    /// the names pgsplit serves itself.
    pub fn any_database_target(&self) -> Option<TargetId> {
        self.config().any_database.as_deref().and_then(|t| self.table().target_id(t))
    }

    /// The pool of `database` on `target`'s server: the one already made, else a new one whose first connection
    /// must succeed (its failure is the server's answer to the login: 3D000 for a database that does not exist).
    pub async fn database_pool(&self, target: TargetId, database: &str) -> Result<Arc<Backend>, PgError> {
        let server = self.backend(target);
        if let Some(b) = self.databases.lock().get(database).filter(|b| b.spec.same_server(&server.spec)) {
            return Ok(b.clone());
        }
        let config = self.config();
        let settings = config.target(server.name()).map(|t| pool_settings(t, config.workers, 0));
        drop(config);
        let Some(settings) = settings else {
            return Err(PgError::fatal(codes::INVALID_CATALOG_NAME, format!("database \"{database}\" does not exist")));
        };
        let backend = Backend::new(server.spec.for_database(database), &settings);
        if let Err(e) = backend.open_first().await {
            tracing::info!(database, target = server.name(), error = %e, "login to a database through any_database failed");
            return Err(login_failed(server.name(), &e));
        }
        tracing::info!(database, target = server.name(), "pool made for a database through any_database");
        // Another session may have made it meanwhile: the first one made stays, the other closes.
        let pool = self.databases.lock().entry(database.to_owned()).or_insert_with(|| Arc::new(backend)).clone();
        Ok(pool)
    }

    /// Before a statement that needs `database` on `server`'s server free of other users (DROP DATABASE, ALTER
    /// DATABASE ... RENAME or SET TABLESPACE, CREATE DATABASE ... TEMPLATE): every idle pooled connection to it is
    /// closed, in the targets' pools and in the pool `any_database` made for it (which is dropped: a database made
    /// again under that name gets a new pool).
    pub async fn free_database(&self, server: &TargetSpec, database: &str) {
        let made = {
            let mut pools = self.databases.lock();
            match pools.get(database) {
                Some(b) if b.spec.same_server(server) => pools.remove(database),
                _ => None,
            }
        };
        let pools = self.backends.iter().filter(|b| b.spec.dbname == database && b.spec.same_server(server));
        let mut closed = 0;
        for b in pools.chain(made.as_deref()) {
            closed += b.close_idle().await;
        }
        if closed > 0 {
            tracing::info!(database, closed, "idle server connections closed for a statement on their database");
        }
    }

    /// Drops the pools `any_database` made that no session uses and that hold no connection (their idle ones are
    /// closed by the target's `idle_timeout`), unless the console paused or disabled them (kept until RESUME or
    /// ENABLE). Called at every health tick.
    pub fn sweep_databases(&self) {
        let kept = |b: &Arc<Backend>| Arc::strong_count(b) > 1 || b.pool_state().0 > 0 || b.is_paused() || b.is_disabled();
        self.databases.lock().retain(|_, b| kept(b));
    }

    /// The pools `any_database` made, by database name, for the admin console.
    pub fn database_pools(&self) -> Vec<(String, Arc<Backend>)> {
        let mut all: Vec<_> = self.databases.lock().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

/// A first login refused by the server: its SQLSTATE and words when it is a login's (3D000, 42501, 28P01, ...).
fn login_failed(target: &str, e: &BackendError) -> PgError {
    match e {
        BackendError::Server { code, message } => PgError::fatal(codes::of_login(code), message.clone()),
        other => PgError::fatal(codes::CONNECTION_FAILURE, format!("target \"{target}\" is unavailable: {other}")),
    }
}
