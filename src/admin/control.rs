//! The admin console's commands that change the running proxy: PAUSE, RESUME, RELOAD and SET mode.

use std::time::Duration;

use crate::app::App;
use crate::config::Mode;
use crate::protocol::encode::PgError;
use crate::router::TargetId;
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
            _ => Err(errors::admin_syntax("PAUSE and RESUME take at most one target".into())),
        }
    }

    /// The targets' ids in the routing table in force; an unknown name is a 22023 that lists the targets.
    fn resolve(&self, app: &App) -> Result<Vec<TargetId>, PgError> {
        let table = app.table();
        match self {
            Targets::All => Ok((0..table.targets.len()).collect()),
            Targets::Named(name) => table.target_id(name).map(|t| vec![t]).ok_or_else(|| {
                errors::admin_invalid_value(format!("unknown target \"{name}\""))
                    .with_hint(format!("targets: {}", table.targets.join(", ")))
            }),
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

/// PAUSE: new transactions on the targets wait; answers once the transactions running there have ended (or after
/// `PAUSE_WAIT`).
pub async fn pause(app: &App, user: &str, targets: &Targets) -> Result<Answer, PgError> {
    let targets = targets.resolve(app)?;
    for &t in &targets {
        app.backend(t).set_paused(true);
    }
    tracing::warn!(user = %user, targets = ?names(app, &targets), "PAUSE: new transactions wait");
    let in_use = || targets.iter().map(|&t| app.backend(t).in_use()).sum::<u32>();
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
    Ok(Answer::Done("PAUSE"))
}

/// RESUME: paused targets take new transactions again.
pub fn resume(app: &App, user: &str, targets: &Targets) -> Result<Answer, PgError> {
    let targets = targets.resolve(app)?;
    for &t in &targets {
        app.backend(t).set_paused(false);
    }
    tracing::info!(user = %user, targets = ?names(app, &targets), "RESUME");
    Ok(Answer::Done("RESUME"))
}

/// SET mode: each session's next transaction follows `mode`.
pub fn set_mode(app: &App, user: &str, mode: Mode) -> Answer {
    tracing::warn!(user = %user, mode = mode.as_str(), "SET mode from the admin console");
    app.set_mode(mode);
    Answer::Done("SET")
}

/// The targets' names, for the log.
fn names(app: &App, targets: &[TargetId]) -> Vec<String> {
    let table = app.table();
    targets.iter().map(|&t| table.name(t).to_owned()).collect()
}
