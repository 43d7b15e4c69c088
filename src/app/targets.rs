//! From the configuration's targets to what runs: each target's connection spec and pool settings, and the routing
//! table of schemas.

use std::collections::HashMap;
use std::sync::Arc;

use crate::backend::tls::{self, Verify};
use crate::backend::{PoolSettings, TargetSpec};
use crate::config::{Config, ServerTlsMode, Target};
use crate::router::RoutingTable;

use super::AppError;

/// How to reach a target, with its TLS client configuration built from the CA file.
pub fn target_spec(t: &Target) -> Result<TargetSpec, AppError> {
    let verify = match t.tls.mode {
        ServerTlsMode::Disable => None,
        ServerTlsMode::Allow | ServerTlsMode::Prefer | ServerTlsMode::Require => Some(Verify::None),
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
        tls_required: !matches!(t.tls.mode, ServerTlsMode::Allow | ServerTlsMode::Prefer),
        verified: matches!(t.tls.mode, ServerTlsMode::VerifyCa | ServerTlsMode::VerifyFull),
        tls,
        upstream_pooler: t.upstream == crate::config::Upstream::TransactionPooler,
        servers: Arc::default(),
    })
}

/// Which target each routed schema goes to, and the default target.
pub(super) fn routing_table(config: &Config) -> RoutingTable {
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

/// A target's pool settings.
///
/// `listeners`: connections pgsplit keeps to the target outside its pool (the session cache's LISTEN,
/// `cache::listen`; the mode store's, `mode_store`), which count against the target's `pool.max` (PRIMARY's budget
/// is the server's, not the pool's): the pool is that much smaller, never below one.
pub(super) fn pool_settings(t: &Target, workers: usize, listeners: u32) -> PoolSettings {
    PoolSettings {
        max: t.pool.max.saturating_sub(listeners).max(1),
        min: t.pool.min,
        checkout_timeout: t.pool.checkout_timeout,
        idle_timeout: t.pool.idle_timeout,
        max_lifetime: t.pool.max_lifetime,
        workers,
    }
}

/// How many connections pgsplit keeps to target `t` outside its pool: the session cache's (it owns a cached table and
/// `cache.listen` is on) and the mode store's.
pub(super) fn listens_on(config: &Config, t: &Target) -> u32 {
    let cache = config.cache.as_ref().is_some_and(|c| c.listen && c.tables.iter().any(|x| x.target == t.name));
    u32::from(cache) + u32::from(config.mode_store.as_deref() == Some(t.name.as_str()))
}
