//! The session's driver: the message loop, and carrying out what the machine (`machine`) decides — checking
//! connections out and back, running requests on them, following what they did to the session.

use crate::worker::Recycled;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;

use crate::app::App;
use crate::backend::relay::{self, RelayError, Sink};
use crate::backend::{Backend, CheckoutError, PooledConn, ServerConn};
use crate::cancel::{ClientKey, Running};
use crate::protocol::encode::PgError;
use crate::protocol::{Frame, STATUS_FAILED, STATUS_IDLE};
use crate::router::{SharedAnalysis, TargetId};

pub use super::effects::Effects;
use super::machine::copy::{self, OutsideCopy};
use super::machine::{Cancel, FailOn, Failing, Machine, Release, Reply, Request, Start};
use super::params::Params;
use super::{errors, route, Session, SessionError};
use crate::client::Client;

/// What is sent to the server for one client request.
pub enum Payload<'a> {
    /// Bytes to send as they are (a Query message).
    Raw(&'a [u8]),
    /// An extended-protocol batch, rewritten for the connection it runs on (prepared statements).
    Batch(Vec<Frame>),
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

impl super::machine::Conn for PooledConn {
    fn status(&self) -> u8 {
        ServerConn::status(self)
    }

    fn reusable(&self) -> bool {
        ServerConn::reusable(self)
    }
}

impl Session {
    /// A session in the idle state.
    pub fn new(client: Client, app: Arc<App>, user: String, startup: &BTreeMap<String, String>, key: ClientKey) -> Session {
        let params = Params::from_startup(startup);
        let single = app.is_single();
        let prepare_unnamed = app.config().prepare_unnamed;
        Session {
            client,
            app,
            user,
            machine: Machine::new(single),
            target_hint: None,
            search_path: params.search_path(),
            search_path_generation: 0,
            encoding: params.client_encoding(),
            route_memo: Default::default(),
            lookup_memo: Default::default(),
            rewrite_buf: Default::default(),
            params,
            catalog_stale: None,
            logins: Vec::new(),
            own_secret: None,
            xact_began: None,
            temp_due: None,
            changed_rows: Vec::new(),
            key,
            passthrough: None,
            database_pool: None,
            batch: Vec::new(),
            batch_effects: Effects::default(),
            batch_bytes: 0,
            statements: HashMap::new(),
            unnamed: None,
            unnamed_parse: None,
            admin: false,
            session_pooled: false,
            prepare_unnamed,
            unnamed_prepared: None,
            id: super::SESSION_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
            cache_holds: Vec::new(),
            batch_cache: Default::default(),
        }
    }

    /// After the client's parameters changed: what the session derives from them.
    pub(super) fn params_changed(&mut self) {
        let search_path = self.params.search_path();
        if search_path != self.search_path {
            self.search_path = search_path;
            self.search_path_generation += 1;
        }
        self.encoding = self.params.client_encoding();
    }

    /// Connected with a target's name as the database, or through `any_database` (`pool`), at startup; or to the
    /// admin console.
    pub(super) fn connected_to(&mut self, passthrough: Option<TargetId>, pool: Option<Arc<Backend>>, admin: bool) {
        (self.passthrough, self.database_pool, self.admin) = (passthrough, pool, admin);
    }

    /// The database the client connected to, for logs.
    pub(super) fn database(&self) -> &str {
        self.passthrough.map_or(self.app.database(), |t| self.backend(t).name())
    }

    /// The role the client authenticated as.
    pub(super) fn user(&self) -> &str {
        &self.user
    }

    /// Whether the client connected over TLS.
    pub(super) fn tls(&self) -> bool {
        self.client.stream.is_tls()
    }

    /// Tells the client why pgsplit ends its session.
    pub(super) async fn fatal(&mut self, e: &PgError) {
        self.client.fatal(e).await;
    }

    /// Serves the client's messages until it terminates.
    pub async fn run(&mut self) -> Result<(), SessionError> {
        if self.admin {
            return Box::pin(self.run_admin()).await;
        }
        loop {
            let at_rest = self.at_rest();
            let next = match self.app.idle_limits().of(at_rest) {
                None if self.machine.pinned_idle().next().is_none() => self.next_frame_or_drain().await?,
                None => {
                    // At rest, a pinned session ends at shutdown as any other; in a transaction it goes on.
                    let drain = at_rest
                        .then(|| (super::drain::Drained { app: &self.app, waker: &self.key.slot.drain }, self.user.as_str()));
                    super::notify::next_frame_or_notification(&mut self.client, &mut self.machine, drain).await?
                }
                // Boxed: the timer's future takes memory, and its wrapper instructions, only where a limit is set.
                Some(limit) => Box::pin(self.next_message_within(limit, at_rest)).await?,
            };
            let Some(frame) = next else { return Ok(()) };
            // Writes to cached tables whose transaction ended on a path that ran no request (a batch skipped until
            // its Sync) let their tables go here.
            self.end_cache_holds();
            let skipping = self.machine.skipping();
            match frame.tag {
                // Each request's future in a recycled block: the session's own future stays small while it is idle.
                b'Q' => Recycled::new(|| self.simple_query(frame)).await?,
                b'F' => Recycled::new(|| self.function_call(frame)).await?,
                // After an error before Sync, the rest of the batch is skipped, as PostgreSQL skips it.
                b'P' | b'B' | b'D' | b'E' | b'C' | b'H' if skipping => {}
                b'S' if skipping => Box::pin(self.sync_after_refusal()).await,
                b'P' | b'B' | b'D' | b'E' | b'C' => self.hold(frame),
                b'S' => Recycled::new(|| self.sync(frame)).await?,
                b'H' => Recycled::new(|| self.flush_batch(frame)).await?,
                b'X' => return Ok(()),
                // CopyData/CopyDone/CopyFail outside COPY are ignored, as PostgreSQL does.
                tag if copy::outside_copy(tag) == OutsideCopy::Ignore => {}
                other => return Err(SessionError::unexpected_message(other)),
            }
            self.client.flush().await?;
        }
    }

    /// The routing the session's statements are routed under now: the mode (bit 0) and how many reloads changed
    /// the routes. A prepared statement routed under another epoch is routed again before it runs.
    pub fn routing_epoch(&self) -> u64 {
        self.app.routes_generation() << 1 | u64::from(self.machine.single())
    }

    /// Between transactions, the session takes the routing mode in force (a switch applies from the next one).
    pub fn follow_mode(&mut self) {
        self.machine.follow_mode(self.app.is_single());
    }

    /// What routing weighs besides the statement, now.
    pub(super) fn route_context(&self) -> route::Context<'_> {
        route::Context {
            app: &self.app,
            passthrough: self.passthrough,
            single: self.machine.single(),
            search_path: &self.search_path,
            search_path_generation: self.search_path_generation,
            target_hint: self.target_hint,
            binding: self.machine.binding(),
        }
    }

    /// Routes a statement (see `route::route`).
    pub(super) fn route(&mut self, analysis: Option<&SharedAnalysis>) -> Result<route::Routed, PgError> {
        // Not `route_context()`: the memo is borrowed mutably beside it.
        let ctx = route::Context {
            app: &self.app,
            passthrough: self.passthrough,
            single: self.machine.single(),
            search_path: &self.search_path,
            search_path_generation: self.search_path_generation,
            target_hint: self.target_hint,
            binding: self.machine.binding(),
        };
        route::route(analysis, &ctx, &mut self.route_memo)
    }

    /// A server connection for `target`: the session's pinned one if it has one, else one from the pool.
    /// The connection gets the client's session parameters first (only what differs from what it has).
    pub async fn acquire(&mut self, target: TargetId) -> Result<PooledConn, PgError> {
        let pinned = if self.machine.pinned() { self.machine.take_pinned(target) } else { None };
        let mut conn = match pinned {
            Some(conn) => conn,
            None => {
                // A cancel while the client waits in the queue ends the wait, as it would end the statement.
                // `Session::backend`, borrowing only the fields it reads (the client is read while waiting).
                let own_pool = self.database_pool.is_some() && self.passthrough == Some(target);
                let login = if own_pool { 0 } else { self.login_on(target).await? };
                let backend = match &self.database_pool {
                    Some(pool) if own_pool => &**pool,
                    _ => self.app.backend(target),
                };
                // A client that goes away while it waits ends the wait too (the session then ends). The checkout is
                // polled once first: one that needs no wait (nearly all) costs no race with the client.
                let mut checkout = std::pin::pin!(backend.checkout_or_cancel(login, Some(&self.key.slot.waiting)));
                let got = match crate::backend::poll_once(checkout.as_mut()).await {
                    std::task::Poll::Ready(got) => got,
                    std::task::Poll::Pending => tokio::select! {
                        biased;
                        got = &mut checkout => got,
                        _ = self.client.gone() => Err(CheckoutError::Canceled),
                    },
                };
                got.map_err(|e| {
                    if !matches!(e, CheckoutError::Canceled) {
                        tracing::warn!(target = backend.name(), error = %e, "server connection unavailable");
                    }
                    errors::checkout(&e)
                })?
            }
        };
        if let Some(notices) = conn.take_login_notices() {
            self.client.wbuf.extend_from_slice(&notices);
        }
        let pooler = conn.upstream_pooler();
        if let Some(sql) = self.params.diff_sql(conn.applied(), pooler) {
            if let Err(e) = conn.simple(&sql).await {
                // The connection's state is no longer known: it is closed rather than reused.
                conn.retire();
                let name = self.backend(target).name().to_owned();
                self.release(target, conn);
                return Err(errors::settings_not_applied(&name, &e));
            }
            self.params.synced(conn.applied_mut(), pooler);
        }
        Ok(conn)
    }

    /// Before a request: another session's sequence state (`currval`, `lastval`) must never reach this one. When the
    /// connection may hold some, it is discarded ahead of the request (in the same flight) if the request may read
    /// sequence state, calls nextval itself (its currval is likely read later), or may make sequence state inside
    /// a transaction (a later statement of the transaction may read it). An autocommit write (a column default's
    /// nextval) leaves the state mixed, discarded before it is read: the cost of a DISCARD is paid by readers only.
    pub(super) fn sequences_ahead(&self, conn: &mut ServerConn, effects: &Effects, in_tx: bool) {
        let used = effects.observes_sequences || effects.calls_nextval || (effects.sequences && in_tx);
        if used && !conn.upstream_pooler() && conn.sequences_foreign_to(self.id) {
            conn.discard_sequences_ahead();
        }
    }

    /// Gives a connection back: to the session's pin slot if pinned (and healthy), else to the pool.
    pub fn release(&mut self, target: TargetId, conn: PooledConn) {
        if self.session_pooled && !self.machine.pinned_to(target) && conn.reusable() {
            self.pin(target);
        }
        match self.machine.release(target, conn) {
            Release::Pool(conn) => drop(conn),
            Release::Pinned => {}
            Release::Unpinned { conn, last } => {
                drop(conn);
                if last {
                    self.app.pinned_sessions().fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    }

    /// Keeps the server connection of `target` for the rest of the session.
    pub fn pin(&mut self, target: TargetId) {
        let (new, first) = self.machine.pin(target);
        if first {
            self.app.pinned_sessions().fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if new && !self.session_pooled {
            tracing::info!(user = %self.user, target = self.backend(target).name(), "session pinned to its server connection");
        }
    }

    /// Runs a request on `target` as the machine says: on the bound connection, or on one checked out (replaying a
    /// deferred BEGIN), moving a tentative transaction first if the request chose another target.
    pub(super) async fn run_on(
        &mut self,
        target: TargetId,
        request: &Request,
        payload: Payload<'_>,
        effects: &Effects,
    ) -> Result<(), SessionError> {
        let (target, conn, prelude) = match self.machine.start(target, request) {
            Start::Use(t, conn) => (t, conn, Vec::new()),
            Start::Checkout { target, prelude, moved_from } => {
                if let Some((from, conn)) = moved_from {
                    self.roll_back_tentative(from, conn).await;
                }
                match self.acquire(target).await {
                    Ok(conn) => {
                        self.machine.checked_out();
                        (target, conn, prelude)
                    }
                    Err(e) => {
                        let deferred = !prelude.is_empty();
                        let status = self.machine.checkout_failed();
                        if deferred {
                            self.refused(&e);
                        }
                        self.client.error_ready(&e, status);
                        return Ok(());
                    }
                }
            }
            Start::Answer(reply) => {
                self.reply(reply);
                return Ok(());
            }
        };
        self.execute(target, conn, prelude, payload, effects).await
    }

    /// Sends `payload` (preceded by a deferred BEGIN and what was held with it) on `conn`, relays the answer to the
    /// client, and settles the transaction from the server's ReadyForQuery. One function on purpose: every await
    /// level is polled again at each wake-up of a request.
    async fn execute(
        &mut self,
        target: TargetId,
        mut conn: PooledConn,
        mut prelude: Vec<Bytes>,
        payload: Payload<'_>,
        effects: &Effects,
    ) -> Result<(), SessionError> {
        if let Some(db) = &effects.frees_database {
            self.app.free_database(&self.backend(target).spec, db).await;
        }
        let started = conn.take_lent_at().unwrap_or_else(std::time::Instant::now);
        let read_before = conn.read_total();
        let request_bytes = super::counts::request_bytes(&payload);
        let was_in_tx = !prelude.is_empty() || conn.status() != STATUS_IDLE;
        self.pooler_prelude(&mut conn, &mut prelude, effects);
        self.sequences_ahead(&mut conn, effects, was_in_tx);
        conn.set_holds_session(was_in_tx || self.machine.pinned_to(target));
        if let Some(wait) = self.in_flight(&conn) {
            self.set_running(wait).await;
        }
        // Done before the batch is rewritten, so their replies never meet the batch's queue of expected replies.
        let mut result = match prelude.is_empty() {
            true => Ok(STATUS_IDLE),
            false => relay::replay(&mut self.client, &mut conn, &prelude).await,
        };
        let held_failed = matches!(result, Ok(STATUS_FAILED));
        if held_failed {
            // A held statement (SET LOCAL with a bad value, ROLLBACK TO an unknown savepoint) failed where the
            // transaction bound: the client's statement gets that error instead of a bare 25P02.
            let ready = !conn.wrapped();
            self.held_failed(&mut conn, ready);
        } else if result.is_ok() {
            result = match payload {
                Payload::Raw(bytes) => relay::exchange(&mut self.client, &mut conn, bytes, Sink::Client).await,
                Payload::Batch(frames) => self.send_batch(target, &mut conn, frames).await,
            };
        }
        if conn.wrapped() && result.is_ok() {
            // pgsplit's own transaction around the request ends and gives the ReadyForQuery.
            result = self.end_wrapped(&mut conn, effects).await;
        }
        if let Some(wait) = self.landed() {
            self.set_running(wait).await;
        }
        let ended = self.backend(target).stats.query(started, result.is_err() || conn.outcome().error || held_failed);
        self.count_traffic(target, request_bytes, conn.read_total().saturating_sub(read_before), &result, started, ended);
        conn.going_back_at(Some(ended));
        let Some(mut conn) = self.settle(target, conn, result, held_failed, effects, was_in_tx)? else { return Ok(()) };
        conn.going_back_at(None);
        self.temp_check(target, &mut conn).await;
        // DDL of the transaction that just ended: the target's catalog is re-read before the client's next statement
        // (which may name what the DDL made), on this very connection (no wait for another: a small or pinned pool
        // stalled every DDL for the checkout timeout), unless a read that began after the DDL has landed already.
        let stale = self.catalog_stale.take().filter(|&(t, generation)| self.backend(t).catalog_loaded() < generation);
        if let Some((stale, generation)) = stale {
            let refreshed = match stale == target {
                true => self.app.refresh_catalog_on(stale, &mut conn, generation).await,
                false => self.app.refresh_catalog(stale).await,
            };
            if let Err(e) = refreshed {
                tracing::warn!(target = self.backend(stale).name(), error = %e, "catalog not refreshed after DDL");
            }
        }
        self.release(target, conn);
        Ok(())
    }

    /// Settles the transaction after an exchange: follows what it did to the session, and gives the connection
    /// to the machine, which returns it when the transaction ended (the caller releases it then).
    #[inline]
    fn settle(
        &mut self,
        target: TargetId,
        mut conn: PooledConn,
        result: Result<u8, RelayError>,
        held_failed: bool,
        effects: &Effects,
        was_in_tx: bool,
    ) -> Result<Option<PooledConn>, SessionError> {
        match result {
            Ok(status) if !held_failed => self.follow(target, &mut conn, effects, was_in_tx, status),
            Ok(_) => {}
            Err(RelayError::Client(e)) => return Err(self.client_left(target, conn, e)),
            Err(RelayError::Server(e)) if conn.holds_session() => return Err(self.session_lost(target, conn, &e)),
            Err(RelayError::Server(e)) => {
                self.server_lost(target, conn, &e);
                let err = errors::connection_lost(self.backend(target).name(), Some(&e));
                self.client.error_ready(&err, STATUS_IDLE);
                return Ok(None);
            }
            Err(RelayError::Ended) => return Err(self.server_ended(target, conn)),
        }
        Ok(self.machine.ready(conn))
    }

    /// Replays a deferred BEGIN and what was held since on `conn`, in one write; their answers were given already.
    /// Returns the transaction status after them.
    pub async fn replay(&mut self, conn: &mut PooledConn, prelude: &[Bytes]) -> Result<u8, RelayError> {
        relay::replay(&mut self.client, conn, prelude).await
    }

    /// Answers the client's request with the error of the held statement that failed on replay (the transaction is
    /// failed on its server now), and ReadyForQuery unless the request was flushed before its Sync.
    pub fn held_failed(&mut self, conn: &mut PooledConn, ready: bool) {
        match conn.take_discarded_error() {
            Some(e) => self.client.wbuf.extend_from_slice(&e),
            None => errors::held_statement_failed().encode(&mut self.client.wbuf),
        }
        if ready {
            crate::protocol::encode::ready_for_query(&mut self.client.wbuf, STATUS_FAILED);
        }
    }

    /// Publishes what a cancel does while the request runs on `conn` (the machine's `cancel`: the CancelRequest goes
    /// to its server, with its key).
    /// Done at once (one uncontended lock) unless a cancel is being delivered: then it returns what the caller must
    /// wait to set (`set_running`). No future in the common case.
    #[inline]
    #[must_use = "a statement returned is not published until set_running sets it"]
    pub fn in_flight(&self, conn: &ServerConn) -> Option<Option<Running>> {
        match (self.machine.cancel(), conn.key()) {
            (Cancel::Server(target), Some(key)) => self.try_set_running(Some(Running { target, key })),
            _ => None,
        }
    }

    /// The exchange is over: no statement runs. As `in_flight`: the caller waits (`set_running`) for a cancel being
    /// delivered to finish, so none can reach the connection's next client.
    #[inline]
    #[must_use = "a statement returned is not cleared until set_running sets it"]
    pub fn landed(&self) -> Option<Option<Running>> {
        self.try_set_running(None)
    }

    /// Sets the statement in flight unless a cancel is being delivered; else returns it, for `set_running`.
    #[inline]
    fn try_set_running(&self, running: Option<Running>) -> Option<Option<Running>> {
        (!self.key.slot.running.try_set(running)).then_some(running)
    }

    /// Sets the statement in flight once no cancel is being delivered.
    pub async fn set_running(&self, running: Option<Running>) {
        self.key.slot.running.set(running).await;
    }

    /// Follows what an exchange the server answered did to session state: parameters, and DDL that makes the
    /// target's catalog snapshot stale (re-read once the transaction ends, before the client's next statement).
    fn follow(&mut self, target: TargetId, conn: &mut PooledConn, effects: &Effects, was_in_tx: bool, status: u8) {
        if !effects.changes.is_empty() || self.params.has_pending() {
            let outcome = conn.outcome();
            self.params.follow(&effects.changes, was_in_tx, status, outcome, conn.applied_mut());
            self.params_changed();
            if conn.upstream_pooler() {
                // Untracked parameters were reset on the server before commit; the connection keeps none.
                std::sync::Arc::make_mut(conn.applied_mut()).retain(|name, _| super::params::tracked_by_pooler(name));
            }
        }
        if effects.ddl || conn.outcome().stale_statement {
            let generation = self.backend(target).catalog_changed();
            // A database reached through `any_database` is no target's: no catalog of pgsplit's describes it.
            if effects.ddl && self.database_pool.is_none() {
                self.catalog_stale = Some((target, generation));
            }
        }
        if effects.sequences {
            conn.sequences_touched_by(self.id);
        }
        if effects.forgets_prepared {
            conn.forget_prepared();
            self.statements.clear();
        }
        // Even a failed exchange may have left what pins (a session advisory lock survives a rollback). An
        // unqualified CREATE with pg_temp in the search_path may have made a temporary object (pinned even when
        // pg_temp is not the schema PostgreSQL chose: harmless over-pinning of a rare setting).
        let temp_created =
            effects.creates_unqualified && self.search_path.iter().any(|s| crate::router::analyze::is_temp_schema(s));
        if effects.pins || temp_created {
            self.pin(target);
        }
        self.may_have_made_temp(target, conn, effects);
    }

    /// Rolls back a tentatively bound transaction that moves to another target (see `machine`), and returns its
    /// connection.
    pub(super) async fn roll_back_tentative(&mut self, target: TargetId, mut conn: PooledConn) {
        if conn.simple("ROLLBACK").await.is_err() || conn.status() != STATUS_IDLE {
            conn.retire();
        }
        self.release(target, conn);
    }

    /// Sends a reply the machine gave for a request answered without a server.
    pub(super) fn reply(&mut self, reply: Reply) {
        match reply {
            Reply::Complete { tag, notice, status } => {
                if notice {
                    errors::already_in_transaction().encode(&mut self.client.wbuf);
                }
                self.client.complete_ready(tag, status);
            }
            Reply::Error { error, status } => self.client.error_ready(&error, status),
        }
    }

    /// Refuses a statement: inside a transaction the transaction fails as PostgreSQL would fail it.
    pub fn refuse(&mut self, err: PgError) {
        self.refused(&err);
        let status = self.machine.refuse();
        self.client.error_ready(&err, status);
    }

    /// Logs and counts a refusal.
    fn refused(&self, err: &PgError) {
        tracing::info!(user = %self.user, reason = err.cause, sqlstate = err.code, error = %err, "statement refused");
        self.app.metrics().refused(if err.cause.is_empty() { "other" } else { err.cause }, err.code);
    }

    /// Refuses part of an extended batch the client flushed before its Sync: only the error now; the rest of the
    /// batch is skipped and its Sync answered with ReadyForQuery, as PostgreSQL does.
    pub fn refuse_before_sync(&mut self, err: PgError) {
        self.refused(&err);
        self.machine.refuse_before_sync();
        err.encode(&mut self.client.wbuf);
    }

    /// The Sync ending a batch that was refused after a flushed part: a server connection holding that part fails
    /// too, and its answer decides the status, as PostgreSQL's would: an explicit transaction stays failed (25P02
    /// until ROLLBACK), an implicit one is over, rolled back.
    pub(super) async fn sync_after_refusal(&mut self) {
        if self.machine.sync_skipped() {
            if let Err(e) = self.fail_on_server().await {
                e.encode(&mut self.client.wbuf);
            }
        }
        crate::protocol::encode::ready_for_query(&mut self.client.wbuf, self.machine.status());
    }

    /// Makes a transaction pgsplit failed fail on a server too (with a statement that raises), so that PostgreSQL
    /// answers everything after it exactly as it would (25P02, COMMIT answered by ROLLBACK), including extended-
    /// protocol batches. A transaction that never bound gets a connection of the fallback target for this.
    pub async fn fail_on_server(&mut self) -> Result<(), PgError> {
        let fallback = route::fallback(&self.route_context());
        let (target, mut conn, begin) = match self.machine.take_failed(fallback) {
            None => return Ok(()),
            Some(FailOn::Bound(target, conn)) => (target, conn, ""),
            Some(FailOn::Unbound) => match self.acquire(fallback).await {
                Ok(conn) => (fallback, conn, "BEGIN;"),
                Err(e) => {
                    self.machine.failed_on_server(Failing::Lost);
                    return Err(e);
                }
            },
        };
        let failing = match super::pooler::raise_in_transaction(&mut conn, begin).await {
            Some(status) if status == STATUS_FAILED => Failing::Failed(target, conn),
            // No BEGIN: the implicit transaction of a flushed extended batch. The error ended it, rolled back, as
            // PostgreSQL ends one; the connection is idle and clean again.
            Some(status) if status == STATUS_IDLE && begin.is_empty() => Failing::Ended(conn),
            _ => {
                conn.retire();
                self.release(target, conn);
                self.machine.failed_on_server(Failing::Lost);
                return Err(errors::connection_lost(self.backend(target).name(), None));
            }
        };
        if let Some(conn) = self.machine.failed_on_server(failing) {
            self.release(target, conn);
        }
        Ok(())
    }
}
