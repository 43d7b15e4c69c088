//! The session's state: the transaction state machine, the server connection it holds, and the run loop.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;

use crate::app::App;
use crate::backend::{BackendError, CheckoutError, PooledConn, ServerConn};
use crate::cancel::{ClientKey, Running};
use crate::protocol::encode::PgError;
use crate::protocol::{codes, Frame, STATUS_FAILED, STATUS_IDLE, STATUS_IN_TX};
use crate::router::{Analysis, Command, TargetId};

use super::client::Client;
use super::params::Params;
use super::prepared::Prepared;
use super::relay::{self, RelayError, Sink};
use super::SessionError;

/// What is sent to the server for one client request.
pub enum Payload<'a> {
    /// Bytes to send as they are (a Query message).
    Raw(&'a [u8]),
    /// An extended-protocol batch, rewritten for the connection it runs on (prepared statements).
    Batch(Vec<Frame>),
}

/// What a statement does to session state once the server has accepted it.
#[derive(Debug, Default)]
pub struct Effects {
    /// Session parameter changes (SET, RESET, ...), in order.
    pub changes: Vec<Command>,
    /// The text changes the catalog: the target's snapshot is re-read when the transaction ends.
    pub ddl: bool,
    /// The text drops every prepared statement of the server connection (`DEALLOCATE ALL`, `DISCARD ALL`).
    pub forgets_prepared: bool,
    /// The text leaves state on the connection that only it has: the session keeps the connection.
    pub pins: bool,
    /// The text controls transactions itself or cannot run in a transaction block (see `Analysis::own_transaction`).
    pub own_transaction: bool,
}

impl Effects {
    /// The effects of an analysed text (none in single mode, where texts are not analysed).
    pub fn of(analysis: Option<&Analysis>) -> Effects {
        let mut e = Effects::default();
        if let Some(a) = analysis {
            e.add(a);
        }
        e
    }

    /// Adds the effects of one more statement that runs in the same exchange.
    pub fn add(&mut self, a: &Analysis) {
        self.changes.extend(a.session_changes.iter().cloned());
        self.ddl |= a.ddl;
        self.forgets_prepared |= a.session_changes.iter().any(Command::forgets_prepared);
        self.pins |= a.pins;
        self.own_transaction |= a.own_transaction;
    }
}

/// The client's unnamed statement: cheaper than a `Prepared` (it is parsed anew for nearly every extended query).
#[derive(Debug, Clone)]
pub struct Unnamed {
    /// The target its SQL routes to.
    pub target: TargetId,
    /// Whether its SQL chose that target.
    pub explicit: bool,
    /// What its SQL does, followed each time it is executed.
    pub analysis: Option<crate::router::SharedAnalysis>,
    /// The routing it was routed under (`Session::routing_epoch`).
    pub epoch: u64,
}

/// Where the client's transaction stands. This is the state machine of the module doc.
pub enum Tx {
    /// No transaction; no server connection held.
    Idle,
    /// BEGIN was answered by pgsplit; no statement has chosen a target yet. Holds the BEGIN text to replay.
    Deferred {
        /// The client's BEGIN as a Query message, replayed on the target when the transaction binds.
        begin: Bytes,
        /// Statements that need no target (SAVEPOINT, SET LOCAL, ...) answered meanwhile, replayed after BEGIN.
        held: Vec<Bytes>,
    },
    /// A transaction (or an unsynced extended batch) is open on a server connection of `target`.
    Bound {
        /// The target the transaction runs on.
        target: TargetId,
        /// The server connection, held until ReadyForQuery idle.
        conn: PooledConn,
    },
    /// pgsplit refused a statement inside the transaction: everything but COMMIT/ROLLBACK gets 25P02. A bound
    /// transaction is made to fail on its server before the next message (`fail_on_server`), so PostgreSQL itself
    /// answers what follows, in either protocol.
    Failed {
        /// The target and connection, if the transaction had bound.
        bound: Option<(TargetId, PooledConn)>,
    },
}

impl Tx {
    /// The status byte the client sees in ReadyForQuery.
    pub fn status(&self) -> u8 {
        match self {
            Tx::Idle => STATUS_IDLE,
            Tx::Deferred { .. } => STATUS_IN_TX,
            Tx::Bound { conn, .. } => conn.status,
            Tx::Failed { .. } => STATUS_FAILED,
        }
    }
}

