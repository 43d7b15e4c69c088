//! `mode_store: TARGET`: one rollback switch for a fleet of instances (SPEC §6). The mode lives in the one-row table
//! `pgsplit.mode` on that target, with a version that a trigger raises at every change and notifies on channel
//! `pgsplit_mode` (`<version>:<mode>`), whoever made it: `SET mode` on any instance's console, `pgsplit mode`, a
//! changed `mode:` plus RELOAD, or an UPDATE by hand. An instance applies a mode only when its version is above the
//! last one it applied, so notifications, re-reads and its own updates may arrive in any order.
//!
//! Each instance keeps one connection to the store (outside the target's pool, which is one smaller for it), and
//! its own `SET mode` goes through that connection too: the store costs one server connection per instance.
//! `Connecting` → set-up when the table is missing (schema, table, trigger and the first row, once, under an advisory
//! lock; the row starts with the file's `mode`) → `Listening` (`LISTEN pgsplit_mode`, the row read and applied; then
//! each notification, each `SET mode` of this instance, and a re-read every `health_interval`, so `/api/health` says
//! when the mode was last seen) → on any error or a closed connection, after a pause that doubles up to 30 s,
//! `Connecting` again. While not listening the instance keeps the last mode it saw, `SET mode` is refused, and
//! `/api/health` says so (`mode_store.status`: `unreachable`, with the error). At start, `run` waits up to
//! `FIRST_READ` for the stored mode before it accepts clients.

use std::sync::{Mutex, Weak};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};

use crate::backend::{BackendError, ServerConn};
use crate::config::Mode;
use crate::router::TargetId;

use super::App;

/// The channel the table's trigger notifies.
pub const CHANNEL: &str = "pgsplit_mode";

/// How long `run` waits for the stored mode before accepting clients in the file's.
pub const FIRST_READ: Duration = Duration::from_secs(5);

/// Bounds on the store connection's statements: a lock held on `pgsplit.mode` (an UPDATE left open by hand) fails a
/// `SET mode` instead of hanging it.
const SESSION: &str = "set lock_timeout = '5s'; set statement_timeout = '10s'";

/// Makes the table, its trigger and its row when the table is missing (pgsplit's own statements, no client text;
/// `{mode}` is the file's mode, one of two words).
const SETUP: &str = "begin;
select pg_advisory_xact_lock(hashtext('pgsplit.mode'));
do $setup$ begin
if to_regclass('pgsplit.mode') is null then
  create schema if not exists pgsplit;
  create table pgsplit.mode (
    id int primary key default 1 check (id = 1),
    mode text not null check (mode in ('split', 'single')),
    version bigint not null default 1,
    changed_at timestamptz not null default now()
  );
  create function pgsplit.mode_version() returns trigger language plpgsql as $f$
  begin
    new.version := old.version + 1;
    new.changed_at := now();
    return new;
  end $f$;
  create function pgsplit.mode_notify() returns trigger language plpgsql as $f$
  begin
    perform pg_notify('pgsplit_mode', new.version || ':' || new.mode);
    return null;
  end $f$;
  create trigger mode_version before update on pgsplit.mode for each row execute function pgsplit.mode_version();
  create trigger mode_notify after insert or update on pgsplit.mode for each row execute function pgsplit.mode_notify();
end if;
end $setup$;
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
    /// The version of the mode applied last (0: none yet).
    pub version: i64,
    /// Why the store cannot be reached, while it cannot.
    pub error: Option<String>,
}

/// Why a `SET mode` did not reach the store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SwitchError {
    /// Not connected, or the update failed.
    #[error("{0}")]
    Unreachable(String),
    /// The store connection ended before answering.
    #[error("the store connection ended")]
    Ended,
    /// No answer in time.
    #[error("no answer from the store within 15 s")]
    Timeout,
}

/// A `SET mode` for the store connection to write, and where its outcome goes.
type Request = (Mode, oneshot::Sender<Result<(), SwitchError>>);

