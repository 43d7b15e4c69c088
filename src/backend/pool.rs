//! One target at run time: its pool of server connections (the idle ones on a `Shelf`, lent as `PooledConn`s under
//! the clients' turns) and what the last connection attempts said about its health.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::shelf::{PooledConn, Shelf, Turn};
use super::{BackendError, Login, LoginId, ServerConn, TargetSpec};
use crate::locks::lock;

/// Pool sizes and timeouts for one target.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Never more server connections than this.
    pub max: u32,
    /// Idle connections kept open.
    pub min: u32,
    /// How long a client waits for a connection before an error.
    pub checkout_timeout: Duration,
    /// Idle connections are closed after this (those below `min` are opened again by the next probe).
    pub idle_timeout: Option<Duration>,
    /// Connections are replaced after this age.
    pub max_lifetime: Option<Duration>,
    /// Idle stacks: one per worker thread (`workers`; fixed at start, a reload does not change it).
    pub workers: usize,
}

/// What the pool knows of a target's reachability.
#[derive(Debug, Default)]
pub struct Health {
    /// False after a failed connection attempt, true after a successful one.
    up: AtomicBool,
    /// The last connection error, for the message clients and logs see.
    last_error: Mutex<Option<String>>,
    /// ParameterStatus values of the last connection made (server_version, encodings, ...), reported to clients at startup.
    server_params: Mutex<Vec<(String, String)>>,
}

impl Health {
    fn failed(&self, e: &BackendError) {
        self.up.store(false, Ordering::Relaxed);
        *lock(&self.last_error) = Some(e.to_string());
    }

    fn connected(&self, conn: &ServerConn) {
        self.up.store(true, Ordering::Relaxed);
        *lock(&self.last_error) = None;
        *lock(&self.server_params) = conn.params.clone();
    }
}

/// Why no server connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    /// The target cannot be reached (SQLSTATE 08006).
    #[error("target \"{target}\" is unavailable: {reason}")]
    Unavailable {
        /// Target name.
        target: String,
        /// The last connection error.
        reason: String,
    },
    /// Every connection stayed busy for the whole checkout timeout (SQLSTATE 53300).
    #[error("no server connection to target \"{target}\" became free within {waited:?}")]
    Timeout {
        /// Target name.
        target: String,
        /// The configured checkout timeout.
        waited: Duration,
    },
    /// The server refused a user's own login (bad password, no such role, no right to the role): the server's
    /// SQLSTATE (28P01, 28000, 42501, ...); the target stays up for the other logins.
    #[error("target \"{target}\" refused the login of {user}: {message}")]
    Refused {
        /// Target name.
        target: String,
        /// The login refused.
        user: String,
        /// The server's SQLSTATE.
        code: &'static str,
        /// The server's message.
        message: String,
    },
    /// `DISABLE` on the admin console: the target takes no new transactions until `ENABLE` (SQLSTATE 57P03).
    #[error("target \"{target}\" is disabled (DISABLE on the admin console); ENABLE lets it take transactions again")]
    Disabled {
        /// Target name.
        target: String,
    },
    /// The client cancelled while it waited for its turn (SQLSTATE 57014).
    #[error("canceling statement due to user request")]
    Canceled,
}

impl CheckoutError {
    /// The metrics label of the failure; a wait the client cancelled is none.
    fn failure(&self) -> Option<crate::metrics::CheckoutFailure> {
        match self {
            CheckoutError::Unavailable { .. } => Some(crate::metrics::CheckoutFailure::Unavailable),
            CheckoutError::Timeout { .. } => Some(crate::metrics::CheckoutFailure::Timeout),
            CheckoutError::Disabled { .. } | CheckoutError::Refused { .. } | CheckoutError::Canceled => None,
        }
    }
}