/// A connected, authenticated client.
pub struct Session {
    /// The client's socket and buffers.
    pub client: Client,
    /// Configuration, routing, pools.
    pub app: Arc<App>,
    /// The role the client authenticated as.
    pub user: String,
    /// Transaction state.
    pub tx: Tx,
    /// `SET pgsplit.target`: the session's default for statements that name no routed schema.
    pub target_hint: Option<TargetId>,
    /// The session's search_path (case-folded schema names), used to resolve unqualified names; derived from
    /// `params` whenever they change.
    pub search_path: Vec<String>,
    /// The last routing decision, reused for the next statement of the same shape (see `router::DecisionMemo`).
    pub route_memo: crate::router::DecisionMemo,
    /// The session's last route cache lookup, for repeated texts.
    pub lookup_memo: crate::router::cache::LookupMemo,
    /// The buffer extended batches are rewritten into, kept between batches while small (`give_back_rewrite`).
    pub rewrite_buf: bytes::BytesMut,
    /// Session parameters (startup, SET, RESET) applied to every server connection the client uses.
    pub params: Params,
    /// A target on which DDL ran inside the open transaction: its catalog is re-read when the transaction ends.
    pub catalog_stale: Option<TargetId>,
    /// The cancel key pgsplit gave the client, and where its statement in flight runs.
    pub key: ClientKey,
    /// Connected with a target's name as the database: every statement goes to that target, unsplit.
    pub passthrough: Option<TargetId>,
    /// Extended-protocol messages received since the last Sync.
    pub batch: Vec<Frame>,
    /// Bytes held in `batch` (counted from its first message; see `extended::MAX_BATCH_BYTES`).
    pub batch_bytes: usize,
    /// What the statements parsed in the current batch do to session state.
    pub batch_effects: Effects,
    /// An error was sent for a flushed batch: messages are skipped until the client's Sync.
    pub skip_until_sync: bool,
    /// The client's named prepared statements, by the client's name.
    pub statements: HashMap<String, Arc<Prepared>>,
    /// The unnamed statement (its target, whether its SQL chose it, what it does), for a Bind that re-executes it.
    pub unnamed: Option<Unnamed>,
    /// The client's last unnamed Parse, re-sent before a later batch's Bind of the unnamed statement.
    pub unnamed_parse: Option<Bytes>,
    /// Server connections pinned to this session (named prepared statements live on them), by target.
    pub pins: HashMap<TargetId, Option<PooledConn>>,
    /// The bound transaction is tentative: a deferred transaction bound to its default target because a plain read
    /// (`SELECT 1`, `SELECT now()`) needed an answer before any statement chose a target. Until a statement makes
    /// the binding firm, a statement for another target moves the transaction there: it is rolled back where it
    /// is and these Query messages (BEGIN and the savepoints and `SET LOCAL`s since) are replayed on the other.
    pub tentative: Option<Vec<Bytes>>,
    /// The routing mode of the session's current transaction (single: everything to the single target). Taken from
    /// the App whenever no transaction is open, so a mode switch applies from each session's next transaction.
    pub single: bool,
    /// An admin console session (database `pgsplit`).
    pub admin: bool,
}

impl Session {
    /// A session in the idle state.
    pub fn new(client: Client, app: Arc<App>, user: String, startup: &BTreeMap<String, String>, key: ClientKey) -> Session {
        let params = Params::from_startup(startup);
        let app_single = app.is_single();
        Session {
            client,
            app,
            user,
            tx: Tx::Idle,
            target_hint: None,
            search_path: params.search_path(),
            route_memo: Default::default(),
            lookup_memo: Default::default(),
            rewrite_buf: Default::default(),
            params,
            catalog_stale: None,
            key,
            passthrough: None,
            batch: Vec::new(),
            batch_effects: Effects::default(),
            skip_until_sync: false,
            batch_bytes: 0,
            statements: HashMap::new(),
            unnamed: None,
            unnamed_parse: None,
            pins: HashMap::new(),
            tentative: None,
            single: app_single,
            admin: false,
        }
    }

