//! `mode_store: TARGET`: one rollback switch for a fleet of instances (SPEC §6). The mode lives in the one-row table
//! `pgsplit.mode` on that target; a trigger there notifies channel `pgsplit_mode` at every change, whoever made it
//! (`SET mode` on any instance's console, `pgsplit mode`, or an UPDATE by hand).
//!
//! Each instance keeps one connection to the store (outside the target's pool, which is one smaller for it):
//! `Connecting` → set-up (schema, table, trigger and the first row, made once under an advisory lock; the row starts
//! with the file's `mode`) → `Listening` (`LISTEN pgsplit_mode`, then the row is read and its mode applied; each
//! notification carries the new mode and is applied; the row is re-read every `health_interval`, so `/api/health`
//! says when it was last seen) → on any error or a closed connection, after a pause that doubles up to 30 s,
//! `Connecting` again. While not listening the instance keeps the last mode it saw, and `/api/health` says so
//! (`mode_store.status`: `unreachable`, with the error and when the mode was last seen).

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use crate::backend::{BackendError, ServerConn};
use crate::config::Mode;
use crate::router::TargetId;

use super::App;

/// The channel the table's trigger notifies.
pub const CHANNEL: &str = "pgsplit_mode";

/// Makes the table, its trigger and its row once (every statement is pgsplit's own, no client text in it); `{mode}`
/// is the file's mode, one of two words.
const SETUP: &str = "begin;
select pg_advisory_xact_lock(hashtext('pgsplit.mode'));
create schema if not exists pgsplit;
create table if not exists pgsplit.mode (
  id int primary key default 1 check (id = 1),
  mode text not null check (mode in ('split', 'single')),
  changed_at timestamptz not null default now()
);
create or replace function pgsplit.mode_notify() returns trigger language plpgsql as $f$
begin
  perform pg_notify('pgsplit_mode', new.mode);
  return null;
end $f$;
drop trigger if exists mode_notify on pgsplit.mode;
create trigger mode_notify after insert or update on pgsplit.mode for each row execute function pgsplit.mode_notify();
insert into pgsplit.mode (id, mode) values (1, '{mode}') on conflict (id) do nothing;
commit";

/// The longest pause between two attempts to reach the store.
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// What an instance knows of the shared mode, for `/api/health`.
#[derive(Debug, Clone, Default)]
pub struct StoreState {
    /// Listening for changes now.
    pub listening: bool,
    /// When the stored mode was last read or notified.
    pub last_seen: Option<SystemTime>,
    /// Why the store cannot be reached, while it cannot.
    pub error: Option<String>,
}

/// The shared mode's target and what this instance knows of it.
pub struct ModeStore {
    /// The target holding `pgsplit.mode`.
    pub target: TargetId,
    state: Mutex<StoreState>,
}

impl ModeStore {
    /// A store on `target`, not reached yet.
    pub fn new(target: TargetId) -> ModeStore {
        ModeStore { target, state: Mutex::new(StoreState::default()) }
    }

    /// What `/api/health` shows.
    pub fn state(&self) -> StoreState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut StoreState)) {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// A mode as the table stores it.
fn parse(word: &str) -> Option<Mode> {
    match word.trim() {
        "split" => Some(Mode::Split),
        "single" => Some(Mode::Single),
        _ => None,
    }
}

impl App {
    /// Switches the mode: with a `mode_store`, for every instance (the row is updated; each instance, this one too,
    /// applies it), else for this instance. An unreachable store changes nothing and says why.
    pub async fn switch_mode(&self, mode: Mode) -> Result<(), BackendError> {
        let Some(store) = self.mode_store() else {
            self.set_mode(mode);
            return Ok(());
        };
        let spec = &self.backend(store.target).spec;
        let mut conn = ServerConn::connect(spec).await?;
        let sql = format!("update pgsplit.mode set mode = '{}', changed_at = now() where id = 1", mode.as_str());
        conn.simple(&sql).await?;
        conn.terminate().await;
        // The notification follows for every instance; this one need not wait for its own.
        self.set_mode(mode);
        store.update(|s| s.last_seen = Some(SystemTime::now()));
        Ok(())
    }
}

/// Keeps this instance's mode the stored one until the App is gone (`mode_store` configured).
pub async fn follow(app: Weak<App>) {
    let mut pause = Duration::from_secs(1);
    loop {
        let Some((spec, store, file_mode, period)) = app.upgrade().and_then(|a| {
            let store = a.mode_store()?.clone();
            Some((a.backend(store.target).spec.clone(), store, a.config().mode, a.config().health_interval))
        }) else {
            return;
        };
        let error = match listen(&app, &spec, &store, file_mode, period).await {
            Ok(never) => match never {},
            Err(e) => e,
        };
        store.update(|s| {
            s.listening = false;
            s.error = Some(error.to_string());
        });
        tracing::warn!(target = %spec.name, error = %error, "mode store unreachable: keeping the last mode seen");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// One connection's life: set-up, LISTEN, then the mode at each notification and each `period`, until it fails.
async fn listen(
    app: &Weak<App>,
    spec: &crate::backend::TargetSpec,
    store: &Arc<ModeStore>,
    file_mode: Mode,
    period: Duration,
) -> Result<std::convert::Infallible, BackendError> {
    let mut conn = ServerConn::connect(spec).await?;
    conn.simple(&SETUP.replace("{mode}", file_mode.as_str())).await?;
    conn.simple(&format!("LISTEN {CHANNEL}")).await?;
    store.update(|s| {
        s.listening = true;
        s.error = None;
    });
    tracing::info!(target = %spec.name, channel = CHANNEL, "mode store: following the fleet's mode");
    loop {
        let rows = conn.simple("select mode from pgsplit.mode where id = 1").await?;
        let stored = rows.first().and_then(|r| r.first().cloned().flatten()).and_then(|m| parse(&m));
        seen(app, store, stored)?;
        // Notifications until the next re-read.
        let deadline = tokio::time::Instant::now() + period;
        loop {
            match tokio::time::timeout_at(deadline, conn.read_frame()).await {
                Err(_) => break,
                Ok(Ok(f)) if f.tag == b'A' => {
                    let payload = crate::cache::listen::notification_payload(f.body());
                    let mode =
                        payload.filter(|(c, _)| *c == CHANNEL.as_bytes()).and_then(|(_, p)| parse(&String::from_utf8_lossy(p)));
                    if mode.is_some() {
                        seen(app, store, mode)?;
                    }
                }
                Ok(Ok(f)) if f.tag == b'E' => return Err(crate::backend::conn::error_from_body(f.body())),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
            }
        }
    }
}

/// Applies a mode read from the store (`None`: the row is missing or unreadable: an error).
fn seen(app: &Weak<App>, store: &ModeStore, mode: Option<Mode>) -> Result<(), BackendError> {
    let Some(mode) = mode else { return Err(BackendError::Protocol("pgsplit.mode has no valid row".into())) };
    let Some(app) = app.upgrade() else { return Err(BackendError::Closed) };
    app.set_mode(mode);
    store.update(|s| s.last_seen = Some(SystemTime::now()));
    Ok(())
}
