//! One target at run time: its bb8 pool of server connections and what the last connection attempts said about its health.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use bb8::{CustomizeConnection, ErrorSink, ManageConnection, Pool, PooledConnection, QueueStrategy, RunError};

use super::{BackendError, ServerConn, TargetSpec};

/// A server connection checked out of a target's pool; dropping it returns it (or discards it if broken), then
/// lets the next waiting client in.
pub struct PooledConn {
    /// The connection, on loan from bb8.
    conn: PooledConnection<'static, ServerManager>,
    /// The client's turn: bb8 hands a returned connection to whoever asks first, so waiting clients queue on this
    /// fair (FIFO) semaphore instead, and a client gets its turn only when a connection is free for it.
    _turn: OwnedSemaphorePermit,
}

impl std::ops::Deref for PooledConn {
    type Target = ServerConn;

    fn deref(&self) -> &ServerConn {
        &self.conn
    }
}

impl std::ops::DerefMut for PooledConn {
    fn deref_mut(&mut self) -> &mut ServerConn {
        &mut self.conn
    }
}

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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// bb8's view of a target: how to open a server connection and when one is unusable.
pub struct ServerManager {
    /// Where and how to connect.
    spec: Arc<TargetSpec>,
}

impl ManageConnection for ServerManager {
    /// Boxed: a connection changes hands several times per transaction (pool, session, transaction state), and a
    /// pointer moves where the whole connection (buffers, caches, TLS state) would be copied each time.
    type Connection = Box<ServerConn>;
    type Error = BackendError;

    async fn connect(&self) -> Result<Box<ServerConn>, BackendError> {
        ServerConn::connect(&self.spec).await.map(Box::new)
    }

    async fn is_valid(&self, conn: &mut Box<ServerConn>) -> Result<(), BackendError> {
        conn.simple("").await.map(|_| ())
    }

    /// Only a connection whose last ReadyForQuery said idle, and whose last exchange completed, may be reused.
    fn has_broken(&self, conn: &mut Box<ServerConn>) -> bool {
        !conn.reusable()
    }
}

/// Records connection failures reported by bb8's background connects.
#[derive(Debug, Clone)]
struct HealthSink(Arc<Health>);

impl ErrorSink<BackendError> for HealthSink {
    fn sink(&self, e: BackendError) {
        self.0.failed(&e);
    }

    fn boxed_clone(&self) -> Box<dyn ErrorSink<BackendError>> {
        Box::new(self.clone())
    }
}

/// Records successful connections.
#[derive(Debug)]
struct HealthOnConnect(Arc<Health>);

impl CustomizeConnection<Box<ServerConn>, BackendError> for HealthOnConnect {
    fn on_acquire<'a>(
        &'a self,
        conn: &'a mut Box<ServerConn>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), BackendError>> + Send + 'a>> {
        self.0.connected(conn);
        Box::pin(async { Ok(()) })
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
            CheckoutError::Canceled => None,
        }
    }
}

