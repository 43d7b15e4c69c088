//! The admin console's commands that change the running proxy: PAUSE, RESUME, SUSPEND, KILL, RECONNECT,
//! WAIT_CLOSE, ENABLE, DISABLE, RELOAD, SHUTDOWN and SET mode. A PgBouncer database is a pgsplit target here, or a
//! database reached through `any_database` (PgBouncer's `*`), which has a pool of its own.

use std::time::Duration;

use crate::app::App;
use crate::backend::Backend;
use crate::config::Mode;
use crate::protocol::encode::PgError;
use crate::session::errors;

use super::Answer;

/// How long PAUSE waits for the target's server connections in use to come back.
const PAUSE_WAIT: Duration = Duration::from_secs(30);

/// How often PAUSE looks whether those connections are back.
const PAUSE_POLL: Duration = Duration::from_millis(20);

/// The targets a PAUSE or RESUME names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// None named: every target.
    All,
    /// One target, by name (quotes removed).
    Named(String),
}

impl Targets {
    /// The words after PAUSE or RESUME: none, or one target name; more is a 42601.
    pub fn parse(words: &[&str]) -> Result<Targets, PgError> {
        match words {
            [] => Ok(Targets::All),
            [name] => Ok(Targets::Named(name.trim_matches('"').to_owned())),
            _ => Err(errors::admin_syntax("the command takes at most one target".into())),
        }
    }

    /// For KILL, ENABLE and DISABLE: a target must be named (42601 otherwise), as on PgBouncer's console.
    pub fn required(self) -> Result<Targets, PgError> {
        match self {
            Targets::All => Err(errors::admin_syntax("a database is required".into())),
            named => Ok(named),
        }
    }

    /// The pools named: every target's and every pool `any_database` made, or the one of that name (a target, or a
    /// database reached through `any_database`, as PgBouncer's console names its `*` databases); an unknown name is
    /// a 22023 that lists them.
    fn resolve<'a>(&self, app: &'a App) -> Result<Vec<Pool<'a>>, PgError> {
        let table = app.table();
        let targets = (0..table.targets.len()).map(|t| Pool { name: table.name(t).to_owned(), of: Of::Target(app.backend(t)) });
        let databases = app.database_pools().into_iter().map(|(name, b)| Pool { name, of: Of::Database(b) });
        let mut all = targets.chain(databases);
        match self {
            Targets::All => Ok(all.collect()),
            Targets::Named(name) => all.find(|p| &p.name == name).map(|p| vec![p]).ok_or_else(|| {
                let databases: Vec<String> = app.database_pools().into_iter().map(|(name, _)| name).collect();
                let hint = match databases.is_empty() {
                    true => format!("targets: {}", table.targets.join(", ")),
                    false => {
                        format!("targets: {}; databases through any_database: {}", table.targets.join(", "), databases.join(", "))
                    }
                };
                errors::admin_invalid_value(format!("unknown target \"{name}\"")).with_hint(hint)
            }),
        }
    }
}

/// A pool a console command acts on, with its name.
struct Pool<'a> {
    name: String,
    of: Of<'a>,
}

/// Whose pool: a target's, or one `any_database` made for a database name.
enum Of<'a> {
    Target(&'a Backend),
    Database(std::sync::Arc<Backend>),
}

impl std::ops::Deref for Pool<'_> {
    type Target = Backend;

    fn deref(&self) -> &Backend {
        match &self.of {
            Of::Target(b) => b,
            Of::Database(b) => b,
        }
    }
}

/// RELOAD: re-reads the configuration file; one that cannot be applied is an F0000 and the running one stays.
pub async fn reload(app: &App, user: &str) -> Result<Answer, PgError> {
    tracing::info!(user = %user, "RELOAD from the admin console");
    match app.reload().await {
        Ok(_) => Ok(Answer::Done("RELOAD")),
        Err(e) => {
            tracing::error!(error = %e, "configuration not reloaded; the running configuration stays");
            Err(errors::reload_failed(e))
        }
    }
}