    /// Serves the client's messages until it terminates.
    pub async fn run(&mut self) -> Result<(), SessionError> {
        if self.admin {
            return self.run_admin().await;
        }
        loop {
            let next = if self.pins.values().any(Option::is_some) {
                // At rest, a pinned session ends at shutdown as any other; in a transaction it goes on.
                let drain = self
                    .at_rest()
                    .then(|| (super::drain::Drained { app: &self.app, waker: &self.key.slot.drain }, self.user.as_str()));
                super::notify::next_frame_or_notification(&mut self.client, &mut self.pins, drain).await?
            } else {
                self.next_frame_or_drain().await?
            };
            let Some(frame) = next else { return Ok(()) };
            match frame.tag {
                b'Q' => self.simple_query(frame).await?,
                // After an error before Sync, the rest of the batch is skipped, as PostgreSQL skips it.
                b'P' | b'B' | b'D' | b'E' | b'C' | b'H' if self.skip_until_sync => {}
                b'S' if self.skip_until_sync => self.sync_after_refusal().await,
                b'P' | b'B' | b'D' | b'E' | b'C' => self.hold(frame),
                b'S' => self.sync(frame).await?,
                b'H' => self.flush_batch(frame).await?,
                b'X' => return Ok(()),
                // CopyData/CopyDone/CopyFail outside COPY are ignored, as PostgreSQL does.
                b'd' | b'c' | b'f' => {}
                other => return Err(SessionError::unexpected_message(other)),
            }
            self.client.flush().await?;
        }
    }

    /// The routing the session's statements are routed under now: the mode (bit 0) and how many reloads changed
    /// the routes. A prepared statement routed under another epoch is routed again before it runs.
    pub fn routing_epoch(&self) -> u64 {
        self.app.routes_generation() << 1 | u64::from(self.single)
    }

    /// Between transactions, the session takes the routing mode in force (a switch applies from the next one).
    pub fn follow_mode(&mut self) {
        if matches!(self.tx, Tx::Idle) {
            self.single = self.app.is_single();
        }
    }

    /// A server connection for `target`: the session's pinned one if it has one, else one from the pool.
    /// The connection gets the client's session parameters first (only what differs from what it has).
    pub async fn acquire(&mut self, target: TargetId) -> Result<PooledConn, PgError> {
        let pinned = if self.pins.is_empty() { None } else { self.pins.get_mut(&target).and_then(Option::take) };
        let mut conn = match pinned {
            Some(conn) => conn,
            None => {
                let backend = self.app.backend(target);
                // A cancel while the client waits in the queue ends the wait, as it would end the statement.
                let checkout = backend.checkout_or_cancel(Some(&self.key.slot.waiting)).await;
                checkout.map_err(|e| {
                    let (code, cause) = match e {
                        CheckoutError::Unavailable { .. } => (codes::CONNECTION_FAILURE, "target_unavailable"),
                        CheckoutError::Timeout { .. } => (codes::TOO_MANY_CONNECTIONS, "checkout_timeout"),
                        CheckoutError::Canceled => (codes::QUERY_CANCELED, "canceled_in_queue"),
                    };
                    if matches!(e, CheckoutError::Canceled) {
                        return PgError::error(code, e.to_string()).because(cause);
                    }
                    tracing::warn!(target = backend.name(), error = %e, "server connection unavailable");
                    PgError::error(code, e.to_string()).because(cause)
                })?
            }
        };
        let pooler = conn.upstream_pooler;
        if let Some(sql) = self.params.diff_sql(&conn.applied, pooler) {
            conn.broken = true;
            let applied = conn.simple(&sql).await;
            conn.broken = applied.is_err();
            if let Err(e) = applied {
                // The connection's state is no longer known: it is closed rather than reused.
                conn.broken = true;
                let name = self.app.backend(target).name().to_owned();
                self.release(target, conn);
                return Err(PgError::error(
                    codes::CONNECTION_FAILURE,
                    format!("cannot apply the session's settings on target \"{name}\": {e}"),
                ));
            }
            self.params.synced(&mut conn.applied, pooler);
        }
        Ok(conn)
    }