/// What the pool's `get` gives.
type Got = Result<PooledConnection<'static, ServerManager>, RunError<BackendError>>;

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
    /// The bounded pool.
    pool: Pool<ServerManager>,
    /// Reachability as the last connection attempts saw it.
    health: Arc<Health>,
    /// How long clients wait for a connection, in milliseconds (a reload may change it).
    checkout_timeout_ms: AtomicU64,
    /// Most server connections (a reload may change it; `turns` holds this many permits).
    max: AtomicU32,
    /// Connections kept open even when idle (opened at start and topped up at each probe by `keep_min`).
    min: u32,
    /// `max` at start: bb8's own bound, so never exceeded by a reload.
    start_max: u32,
    /// A reload lowered `max`: connections above it are closed after use.
    shrunk: AtomicBool,
    /// Permits a shrink still has to withdraw (they were in use); a later grow pays this first.
    shrink_debt: Arc<AtomicU32>,
    /// PAUSE: new checkouts wait until RESUME.
    paused: tokio::sync::watch::Sender<bool>,
    /// `paused`'s value, read by every checkout without the watch's lock.
    paused_now: AtomicBool,
    /// One permit per connection of `max`: clients wait their turn here, first come, first served.
    turns: Arc<Semaphore>,
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
        let health = Arc::new(Health::default());
        health.up.store(true, Ordering::Relaxed);
        let pool = Pool::builder()
            // `turns` bounds the connections in use to `max`, but bb8 also opens a connection for each getter still
            // in flight: a getter that has just taken a returned connection counts for a moment after, and a client
            // given the freed turn in that moment got bb8 to open one more (seen as 11 over a pool of 10). bb8's own
            // bound is therefore the start `max`: a reload may lower `max`, not raise it above that.
            .max_size(settings.max.max(1))
            // No `min_idle`: bb8 would open idle connections beyond `max` while all are in use; `keep_min` opens
            // them under turns instead.
            .connection_timeout(settings.checkout_timeout)
            .idle_timeout(settings.idle_timeout)
            .max_lifetime(settings.max_lifetime)
            .test_on_check_out(false)
            // The most recently used idle connection first, as PgBouncer does: warm server caches and prepared
            // statements, and connections beyond the steady need stay idle long enough to be closed.
            .queue_strategy(QueueStrategy::Lifo)
            .error_sink(Box::new(HealthSink(health.clone())))
            .connection_customizer(Box::new(HealthOnConnect(health.clone())))
            .build_unchecked(ServerManager { spec: spec.clone() });
        let turns = Arc::new(Semaphore::new(settings.max.max(1) as usize));
        Backend {
            spec,
            pool,
            health,
            checkout_timeout_ms: AtomicU64::new(millis(settings.checkout_timeout)),
            max: AtomicU32::new(settings.max.max(1)),
            min: settings.min,
            start_max: settings.max.max(1),
            shrunk: AtomicBool::new(false),
            shrink_debt: Default::default(),
            statement_epoch: AtomicU64::new(0),
            catalog_loaded: AtomicU64::new(0),
            catalog_reads: tokio::sync::Mutex::new(()),
            paused: tokio::sync::watch::Sender::new(false),
            paused_now: AtomicBool::new(false),
            turns,
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
        let old = self.max.swap(new, Ordering::SeqCst);
        if new > old {
            // Permits still owed by an earlier shrink are cancelled first, then the rest are added.
            let mut grow = new - old;
            let _ = self.shrink_debt.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |debt| {
                let paid = debt.min(grow);
                grow = new - old - paid;
                Some(debt - paid)
            });
            self.turns.add_permits(grow as usize);
        } else if new < old {
            self.shrunk.store(true, Ordering::Relaxed);
            let want = (old - new) as usize;
            let gone = self.turns.forget_permits(want);
            if gone < want && self.shrink_debt.fetch_add((want - gone) as u32, Ordering::SeqCst) == 0 {
                // Withdraws the rest one permit at a time as connections come back, for as long as any is owed.
                let turns = self.turns.clone();
                let debt = self.shrink_debt.clone();
                tokio::spawn(async move {
                    while debt.load(Ordering::SeqCst) > 0 {
                        let Ok(permit) = turns.clone().acquire_owned().await else { return };
                        if debt.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| d.checked_sub(1)).is_ok() {
                            permit.forget();
                        }
                    }
                });
            }
        }
    }

    /// The pool's current `max`.
    pub fn max(&self) -> u32 {
        self.max.load(Ordering::Relaxed)
    }

    fn checkout_timeout(&self) -> Duration {
        Duration::from_millis(self.checkout_timeout_ms.load(Ordering::Relaxed))
    }

    /// PAUSE (true) or RESUME (false): while paused, checkouts wait; connections in use are not disturbed.
    pub fn set_paused(&self, paused: bool) {
        self.paused_now.store(paused, Ordering::Release);
        self.paused.send_replace(paused);
    }

    /// Whether the target is paused.
    #[inline]
    pub fn is_paused(&self) -> bool {
        self.paused_now.load(Ordering::Acquire)
    }

    /// Server connections checked out now.
    pub fn in_use(&self) -> u32 {
        let owed = self.shrink_debt.load(Ordering::Relaxed);
        (self.max() + owed).saturating_sub(self.turns.available_permits() as u32)
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

    /// Takes a server connection for one transaction. A target known to be down is tried once directly, so its
    /// clients learn of the outage at once instead of after the whole checkout timeout.
    pub async fn checkout(&self) -> Result<PooledConn, CheckoutError> {
        self.checkout_or_cancel(None).await
    }

    /// `checkout` for a client: `cancel` (its cancel slot) ends a wait for a turn or for RESUME. Only waits are
    /// raced against it, so a checkout that needs no wait stays a small future (no select, no timer).
    pub async fn checkout_or_cancel(&self, cancel: Option<&tokio::sync::Notify>) -> Result<PooledConn, CheckoutError> {
        let started = tokio::time::Instant::now();
        let _waiting = self.stats.waiting();
        let mut waited = false;
        let checkout = self.checkout_inner(started, cancel, &mut waited).await;
        self.stats.checked_out(waited.then_some(started), checkout.as_ref().err().and_then(CheckoutError::failure));
        checkout
    }

    async fn checkout_inner(
        &self,
        started: tokio::time::Instant,
        cancel: Option<&tokio::sync::Notify>,
        waited: &mut bool,
    ) -> Result<PooledConn, CheckoutError> {
        if self.is_paused() {
            *waited = true;
            self.resumed(cancel).await?;
        }
        let checkout_timeout = self.checkout_timeout();
        // A free turn is taken at once, without a future or a timer (the fast path of every checkout).
        let turn = match self.turns.clone().try_acquire_owned() {
            Ok(turn) => turn,
            Err(_) => self.turn(checkout_timeout, cancel, waited).await?,
        };
        // Every connection is opened under a turn (here, by bb8 for a turn's holder, by a probe or by `keep_min`), so
        // the pool never holds more than `max`.
        if !self.health.up.load(Ordering::Relaxed) && self.pool.state().idle_connections == 0 {
            *waited = true;
            self.connect_while_down().await?;
        }
        // The fast path: an idle connection, taken at the first poll, still alive.
        let mut get = std::pin::pin!(self.pool.get_owned());
        let first = super::poll_once(get.as_mut()).await;
        let got = match first {
            std::task::Poll::Ready(Ok(mut conn)) => {
                if conn.idle_and_alive(started.into_std()) {
                    return self.checked_out(Ok(conn), turn);
                }
                conn.broken = true;
                None
            }
            std::task::Poll::Ready(other) => Some(other),
            std::task::Poll::Pending => Some(self.wait_for_connection(started, checkout_timeout, waited, get).await),
        };
        self.live_connection(started, checkout_timeout, turn, waited, got).await
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
    ) -> Result<OwnedSemaphorePermit, CheckoutError> {
        // Taken at once if one came free since the caller's try.
        if let Ok(turn) = self.turns.clone().try_acquire_owned() {
            return Ok(turn);
        }
        *waited = true;
        let turn = tokio::select! {
            t = tokio::time::timeout(checkout_timeout, self.turns.clone().acquire_owned()) => t,
            _ = cancelled(cancel) => return Err(CheckoutError::Canceled),
        };
        match turn {
            Ok(Ok(turn)) => Ok(turn),
            _ => Err(CheckoutError::Timeout { target: self.spec.name.clone(), waited: checkout_timeout }),
        }
    }

    /// A target known to be down with no idle connection: one direct connection attempt (under the caller's turn),
    /// added to the pool when it succeeds, so that its clients learn of an outage at once.
    async fn connect_while_down(&self) -> Result<(), CheckoutError> {
        match ServerConn::connect(&self.spec).await {
            Ok(conn) => {
                self.health.connected(&conn);
                let _ = self.pool.add(Box::new(conn));
                Ok(())
            }
            Err(e) => {
                self.health.failed(&e);
                Err(self.unavailable())
            }
        }
    }

    /// A pooled connection for the holder of `turn`, within what is left of the checkout timeout, after the first
    /// try gave `got` (an error, or `None`: a connection that was not alive). An idle connection the server closed or
    /// wrote to meanwhile (shutdown, restart, idle timeout) is dropped and the next one tried; at most every pooled
    /// connection once, then a fresh one.
    async fn live_connection(
        &self,
        started: tokio::time::Instant,
        checkout_timeout: Duration,
        turn: OwnedSemaphorePermit,
        waited: &mut bool,
        mut got: Option<Got>,
    ) -> Result<PooledConn, CheckoutError> {
        let mut attempts = 1 + self.pool.state().connections as usize;
        loop {
            match got {
                Some(Ok(mut conn)) => {
                    if conn.idle_and_alive(started.into_std()) || attempts == 0 {
                        return self.checked_out(Ok(conn), turn);
                    }
                    conn.broken = true;
                    attempts -= 1;
                }
                Some(other) => return self.checked_out(other, turn),
                None => {}
            }
            tracing::debug!(target = %self.spec.name, "dropped a server connection closed while idle");
            *waited = true;
            let mut next = std::pin::pin!(self.pool.get_owned());
            let first = super::poll_once(next.as_mut()).await;
            got = Some(match first {
                std::task::Poll::Ready(got) => got,
                std::task::Poll::Pending => self.wait_for_connection(started, checkout_timeout, waited, next).await,
            });
        }
    }

    /// Waits for the pool's connection (`get`, which was not ready at its first poll) within what is left of the
    /// checkout timeout (bb8's own is the one the pool was built with).
    async fn wait_for_connection<F: Future<Output = Got>>(
        &self,
        started: tokio::time::Instant,
        checkout_timeout: Duration,
        waited: &mut bool,
        get: std::pin::Pin<&mut F>,
    ) -> Got {
        *waited = true;
        let left = checkout_timeout.saturating_sub(started.elapsed()).max(Duration::from_millis(100));
        tokio::time::timeout(left, get).await.unwrap_or(Err(RunError::TimedOut))
    }

    fn checked_out(&self, got: Got, turn: OwnedSemaphorePermit) -> Result<PooledConn, CheckoutError> {
        match got {
            Ok(mut conn) => {
                // Above `max` after a reload shrank it: this connection closes after this use.
                if self.shrunk.load(Ordering::Relaxed) && self.pool.state().connections > self.max() {
                    conn.broken = true;
                }
                Ok(PooledConn { conn, _turn: turn })
            }
            Err(RunError::User(e)) => {
                self.health.failed(&e);
                Err(self.unavailable())
            }
            Err(RunError::TimedOut) if !self.health.up.load(Ordering::Relaxed) => Err(self.unavailable()),
            Err(RunError::TimedOut) => {
                Err(CheckoutError::Timeout { target: self.spec.name.clone(), waited: self.checkout_timeout() })
            }
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
                let _ = self.pool.add(Box::new(conn));
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
        let state = self.pool.state();
        if state.connections > 0 && state.idle_connections == 0 {
            return self.is_up();
        }
        // The probe takes a turn as a client does: a connection it borrows (or opens) is one of `max`, never one more.
        // No free turn means every connection is in use: the target is serving.
        let Ok(_turn) = self.turns.clone().try_acquire_owned() else { return self.is_up() };
        let checked = tokio::time::timeout(timeout, async {
            let mut conn = self.pool.get().await.map_err(|e| match e {
                RunError::User(e) => e,
                RunError::TimedOut => BackendError::Timeout,
            })?;
            // Broken until the exchange completes: if the timeout drops it half-way, it is closed, not reused.
            conn.broken = true;
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
        let state = self.pool.state();
        let missing = self.min.min(self.max()).saturating_sub(state.connections);
        if missing == 0 {
            return;
        }
        // Every idle connection is taken too, so that each further `get` opens a new one.
        let wanted = (missing + state.idle_connections).min(self.turns.available_permits() as u32);
        let Ok(_turns) = self.turns.clone().try_acquire_many_owned(wanted) else { return };
        let mut held = Vec::with_capacity(wanted as usize);
        for _ in 0..wanted {
            match tokio::time::timeout(timeout, self.pool.get()).await {
                Ok(Ok(conn)) => held.push(conn),
                Ok(Err(RunError::User(e))) => {
                    self.health.failed(&e);
                    break;
                }
                _ => break,
            }
        }
        // `held` goes back to the pool idle before the turns are released.
        drop(held);
    }

    /// The first login to a database made on demand (`any_database`): one connection attempt, whose failure is the
    /// server's own answer (3D000 for a database that does not exist, 28P01, ...); the connection joins the pool.
    pub async fn open_first(&self) -> Result<(), BackendError> {
        let conn = ServerConn::connect(&self.spec).await?;
        self.health.connected(&conn);
        let _ = self.pool.add(Box::new(conn));
        Ok(())
    }

    /// Closes the pool's idle connections now (before a client drops, renames or copies their database, which
    /// PostgreSQL refuses while anyone is connected to it). Every free turn is held meanwhile, so no client takes
    /// one of them half-way; connections in use are left alone, as PostgreSQL leaves other users' sessions.
    pub async fn close_idle(&self) -> usize {
        let free = u32::try_from(self.turns.available_permits()).unwrap_or(u32::MAX);
        let Ok(_turns) = self.turns.clone().try_acquire_many_owned(free) else { return 0 };
        let mut closed = 0;
        for _ in 0..self.pool.state().idle_connections {
            // Only a connection that is idle now: a `get` that would have to wait (or open one) is dropped.
            let mut get = std::pin::pin!(self.pool.get_owned());
            let std::task::Poll::Ready(Ok(mut conn)) = super::poll_once(get.as_mut()).await else {
                break;
            };
            conn.broken = true;
            // A Terminate, so the server process exits at once rather than when it notices the socket closed.
            let _ = tokio::time::timeout(Duration::from_millis(100), conn.terminate()).await;
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
        let s = self.pool.state();
        (s.connections, s.idle_connections)
    }
}