/// Resolves when the client cancels its wait (its cancel slot is notified); never without one.
async fn cancelled(cancel: Option<&tokio::sync::Notify>) {
    match cancel {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A target at run time.
pub struct Backend {
    /// Connection details.
    pub spec: Arc<TargetSpec>,
    /// The idle connections and the counts the pool is bounded by (shared with the connections lent).
    shelf: Arc<Shelf>,
    /// Reachability as the last connection attempts saw it.
    health: Arc<Health>,
    /// How long clients wait for a connection, in milliseconds (a reload may change it).
    checkout_timeout_ms: AtomicU64,
    /// Connections kept open even when idle (opened at start and topped up at each probe by `keep_min`).
    min: u32,
    /// `max` at start: a reload may lower `max`, not raise it above this.
    start_max: u32,
    /// Permits a shrink still has to withdraw (they were in use); a later grow pays this first.
    shrink_debt: Arc<AtomicU32>,
    /// PAUSE: new checkouts wait until RESUME.
    paused: tokio::sync::watch::Sender<bool>,
    /// `paused`'s value, read by every checkout without the watch's lock.
    paused_now: AtomicBool,
    /// DISABLE: new checkouts are refused until ENABLE.
    disabled: AtomicBool,
    /// The logins its connections use, by number (`LoginId`): the URL's first.
    logins: Mutex<Vec<Arc<Login>>>,
    /// Queries, errors, routes, waits and the connection alert of this target, for `/metrics`.
    pub stats: crate::metrics::TargetStats,
    /// The generation of the target's catalog for prepared statements: it moves on at DDL and when a server says a
    /// prepared statement's result type changed. Part of a shared statement's server-side name, so a client's Parse
    /// after it makes a statement planned against today's catalog (`session::prepared`).
    statement_epoch: AtomicU64,
    /// The `statement_epoch` the loaded catalog snapshot was read at (or after): DDL up to it is in the snapshot.
    catalog_loaded: AtomicU64,
    /// Catalog reads of this target take turns (`App::refresh_catalog`): snapshots are put in force in the order
    /// they were read.
    catalog_reads: tokio::sync::Mutex<()>,
}

impl Backend {
    /// Builds a target's pool; no connection is opened until needed (or `min` asks for it).
    pub fn new(spec: TargetSpec, settings: &PoolSettings) -> Backend {
        let spec = Arc::new(spec);
        let url_login = Login { user: spec.user.clone(), password: spec.password.clone(), role: None, passthrough: None };
        let health = Arc::new(Health::default());
        health.up.store(true, Ordering::Relaxed);
        let shelf = Arc::new(Shelf::new(
            settings.max.max(1),
            settings.max_lifetime,
            settings.idle_timeout,
            settings.workers,
            spec.servers.clone(),
        ));
        Backend {
            spec,
            shelf,
            health,
            checkout_timeout_ms: AtomicU64::new(millis(settings.checkout_timeout)),
            min: settings.min,
            start_max: settings.max.max(1),
            shrink_debt: Default::default(),
            statement_epoch: AtomicU64::new(0),
            catalog_loaded: AtomicU64::new(0),
            catalog_reads: tokio::sync::Mutex::new(()),
            paused: tokio::sync::watch::Sender::new(false),
            paused_now: AtomicBool::new(false),
            disabled: AtomicBool::new(false),
            logins: Mutex::new(vec![Arc::new(url_login)]),
            stats: Default::default(),
        }
    }

    /// Applies reloaded pool settings: `max` up to its start value (permits added now, or withdrawn as connections
    /// come back; extra connections are closed after their next use) and `checkout_timeout`. `min`, `idle_timeout` and
    /// `max_lifetime` keep their start values until restart.
    pub fn resize(&self, settings: &PoolSettings) {
        self.checkout_timeout_ms.store(millis(settings.checkout_timeout), Ordering::Relaxed);
        let new = settings.max.max(1).min(self.start_max);
        if settings.max > self.start_max {
            tracing::warn!(
                target = %self.spec.name,
                max = settings.max,
                kept = self.start_max,
                "pool max above its start value needs a restart; the start value stays"
            );
        }
        let old = self.shelf.max.swap(new, Ordering::SeqCst);
        if new > old {
            // Permits still owed by an earlier shrink are cancelled first, then the rest are added.
            let mut grow = new - old;
            let _ = self.shrink_debt.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |debt| {
                let paid = debt.min(grow);
                grow = new - old - paid;
                Some(debt - paid)
            });
            self.shelf.turns.give(grow as usize);
        } else if new < old {
            self.shelf.shrunk.store(true, Ordering::Relaxed);
            // Idle connections above the new `max` close now; those in use, when they come back.
            self.shelf.trim(new);
            let want = (old - new) as usize;
            let gone = self.shelf.turns.forget(want);
            if gone < want && self.shrink_debt.fetch_add((want - gone) as u32, Ordering::SeqCst) == 0 {
                // Withdraws the rest one permit at a time as connections come back, for as long as any is owed.
                let shelf = self.shelf.clone();
                let debt = self.shrink_debt.clone();
                tokio::spawn(async move {
                    while debt.load(Ordering::SeqCst) > 0 {
                        shelf.turns.take().await;
                        let turn = Turn::held(&shelf, 1);
                        if debt.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| d.checked_sub(1)).is_ok() {
                            turn.forget();
                        }
                    }
                });
            }
        }
    }

    /// The pool's current `max`.
    pub fn max(&self) -> u32 {
        self.shelf.max.load(Ordering::Relaxed)
    }

    fn checkout_timeout(&self) -> Duration {
        Duration::from_millis(self.checkout_timeout_ms.load(Ordering::Relaxed))
    }

    /// PAUSE (true) or RESUME (false): while paused, checkouts wait; connections in use are not disturbed.
    pub fn set_paused(&self, paused: bool) {
        self.paused_now.store(paused, Ordering::Release);
        self.paused.send_replace(paused);
    }

    /// The number of `login` in this pool (0: the target URL's login), registered at its first use. Logins are the
    /// configured users' (bounded by the configuration).
    pub fn login_id(&self, login: &Login) -> LoginId {
        let mut logins = lock(&self.logins);
        if let Some(i) = logins.iter().position(|l| **l == *login) {
            return i as LoginId;
        }
        logins.push(Arc::new(login.clone()));
        (logins.len() - 1) as LoginId
    }

    /// The login of number `id` (the URL's for an unknown number).
    pub fn login(&self, id: LoginId) -> Arc<Login> {
        let logins = lock(&self.logins);
        logins.get(id as usize).or_else(|| logins.first()).cloned().unwrap_or_else(|| Arc::new(self.url_login()))
    }

    /// Every login registered, by number.
    pub fn logins(&self) -> Vec<Arc<Login>> {
        lock(&self.logins).clone()
    }

    /// The target URL's login.
    fn url_login(&self) -> Login {
        Login { user: self.spec.user.clone(), password: self.spec.password.clone(), role: None, passthrough: None }
    }

    /// Connections kept open even when idle.
    pub fn min(&self) -> u32 {
        self.min
    }

    /// DISABLE (true) or ENABLE (false): new checkouts are refused while disabled.
    pub fn set_disabled(&self, disabled: bool) {
        self.disabled.store(disabled, Ordering::Relaxed);
    }

    /// Whether the target is disabled.
    pub fn is_disabled(&self) -> bool {
        self.disabled.load(Ordering::Relaxed)
    }

    /// How long the client first in the checkout queue has waited, if one is queued.
    pub fn oldest_wait(&self) -> Option<Duration> {
        self.shelf.turns.oldest_wait()
    }

    /// RECONNECT: every connection open now is closed when it comes back (idle ones now); new ones replace them.
    pub async fn reconnect(&self) -> usize {
        self.spec.servers.next_generation();
        self.close_idle().await
    }

    /// KILL: like RECONNECT, and the sockets of the connections in use are shut at once (their clients see the
    /// server connection lost, as when the server goes away). Returns how many were in use.
    pub async fn kill(&self) -> usize {
        self.reconnect().await;
        self.spec.servers.kill()
    }

    /// Closes this pool's connection with BackendKeyData `key`, if it has it (`query_timeout`'s last resort).
    pub fn shut_down_server(&self, key: (i32, i32)) -> bool {
        self.spec.servers.shut_down(key)
    }

    /// Whether a connection from before the last RECONNECT or KILL is still open (WAIT_CLOSE).
    pub fn closing(&self) -> bool {
        self.spec.servers.any_older()
    }

    /// Whether the target is paused.
    #[inline]
    pub fn is_paused(&self) -> bool {
        self.paused_now.load(Ordering::Acquire)
    }

    /// Server connections checked out now.
    pub fn in_use(&self) -> u32 {
        let owed = self.shrink_debt.load(Ordering::Relaxed);
        (self.max() + owed).saturating_sub(u32::try_from(self.shelf.turns.available()).unwrap_or(u32::MAX))
    }

    /// The generation of prepared statements (see `statement_epoch`).
    pub fn statement_epoch(&self) -> u64 {
        self.statement_epoch.load(Ordering::Relaxed)
    }

    /// The catalog changed in a way that may change prepared statements' descriptions: later Parses make new ones.
    /// Returns the new generation (a catalog read that starts after this sees the change).
    pub fn catalog_changed(&self) -> u64 {
        self.statement_epoch.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// This target's turn to read its catalog (held while reading and putting the snapshot in force).
    pub async fn catalog_turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.catalog_reads.lock().await
    }

    /// The generation the loaded catalog snapshot includes.
    pub fn catalog_loaded(&self) -> u64 {
        self.catalog_loaded.load(Ordering::Acquire)
    }

    /// A catalog snapshot read that began at `generation` was swapped in.
    pub fn mark_catalog_loaded(&self, generation: u64) {
        self.catalog_loaded.fetch_max(generation, Ordering::AcqRel);
    }

    /// The target's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Takes a server connection (of the target URL's login) for one transaction. A target known to be down is
    /// tried once directly, so its clients learn of the outage at once instead of after the whole checkout timeout.
    pub async fn checkout(&self) -> Result<PooledConn, CheckoutError> {
        self.checkout_or_cancel(0, None).await
    }

    /// `checkout` of a connection of `login` (`login_id`) for a client: `cancel` (its cancel slot) ends a wait for a
    /// turn or for RESUME. Only waits are raced against it, so a checkout that needs no wait stays a small future
    /// (no select, no timer).
    pub async fn checkout_or_cancel(
        &self,
        login: LoginId,
        cancel: Option<&tokio::sync::Notify>,
    ) -> Result<PooledConn, CheckoutError> {
        let started = tokio::time::Instant::now();
        let _waiting = self.stats.waiting();
        let mut waited = false;
        let checkout = self.checkout_inner(login, started, cancel, &mut waited).await;
        self.stats.checked_out(waited.then_some(started), checkout.as_ref().err().and_then(CheckoutError::failure));
        checkout
    }

    async fn checkout_inner(
        &self,
        login: LoginId,
        started: tokio::time::Instant,
        cancel: Option<&tokio::sync::Notify>,
        waited: &mut bool,
    ) -> Result<PooledConn, CheckoutError> {
        if self.is_paused() {
            *waited = true;
            self.resumed(cancel).await?;
        }
        if self.disabled.load(Ordering::Relaxed) {
            return Err(CheckoutError::Disabled { target: self.spec.name.clone() });
        }
        let checkout_timeout = self.checkout_timeout();
        // A free turn is taken at once, without a future or a timer (the fast path of every checkout).
        let turn = match self.shelf.turns.try_take(1) {
            true => Turn::held(&self.shelf, 1),
            false => self.turn(checkout_timeout, cancel, waited).await?,
        };
        self.lend(login, turn, started, checkout_timeout, waited).await
    }

    /// A connection for the holder of `turn`: the most recently returned idle one that is still alive (one the
    /// server closed or wrote to meanwhile — shutdown, restart, its own idle timeout — or past `max_lifetime` is
    /// closed and the next tried), else a new one, opened within what is left of the checkout timeout. A target
    /// known to be down with no idle connection is tried once, so its clients learn of an outage at once.
    async fn lend(
        &self,
        login: LoginId,
        turn: Turn,
        started: tokio::time::Instant,
        checkout_timeout: Duration,
        waited: &mut bool,
    ) -> Result<PooledConn, CheckoutError> {
        loop {
            while let Some(mut conn) = self.shelf.take(Some(login)) {
                if !self.shelf.expired(&conn, started.into_std()) && conn.idle_and_alive(started.into_std()) {
                    match conn.rehome() {
                        Ok(()) => return Ok(PooledConn::lend(conn, turn, (!*waited).then(|| started.into_std()))),
                        Err(e) => {
                            tracing::warn!(target = %self.spec.name, error = %e, "cannot move a server connection to this worker")
                        }
                    }
                }
                conn.broken = true;
                self.shelf.close(conn);
                tracing::debug!(target = %self.spec.name, "dropped a server connection closed while idle");
            }
            *waited = true;
            // Counted before it exists, and only within `max` (whatever the logins: the budget is the target's).
            if let Some(opening) = self.shelf.try_opening() {
                return self.open_for(login, turn, opening, started, checkout_timeout).await;
            }
            // `max` open, none of this login idle: the least recently used idle one of another login makes room,
            // once its server process has gone (the server counts it until then).
            match self.shelf.take_other(login) {
                Some(mut other) => {
                    other.terminate_and_wait(Duration::from_secs(1)).await;
                    self.shelf.close(other);
                }
                None if started.elapsed() >= checkout_timeout => {
                    return Err(CheckoutError::Timeout { target: self.spec.name.clone(), waited: checkout_timeout });
                }
                // Every other connection is being opened or closed, or a reload shrank the pool: soon one is back.
                None => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
    }

    /// Opens a connection of `login` for the holder of `turn`, within what is left of the checkout timeout.
    async fn open_for(
        &self,
        login: LoginId,
        turn: Turn,
        opening: super::shelf::Opening<'_>,
        started: tokio::time::Instant,
        checkout_timeout: Duration,
    ) -> Result<PooledConn, CheckoutError> {
        let left = checkout_timeout.saturating_sub(started.elapsed()).max(Duration::from_millis(100));
        let spec = self.login(login);
        match tokio::time::timeout(left, ServerConn::connect_as(&self.spec, &spec, login)).await {
            Ok(Ok(conn)) => {
                opening.opened();
                // The greeting's server parameters come from the URL's login only (another login's role settings,
                // `session_authorization` and `is_superuser` are its own).
                if login == 0 {
                    self.health.connected(&conn);
                }
                Ok(PooledConn::lend(Box::new(conn), turn, None))
            }
            // A user's own login failing says nothing of the target (its probes, with the URL's login, do).
            Ok(Err(e)) if login != 0 => {
                let (code, message) = match e {
                    BackendError::Server { code, message } => (crate::protocol::codes::of_login(&code), message),
                    BackendError::Protocol(m) => (crate::protocol::codes::INVALID_PASSWORD, m),
                    other => (crate::protocol::codes::CONNECTION_FAILURE, other.to_string()),
                };
                Err(CheckoutError::Refused { target: self.spec.name.clone(), user: spec.user.clone(), code, message })
            }
            Ok(Err(e)) => {
                self.health.failed(&e);
                Err(self.unavailable())
            }
            Err(_) => match self.is_up() {
                true => Err(CheckoutError::Timeout { target: self.spec.name.clone(), waited: checkout_timeout }),
                false => Err(self.unavailable()),
            },
        }
    }

    /// Waits until RESUME, or until the client cancels.
    async fn resumed(&self, cancel: Option<&tokio::sync::Notify>) -> Result<(), CheckoutError> {
        let mut resumed = self.paused.subscribe();
        tokio::select! {
            _ = resumed.wait_for(|p| !*p) => Ok(()),
            _ = cancelled(cancel) => Err(CheckoutError::Canceled),
        }
    }

    /// The client's turn (one of `max`): a free one at once, else the first to come free within `checkout_timeout`
    /// (first come, first served), unless the client cancels.
    async fn turn(
        &self,
        checkout_timeout: Duration,
        cancel: Option<&tokio::sync::Notify>,
        waited: &mut bool,
    ) -> Result<Turn, CheckoutError> {
        // Taken at once if one came free since the caller's try.
        if self.shelf.turns.try_take(1) {
            return Ok(Turn::held(&self.shelf, 1));
        }
        *waited = true;
        let turn = tokio::select! {
            t = tokio::time::timeout(checkout_timeout, self.shelf.turns.take()) => t,
            _ = cancelled(cancel) => return Err(CheckoutError::Canceled),
        };
        match turn {
            Ok(()) => Ok(Turn::held(&self.shelf, 1)),
            Err(_) => Err(CheckoutError::Timeout { target: self.spec.name.clone(), waited: checkout_timeout }),
        }
    }

    fn unavailable(&self) -> CheckoutError {
        let reason = lock(&self.health.last_error).clone().unwrap_or_else(|| "connection failed".into());
        CheckoutError::Unavailable { target: self.spec.name.clone(), reason }
    }

    /// One connection attempt (no retries: a refused connection or certificate fails at once), recording health and
    /// server parameters; the connection joins the pool (within `max`: at start the pool is empty). At start, a
    /// target found down here is not waited for.
    pub async fn reachable(&self) -> bool {
        match ServerConn::connect(&self.spec).await {
            Ok(conn) => {
                self.health.connected(&conn);
                // Refused only when the pool is full, which cannot be at start; then the connection just closes.
                self.shelf.add_idle(Box::new(conn));
                true
            }
            Err(e) => {
                tracing::warn!(target = %self.spec.name, error = %e, "target unreachable");
                self.health.failed(&e);
                false
            }
        }
    }

    /// Checks the target in the background: a busy pool is serving; otherwise an idle (or new) connection must
    /// answer an empty query within `timeout`. Updates and returns reachability.
    pub async fn probe(&self, timeout: Duration) -> bool {
        let (open, idle) = self.shelf.state();
        if open > 0 && idle == 0 {
            return self.is_up();
        }
        // The probe takes a turn as a client does: a connection it borrows (or opens) is one of `max`, never one more.
        // No free turn means every connection is in use: the target is serving.
        if !self.shelf.turns.try_take(1) {
            return self.is_up();
        }
        let turn = Turn::held(&self.shelf, 1);
        let checked = tokio::time::timeout(timeout, async {
            let mut conn = match self.shelf.take(None) {
                Some(mut conn) => {
                    conn.rehome()?;
                    conn
                }
                None => {
                    // Full of other logins' connections, none idle of the URL's: the target is serving.
                    let Some(opening) = self.shelf.try_opening() else { return Ok(()) };
                    let conn = ServerConn::connect(&self.spec).await?;
                    opening.opened();
                    Box::new(conn)
                }
            };
            // Broken until the exchange completes: if the timeout drops it half-way, it is closed, not reused.
            conn.broken = true;
            let mut conn = PooledConn::lend(conn, turn, None);
            let answer = conn.simple("").await;
            conn.broken = answer.is_err();
            answer.map(|_| ())
        })
        .await
        .unwrap_or(Err(BackendError::Timeout));
        match checked {
            Ok(()) => self.health.up.store(true, Ordering::Relaxed),
            Err(e) => {
                tracing::warn!(target = %self.spec.name, error = %e, "health probe failed");
                self.health.failed(&e);
            }
        }
        self.is_up()
    }

    /// Opens connections until `min` are open. It holds one turn per connection it touches, as that many clients
    /// would, so `max` still bounds the pool; whatever the pool is busy with now is left alone (the next call tops up).
    pub async fn keep_min(&self, timeout: Duration) {
        let (open, _) = self.shelf.state();
        let missing = self.min.min(self.max()).saturating_sub(open);
        if missing == 0 {
            return;
        }
        let wanted = missing.min(u32::try_from(self.shelf.turns.available()).unwrap_or(u32::MAX));
        if !self.shelf.turns.try_take(wanted as usize) {
            return;
        }
        let _turns = Turn::held(&self.shelf, wanted as usize);
        for _ in 0..wanted {
            // Counted while it is being opened, within `max`.
            let Some(opening) = self.shelf.try_opening() else { break };
            match tokio::time::timeout(timeout, ServerConn::connect(&self.spec)).await {
                Ok(Ok(conn)) => {
                    self.health.connected(&conn);
                    self.shelf.add_opened(Box::new(conn), opening);
                }
                Ok(Err(e)) => {
                    self.health.failed(&e);
                    break;
                }
                Err(_) => break,
            }
        }
    }

    /// Closes idle connections past `idle_timeout` or `max_lifetime` (at each health tick; those below `min` are
    /// opened again by `keep_min`). Returns how many.
    pub fn reap(&self) -> usize {
        self.shelf.reap()
    }

    /// The first login to a database made on demand (`any_database`): one connection attempt, whose failure is the
    /// server's own answer (3D000 for a database that does not exist, 28P01, ...); the connection joins the pool.
    pub async fn open_first(&self) -> Result<(), BackendError> {
        let conn = ServerConn::connect(&self.spec).await?;
        self.health.connected(&conn);
        self.shelf.add_idle(Box::new(conn));
        Ok(())
    }

    /// Closes the pool's idle connections now (before a client drops, renames or copies their database, which
    /// PostgreSQL refuses while anyone is connected to it). Every free turn is held meanwhile, so no client takes
    /// one of them half-way; connections in use are left alone, as PostgreSQL leaves other users' sessions.
    pub async fn close_idle(&self) -> usize {
        let free = self.shelf.turns.available();
        if !self.shelf.turns.try_take(free) {
            return 0;
        }
        let _turns = Turn::held(&self.shelf, free);
        let mut closed = 0;
        for mut conn in self.shelf.take_all() {
            conn.broken = true;
            // A Terminate, so the server process exits at once rather than when it notices the socket closed.
            let _ = tokio::time::timeout(Duration::from_millis(100), conn.terminate()).await;
            self.shelf.close(conn);
            closed += 1;
        }
        closed
    }

    /// Whether the last connection attempt succeeded.
    pub fn is_up(&self) -> bool {
        self.health.up.load(Ordering::Relaxed)
    }

    /// The server parameters of the last connection made, if any.
    pub fn server_params(&self) -> Vec<(String, String)> {
        lock(&self.health.server_params).clone()
    }

    /// Connections open and idle, for status displays.
    pub fn pool_state(&self) -> (u32, u32) {
        self.shelf.state()
    }
}