/// PAUSE (and SUSPEND, every target): new transactions on the targets wait; answers once the transactions running
/// there have ended (or after `PAUSE_WAIT`).
pub async fn pause(app: &App, user: &str, targets: &Targets, tag: &'static str) -> Result<Answer, PgError> {
    let pools = targets.resolve(app)?;
    for p in &pools {
        p.set_paused(true);
    }
    tracing::warn!(user = %user, targets = ?names(&pools), command = tag, "new transactions wait");
    let in_use = || pools.iter().map(|p| p.in_use()).sum::<u32>();
    let deadline = tokio::time::Instant::now() + PAUSE_WAIT;
    while in_use() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(PAUSE_POLL).await;
    }
    let busy = in_use();
    if busy > 0 {
        tracing::warn!(
            connections = busy,
            "PAUSE: connections still in use after 30 s (pinned sessions or long transactions); new transactions wait"
        );
    }
    Ok(Answer::Done(tag))
}

/// KILL: the target is paused (new transactions wait until RESUME, as on PgBouncer) and its server connections are
/// closed at once: idle ones now, those in use by shutting their sockets, so the transactions on them end with the
/// connection lost (08006; a session pinned there ends, as if the server went away).
pub async fn kill(app: &App, user: &str, targets: &Targets) -> Result<Answer, PgError> {
    for p in targets.resolve(app)? {
        p.set_paused(true);
        let in_use = p.kill().await;
        tracing::warn!(user = %user, target = p.name, in_use, "KILL: server connections closed; the target is paused");
    }
    Ok(Answer::Done("KILL"))
}

/// RECONNECT: each server connection of the targets is closed when it comes back (idle ones now) and replaced by a
/// new one when needed; transactions running go on.
pub async fn reconnect(app: &App, user: &str, targets: &Targets) -> Result<Answer, PgError> {
    for p in targets.resolve(app)? {
        let closed = p.reconnect().await;
        tracing::info!(user = %user, target = p.name, closed, "RECONNECT");
    }
    Ok(Answer::Done("RECONNECT"))
}

/// WAIT_CLOSE: answers once every connection RECONNECT or KILL retired on the targets has closed (or pgsplit shuts
/// down).
pub async fn wait_close(app: &App, targets: &Targets) -> Result<Answer, PgError> {
    let pools = targets.resolve(app)?;
    while pools.iter().any(|p| p.closing()) && !app.is_draining() {
        tokio::time::sleep(PAUSE_POLL).await;
    }
    Ok(Answer::Done("WAIT_CLOSE"))
}

/// DISABLE (refuse new transactions on the target with 57P03) or ENABLE (take them again).
pub fn set_disabled(app: &App, user: &str, targets: &Targets, disabled: bool) -> Result<Answer, PgError> {
    let pools = targets.resolve(app)?;
    for p in &pools {
        p.set_disabled(disabled);
    }
    let tag = if disabled { "DISABLE" } else { "ENABLE" };
    tracing::warn!(user = %user, targets = ?names(&pools), command = tag, "target enabled or disabled");
    Ok(Answer::Done(tag))
}

/// SHUTDOWN: pgsplit stops as on SIGTERM (sessions at rest end, transactions finish within `shutdown_timeout`).
pub fn shutdown(app: &App, user: &str) -> Result<Answer, PgError> {
    tracing::warn!(user = %user, "SHUTDOWN from the admin console");
    match app.shut_down() {
        true => Ok(Answer::Done("SHUTDOWN")),
        false => Err(errors::admin_invalid_value("this pgsplit is not serving: nothing to shut down".into())),
    }
}

/// RESUME: paused targets take new transactions again.
pub fn resume(app: &App, user: &str, targets: &Targets) -> Result<Answer, PgError> {
    let pools = targets.resolve(app)?;
    for p in &pools {
        p.set_paused(false);
    }
    tracing::info!(user = %user, targets = ?names(&pools), "RESUME");
    Ok(Answer::Done("RESUME"))
}

/// SET mode: each session's next transaction follows `mode` (with `mode_store`, on every instance). An unreachable
/// store changes nothing: 08006, saying so.
pub async fn set_mode(app: &App, user: &str, mode: Mode) -> Result<Answer, PgError> {
    tracing::warn!(user = %user, mode = mode.as_str(), "SET mode from the admin console");
    app.switch_mode(mode).await.map_err(|e| {
        PgError::error(
            crate::protocol::codes::CONNECTION_FAILURE,
            format!("mode store unreachable, the mode was not changed: {e}"),
        )
    })?;
    Ok(Answer::Done("SET"))
}

/// The pools' names, for the log.
fn names(pools: &[Pool<'_>]) -> Vec<String> {
    pools.iter().map(|p| p.name.clone()).collect()
}