    /// Gives a connection back: to the session's pin slot if pinned (and healthy), else to the pool.
    pub fn release(&mut self, target: TargetId, conn: PooledConn) {
        if let Some(slot) = (!self.pins.is_empty()).then(|| self.pins.get_mut(&target)).flatten() {
            if !conn.broken {
                *slot = Some(conn);
                return;
            }
            // A broken pinned connection loses what was pinned to it; the session goes on unpinned.
            self.pins.remove(&target);
            if self.pins.is_empty() {
                self.app.pinned_sessions().fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        drop(conn);
    }

    /// Keeps the server connection of `target` for the rest of the session.
    pub fn pin(&mut self, target: TargetId) {
        if self.pins.is_empty() {
            self.app.pinned_sessions().fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if !self.pins.contains_key(&target) {
            tracing::info!(user = %self.user, target = self.app.backend(target).name(), "session pinned to its server connection");
            self.pins.insert(target, None);
        }
    }

    /// Sends `frames` (already encoded, preceded by a deferred BEGIN and what was held with it) on `conn`, relays the answer to the
    /// client, and settles the transaction state from the server's ReadyForQuery.
    pub async fn execute(
        &mut self,
        target: TargetId,
        mut conn: PooledConn,
        mut prelude: Vec<Bytes>,
        payload: Payload<'_>,
        effects: &Effects,
    ) -> Result<(), SessionError> {
        let started = std::time::Instant::now();
        let was_in_tx = !prelude.is_empty() || conn.status != STATUS_IDLE;
        self.pooler_prelude(&mut conn, &mut prelude, effects);
        self.in_flight(target, &conn).await;
        let mut result: Result<u8, RelayError> = Ok(STATUS_IN_TX);
        if !prelude.is_empty() {
            // Done before the batch is rewritten, so their replies never meet the batch's queue of expected replies.
            result = self.replay(&mut conn, &prelude).await;
        }
        let held_failed = matches!(result, Ok(STATUS_FAILED));
        if held_failed {
            // A held statement (SET LOCAL with a bad value, ROLLBACK TO an unknown savepoint) failed where the
            // transaction bound: the client's statement gets that error instead of a bare 25P02.
            let ready = !conn.wrapped;
            self.held_failed(&mut conn, ready);
        } else if result.is_ok() {
            let (raw, batch) = match payload {
                Payload::Raw(b) => (b, None),
                Payload::Batch(frames) => (&[][..], Some(self.rewrite_batch(&mut conn, frames))),
            };
            let bytes = batch.as_deref().unwrap_or(raw);
            result = relay::exchange(&mut self.client, &mut conn, bytes, Sink::Client).await;
            if let Some(batch) = batch {
                self.give_back_rewrite(batch);
            }
        }
        if conn.wrapped && result.is_ok() {
            result = self.end_wrapped(&mut conn, effects).await;
        }
        self.landed().await;
        self.app.backend(target).stats.query(started, result.is_err() || conn.outcome.error || held_failed);
        match result {
            Ok(status) if !held_failed => self.follow(target, &mut conn, effects, was_in_tx, status),
            _ => {}
        }
        match result {
            Ok(status) if status == STATUS_IDLE => {
                self.tx = Tx::Idle;
                self.tentative = None;
                self.release(target, conn);
                if let Some(stale) = self.catalog_stale.take() {
                    if let Err(e) = self.app.refresh_catalog(stale).await {
                        tracing::warn!(target = self.app.backend(stale).name(), error = %e, "catalog not refreshed after DDL");
                    }
                }
                Ok(())
            }
            Ok(_) => {
                self.tx = Tx::Bound { target, conn };
                Ok(())
            }
            Err(RelayError::Client(e)) => Err(e),
            Err(RelayError::Server(e)) => {
                conn.broken = true;
                let name = self.app.backend(target).name().to_owned();
                tracing::warn!(target = %name, error = %e, "server connection lost");
                self.release(target, conn);
                self.tx = Tx::Idle;
                self.tentative = None;
                let err = PgError::error(codes::CONNECTION_FAILURE, format!("connection to target \"{name}\" lost: {e}"));
                self.client.error_ready(&err, STATUS_IDLE);
                Ok(())
            }
        }
    }

    /// Replays a deferred BEGIN and what was held since on `conn`, in one write; their answers were given already.
    /// Returns the transaction status after them.
    pub async fn replay(&mut self, conn: &mut PooledConn, prelude: &[Bytes]) -> Result<u8, RelayError> {
        conn.discarded_error = None;
        conn.send(&prelude.concat()).await?;
        let mut status = STATUS_IN_TX;
        for _ in prelude {
            status = relay::until_ready(&mut self.client, conn, Sink::Discard).await?;
        }
        Ok(status)
    }

    /// Answers the client's request with the error of the held statement that failed on replay (the transaction is
    /// failed on its server now), and ReadyForQuery unless the request was flushed before its Sync.
    pub fn held_failed(&mut self, conn: &mut PooledConn, ready: bool) {
        match conn.discarded_error.take() {
            Some(e) => self.client.wbuf.extend_from_slice(&e),
            None => {
                PgError::error(codes::IN_FAILED_TRANSACTION, "a statement held since BEGIN failed").encode(&mut self.client.wbuf)
            }
        }
        if ready {
            crate::protocol::encode::ready_for_query(&mut self.client.wbuf, STATUS_FAILED);
        }
    }

    /// Marks the client's statement as running on `conn`, for cancel requests.
    pub async fn in_flight(&self, target: TargetId, conn: &ServerConn) {
        if let Some(key) = conn.key {
            self.set_running(Some(Running { target, key })).await;
        }
    }

    /// The exchange is over: waits for a cancel being delivered to finish, so none can reach the connection's next
    /// client.
    pub async fn landed(&self) {
        self.set_running(None).await;
    }

    /// Sets the statement in flight; waits only while a cancel is being delivered (it holds the lock meanwhile).
    async fn set_running(&self, running: Option<Running>) {
        match self.key.slot.running.try_lock() {
            Ok(mut slot) => *slot = running,
            Err(_) => *self.key.slot.running.lock().await = running,
        }
    }

    /// Follows what an exchange the server answered did to session state: parameters, and DDL that makes the
    /// target's catalog snapshot stale (re-read once the transaction ends, before the client's next statement).
    fn follow(&mut self, target: TargetId, conn: &mut PooledConn, effects: &Effects, was_in_tx: bool, status: u8) {
        if !effects.changes.is_empty() || self.params.has_pending() {
            self.params.follow(&effects.changes, was_in_tx, status, conn.outcome, &mut conn.applied);
            self.search_path = self.params.search_path();
            if conn.upstream_pooler {
                // Untracked parameters were reset on the server before commit; the connection keeps none.
                conn.applied.retain(|name, _| super::params::tracked_by_pooler(name));
            }
        }
        if effects.ddl {
            self.catalog_stale = Some(target);
        }
        if effects.forgets_prepared {
            conn.prepared.clear();
            self.statements.clear();
        }
        // Even a failed exchange may have left what pins (a session advisory lock survives a rollback).
        if effects.pins {
            self.pin(target);
        }
    }

    /// Moves a tentatively bound transaction off its server (see `tentative`): it is rolled back there and becomes
    /// deferred again, with what is to be replayed where it binds next.
    pub async fn unbind_tentative(&mut self) {
        let Some(mut replay) = self.tentative.take().filter(|r| !r.is_empty()) else { return };
        let Tx::Bound { target, mut conn } = std::mem::replace(&mut self.tx, Tx::Idle) else { return };
        conn.broken = true;
        let rolled_back = conn.simple("ROLLBACK").await;
        conn.broken = rolled_back.is_err() || conn.status != STATUS_IDLE;
        self.release(target, conn);
        let held = replay.split_off(1);
        let begin = replay.pop().unwrap_or_default();
        self.tx = Tx::Deferred { begin, held };
    }

    /// Refuses a statement: inside a transaction the transaction fails as PostgreSQL would fail it.
    pub fn refuse(&mut self, err: PgError) {
        self.fail_transaction(&err);
        let status = self.tx.status();
        self.client.error_ready(&err, status);
    }

    /// A refused statement fails the open transaction, if any.
    fn fail_transaction(&mut self, err: &PgError) {
        tracing::info!(user = %self.user, reason = err.cause, sqlstate = err.code, error = %err, "statement refused");
        self.app.metrics().refused(if err.cause.is_empty() { "other" } else { err.cause }, err.code);
        self.tentative = None;
        self.tx = match std::mem::replace(&mut self.tx, Tx::Idle) {
            Tx::Idle => Tx::Idle,
            Tx::Deferred { .. } => Tx::Failed { bound: None },
            Tx::Bound { target, conn } => Tx::Failed { bound: Some((target, conn)) },
            Tx::Failed { bound } => Tx::Failed { bound },
        };
    }

    /// Refuses part of an extended batch the client flushed before its Sync: only the error now; the rest of the
    /// batch is skipped and its Sync answered with ReadyForQuery, as PostgreSQL does.
    pub fn refuse_before_sync(&mut self, err: PgError) {
        self.fail_transaction(&err);
        err.encode(&mut self.client.wbuf);
        self.skip_until_sync = true;
    }

    /// The Sync ending a batch that was refused after a flushed part: a server connection holding that part fails
    /// too, and its answer decides the status, as PostgreSQL's would: an explicit transaction stays failed (25P02
    /// until ROLLBACK), an implicit one is over, rolled back.
    pub(super) async fn sync_after_refusal(&mut self) {
        self.skip_until_sync = false;
        if matches!(self.tx, Tx::Failed { bound: Some(_) }) {
            if let Err(e) = self.fail_on_server().await {
                e.encode(&mut self.client.wbuf);
            }
        }
        crate::protocol::encode::ready_for_query(&mut self.client.wbuf, self.tx.status());
    }

    /// Makes a transaction pgsplit failed fail on a server too (with a statement that raises), so that PostgreSQL
    /// answers everything after it exactly as it would (25P02, COMMIT answered by ROLLBACK), including extended-
    /// protocol batches. A transaction that never bound gets a connection of the default target for this.
    pub async fn fail_on_server(&mut self) -> Result<(), PgError> {
        let (target, mut conn, begin) = match std::mem::replace(&mut self.tx, Tx::Idle) {
            Tx::Failed { bound: Some((target, conn)) } => (target, conn, ""),
            Tx::Failed { bound: None } => {
                let target = if self.single { self.app.single_target() } else { self.app.table().default_target };
                match self.acquire(target).await {
                    Ok(conn) => (target, conn, "BEGIN;"),
                    Err(e) => {
                        self.tx = Tx::Failed { bound: None };
                        return Err(e);
                    }
                }
            }
            other => {
                self.tx = other;
                return Ok(());
            }
        };
        let sql = format!(
            "{begin}DO $pgsplit$ BEGIN RAISE EXCEPTION USING ERRCODE = '0A000', MESSAGE = 'transaction failed by pgsplit'; END $pgsplit$"
        );
        conn.broken = true;
        let failed = conn.simple(&sql).await;
        if matches!(failed, Err(BackendError::Server { .. })) {
            // pgsplit's own transaction around an autocommit request (behind a transaction pooler) is not the
            // client's: it ends here, so that the server's answer below is about the client's transaction.
            if conn.wrapped && conn.status == STATUS_FAILED && conn.simple("ROLLBACK").await.is_ok() {
                conn.wrapped = false;
            }
            match conn.status {
                STATUS_FAILED => {
                    conn.broken = false;
                    self.tx = Tx::Bound { target, conn };
                    return Ok(());
                }
                // No BEGIN: the implicit transaction of a flushed extended batch. The error ended it, rolled back,
                // as PostgreSQL ends one; the connection is idle and clean again.
                STATUS_IDLE if begin.is_empty() => {
                    conn.broken = false;
                    conn.expect.clear();
                    self.release(target, conn);
                    return Ok(());
                }
                _ => {}
            }
        }
        let name = self.app.backend(target).name().to_owned();
        self.release(target, conn);
        self.tx = Tx::Failed { bound: None };
        Err(PgError::error(codes::CONNECTION_FAILURE, format!("connection to target \"{name}\" lost")))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.app.cancels().unregister(self.key.pid);
        if !self.pins.is_empty() {
            self.app.pinned_sessions().fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
        // What pinned a connection (LISTEN, temporary tables, advisory locks, ...) must not reach another client:
        // the connection is closed rather than returned.
        for conn in self.pins.values_mut().flatten() {
            conn.broken = true;
        }
    }
}