/// The shared mode's target and what this instance knows of it.
pub struct ModeStore {
    /// The target holding `pgsplit.mode`.
    pub target: TargetId,
    state: Mutex<StoreState>,
    requests: mpsc::Sender<Request>,
    /// Taken by the one task that follows the store.
    inbox: Mutex<Option<mpsc::Receiver<Request>>>,
}

impl ModeStore {
    /// A store on `target`, not reached yet.
    pub fn new(target: TargetId) -> ModeStore {
        let (requests, inbox) = mpsc::channel(8);
        ModeStore { target, state: Mutex::new(StoreState::default()), requests, inbox: Mutex::new(Some(inbox)) }
    }

    /// What `/api/health` shows.
    pub fn state(&self) -> StoreState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update<T>(&self, f: impl FnOnce(&mut StoreState) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// `<version>:<mode>` (a notification) or the row's two columns.
fn parse(version: &str, mode: &str) -> Option<(i64, Mode)> {
    let version = version.trim().parse().ok()?;
    match mode.trim() {
        "split" => Some((version, Mode::Split)),
        "single" => Some((version, Mode::Single)),
        _ => None,
    }
}

impl App {
    /// Switches the mode: with a `mode_store`, for every instance (the row is updated through this instance's store
    /// connection; every instance, this one too, applies it by its version), else for this instance. A store that
    /// cannot be reached changes nothing and says why.
    pub async fn switch_mode(&self, mode: Mode) -> Result<(), SwitchError> {
        let Some(store) = self.mode_store() else {
            self.set_mode(mode);
            return Ok(());
        };
        if !store.state().listening {
            return Err(SwitchError::Unreachable(store.state().error.unwrap_or_else(|| "not connected yet".into())));
        }
        let (reply, outcome) = oneshot::channel();
        let asked = store.requests.send((mode, reply));
        match tokio::time::timeout(Duration::from_secs(15), async {
            asked.await.ok()?;
            outcome.await.ok()
        })
        .await
        {
            Ok(Some(result)) => result,
            Ok(None) => Err(SwitchError::Ended),
            Err(_) => Err(SwitchError::Timeout),
        }
    }

    /// Waits up to `limit` for the stored mode to be applied once (`run`, before accepting clients); false when it
    /// was not (the file's mode then serves until it is).
    pub async fn stored_mode_seen(&self, limit: Duration) -> bool {
        let Some(store) = self.mode_store() else { return true };
        let started = tokio::time::Instant::now();
        while store.state().version == 0 {
            if started.elapsed() >= limit {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

/// Keeps this instance's mode the stored one until the App is gone (`mode_store` configured).
pub async fn follow(app: Weak<App>) {
    let Some(mut inbox) = app.upgrade().and_then(|a| a.mode_store()?.inbox.lock().ok()?.take()) else { return };
    let mut pause = Duration::from_secs(1);
    loop {
        let Some((spec, store, file_mode, period)) = app.upgrade().and_then(|a| {
            let store = a.mode_store()?.clone();
            Some((a.backend(store.target).spec.clone(), store, a.config().mode, a.config().health_interval))
        }) else {
            return;
        };
        let error = match listen(&app, &spec, &store, &mut inbox, file_mode, period).await {
            Ok(never) => match never {},
            Err(e) => e,
        };
        store.update(|s| {
            s.listening = false;
            s.error = Some(error.to_string());
        });
        tracing::warn!(target = %spec.name, error = %error, "mode store unreachable: keeping the last mode seen");
        // `SET mode`s asked meanwhile are refused: the row cannot be written.
        while let Ok((_, reply)) = inbox.try_recv() {
            let _ = reply.send(Err(SwitchError::Unreachable(error.to_string())));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// One connection's life: set-up, LISTEN, then the mode at each notification, request and `period`, until it fails.
async fn listen(
    app: &Weak<App>,
    spec: &crate::backend::TargetSpec,
    store: &ModeStore,
    inbox: &mut mpsc::Receiver<Request>,
    file_mode: Mode,
    period: Duration,
) -> Result<std::convert::Infallible, BackendError> {
    let mut conn = ServerConn::connect(spec).await?;
    conn.simple(SESSION).await?;
    conn.simple(&SETUP.replace("{mode}", file_mode.as_str())).await?;
    conn.simple(&format!("LISTEN {CHANNEL}")).await?;
    store.update(|s| {
        s.listening = true;
        s.error = None;
    });
    tracing::info!(target = %spec.name, channel = CHANNEL, "mode store: following the fleet's mode");
    loop {
        read_row(app, store, &mut conn, "select version, mode from pgsplit.mode where id = 1").await?;
        let deadline = tokio::time::Instant::now() + period;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                request = inbox.recv() => write(app, store, &mut conn, request).await?,
                // Cancel-safe: a partial message stays in the connection's buffer.
                frame = conn.read_frame() => unprompted(app, store, frame?)?,
            }
        }
    }
}

/// A `SET mode` of this instance: the row updated, the new version applied, the outcome told.
async fn write(app: &Weak<App>, store: &ModeStore, conn: &mut ServerConn, request: Option<Request>) -> Result<(), BackendError> {
    let Some((mode, reply)) = request else { return Err(BackendError::Closed) };
    let sql = format!("update pgsplit.mode set mode = '{}' where id = 1 returning version, mode", mode.as_str());
    let written = read_row(app, store, conn, &sql).await;
    let _ = reply.send(written.as_ref().map(|_| ()).map_err(|e| SwitchError::Unreachable(e.to_string())));
    written
}

/// What the store connection sends unprompted: notifications, or an error that ends it.
fn unprompted(app: &Weak<App>, store: &ModeStore, f: crate::protocol::Frame) -> Result<(), BackendError> {
    match f.tag {
        b'A' => notified(app, store, f.body()),
        b'E' => return Err(crate::backend::conn::error_from_body(f.body())),
        _ => {}
    }
    Ok(())
}

/// Runs `sql` (one row: version, mode) and applies it, with any notification that arrived meanwhile.
async fn read_row(app: &Weak<App>, store: &ModeStore, conn: &mut ServerConn, sql: &str) -> Result<(), BackendError> {
    let mut notes = Vec::new();
    let rows = conn.simple_noting(sql, &mut notes).await?;
    for body in &notes {
        notified(app, store, body);
    }
    let row = rows.first().ok_or_else(|| BackendError::Protocol("pgsplit.mode has no row".into()))?;
    let (version, mode) = match (row.first(), row.get(1)) {
        (Some(Some(v)), Some(Some(m))) => (v.as_str(), m.as_str()),
        _ => return Err(BackendError::Protocol("pgsplit.mode has no valid row".into())),
    };
    let (version, mode) = parse(version, mode).ok_or_else(|| BackendError::Protocol("pgsplit.mode has no valid row".into()))?;
    seen(app, store, version, mode);
    Ok(())
}

/// A NotificationResponse on the store connection.
fn notified(app: &Weak<App>, store: &ModeStore, body: &[u8]) {
    let Some((channel, payload)) = crate::cache::listen::notification_payload(body) else { return };
    if channel != CHANNEL.as_bytes() {
        return;
    }
    let payload = String::from_utf8_lossy(payload);
    if let Some((version, mode)) = payload.split_once(':').and_then(|(v, m)| parse(v, m)) {
        seen(app, store, version, mode);
    }
}

/// Applies a stored mode unless a later version was applied already.
fn seen(app: &Weak<App>, store: &ModeStore, version: i64, mode: Mode) {
    let Some(app) = app.upgrade() else { return };
    let newer = store.update(|s| {
        s.last_seen = Some(SystemTime::now());
        let newer = version > s.version;
        if newer {
            s.version = version;
        }
        newer
    });
    if newer {
        app.set_mode(mode);
    }
}
