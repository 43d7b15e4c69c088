//! RELOAD and SIGHUP: re-reading the configuration file and applying what can change without a restart.

use std::sync::Arc;

use crate::config::{Config, ConfigError};

use super::targets::listens_on;
use super::{pool_settings, routing_table, user_store, App, AppError};

/// Why a reload was refused; the running configuration then stays in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// pgsplit was started without a file to re-read (a test's configuration text).
    #[error("pgsplit was not started from a configuration file")]
    NoSource,
    /// The file could not be read, parsed or validated.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The file changes what only a restart can apply.
    #[error("{} changed: restart pgsplit to apply it (nothing was changed)", .0.join(", "))]
    NeedsRestart(Vec<&'static str>),
    /// A user's password in the file is unusable.
    #[error(transparent)]
    Users(#[from] AppError),
    /// The client TLS certificate or key cannot be read or used (the running ones stay).
    #[error("{0}")]
    Tls(AppError),
}

/// What a reload changed, for the log and the admin console.
#[derive(Debug, Default)]
pub struct Reloaded {
    /// Human-readable changes, one per item.
    pub changes: Vec<String>,
}

impl App {
    /// Re-reads the configuration file and applies it: routes, default and single targets, users, pool sizes and
    /// checkout timeouts, alert thresholds, and `mode` if the file's value changed since it was last read. Anything
    /// that needs a restart (targets added, removed or re-addressed, listen addresses, TLS files) makes the reload
    /// fail: the running configuration stays, and the error says why.
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        let _one = self.reloading.lock().await;
        let Some(path) = &self.source else { return Err(ReloadError::NoSource) };
        let new = crate::config::load_file(path)?;
        let old = self.config.load_full();
        let restart = needs_restart(&old, &new);
        if !restart.is_empty() {
            return Err(ReloadError::NeedsRestart(restart));
        }
        let users = user_store(&new)?;
        // Re-read on every reload, changed paths or not: a renewed certificate replaces the old one for new clients.
        let tls = match new.tls.mode {
            crate::config::ClientTlsMode::Disabled => None,
            _ => Some(Arc::new(super::tls::acceptor(&new).map_err(ReloadError::Tls)?)),
        };
        self.login_roles.clear();
        self.auth_cache.clear();
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
                b.resize(&pool_settings(t, old.workers, listens_on(&old, t)));
                done.changes.push(format!("pool of {}: max {}", t.name, t.pool.max));
            }
            if t.alert_connections != o.alert_connections {
                done.changes.push(format!("alert_connections of {}", t.name));
            }
        }
        self.table.store(Arc::new(table));
        self.routing_inputs_changed();
        if routes_changed {
            self.routes_generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        self.single_target.store(single, std::sync::atomic::Ordering::SeqCst);
        self.users.store(Arc::new(users));
        if tls.is_some() {
            done.changes.push("client TLS certificate re-read".into());
        }
        self.tls.store(tls);
        self.idle_limits.store(&new.limits);
        crate::net::set_keepalive(&new.limits);
        if new.limits != old.limits {
            done.changes.push("limits".into());
        }
        let file_mode_changed = new.mode != old.mode;
        let mode = new.mode;
        self.config.store(Arc::new(new));
        if file_mode_changed {
            // With a mode store the file's change goes to every instance, as `SET mode` would.
            match self.switch_mode(mode).await {
                Ok(()) => done.changes.push(format!("mode = {}", mode.as_str())),
                Err(e) => {
                    tracing::warn!(error = %e, "mode store unreachable: the file's mode was not applied");
                    done.changes.push(format!("mode = {} not applied: mode store unreachable", mode.as_str()));
                }
            }
        }
        tracing::info!(changes = ?done.changes, "configuration reloaded");
        Ok(done)
    }
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
    if old.tls.mode != new.tls.mode {
        what.push("tls.mode");
    }
    if old.limits.listen_backlog != new.limits.listen_backlog {
        what.push("listen_backlog");
    }
    if old.limits.so_reuseport != new.limits.so_reuseport {
        what.push("so_reuseport");
    }
    if old.limits.unix_socket_dir != new.limits.unix_socket_dir {
        what.push("unix_socket_dir");
    }
    if old.limits.unix_socket_mode != new.limits.unix_socket_mode {
        what.push("unix_socket_mode");
    }
    if old.mode_store != new.mode_store {
        what.push("mode_store");
    }
    if old.cache != new.cache {
        what.push("cache");
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
