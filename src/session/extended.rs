//! Extended-query batches: messages are held until Sync (or Flush), routed as one unit, rewritten for the server
//! connection they run on (see `prepared`), and sent in one write.
//!
//! Named prepared statements live in the session and are prepared lazily on each server connection; the unnamed
//! statement and portals live only within a batch's transaction.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::backend::relay::{self, RelayError};
use crate::backend::PooledConn;
use crate::protocol::encode::{self, PgError};
use crate::protocol::{decode, Frame};
use crate::router::{Analysis, Command, SharedAnalysis, TargetId};

use super::machine::{Control, Reply, Request, Start};
use super::prepared::{Prepared, Sharing};
use super::stale::Checked;
use super::state::{Effects, Payload, Unnamed};
use super::{errors, route, Session, SessionError};

/// Most bytes of extended-protocol messages pgsplit holds for one client between two Syncs (or Flushes): it routes
/// a batch as one unit, so it must hold it whole. A client past it (a pipeline of 500,000 Bind/Execute without a
/// Sync) gets 54000 for the batch, which is skipped up to its Sync as after any error.
/// It leaves room for one message of the largest size a client may send plus ordinary ones around it.
pub const MAX_BATCH_BYTES: usize = crate::protocol::framing::MAX_CLIENT_MESSAGE_LEN + (16 << 20);

impl Session {
    /// Holds an extended-protocol message until the batch's Sync or Flush, within `MAX_BATCH_BYTES`.
    pub(super) fn hold(&mut self, frame: Frame) {
        if self.batch.is_empty() {
            self.batch_bytes = 0;
        }
        self.batch_bytes += frame.bytes.len() + std::mem::size_of::<Frame>();
        if self.batch_bytes <= MAX_BATCH_BYTES {
            self.batch.push(frame);
            return;
        }
        self.batch = Vec::new();
        self.batch_effects = Effects::default();
        self.batch_cache = Default::default();
        let e = errors::batch_too_large(MAX_BATCH_BYTES);
        self.refuse_before_sync(e);
    }

    /// Sync: route the batch and run it, relaying until ReadyForQuery.
    pub(super) async fn sync(&mut self, sync: Frame) -> Result<(), SessionError> {
        self.follow_mode();
        if self.server_skipping() {
            // Only the Sync reaches the server: it gives the ReadyForQuery a direct connection would.
            let Some(target) = self.machine.held_target() else { return Ok(()) };
            return self.run_on(target, &Request::default(), Payload::Raw(&sync.bytes), &Effects::default()).await;
        }
        self.batch.push(sync);
        if !self.failed_on_server().await {
            return Ok(());
        }
        // A batch on the same target firms up a transaction bound by a plain read (see `machine`).
        self.machine.firm();
        let target = match self.batch_target() {
            Ok((_, true)) if self.machine.idle_or_deferred() && self.answer_tx_control() => return Ok(()),
            Ok((Some(t), _)) => t,
            Ok((None, _))
                if self.machine.binding().is_none()
                    && !self.session_pooled
                    && self.batch.iter().all(|f| matches!(f.tag, b'C' | b'S' | b'H')) =>
            {
                // Nothing to run (a bare Sync, or Closes): answer as the server would.
                self.answer_locally();
                return Ok(());
            }
            // A Bind or Describe of a name the client does not have: the server gives the error a direct
            // connection would.
            Ok((None, _)) => route::fallback(&self.route_context()),
            Err(e) => {
                self.drop_batch();
                // As if refused before this Sync: a transaction bound on a server (perhaps only by a flushed part
                // of this very batch) is failed there, and the server's status ends the batch.
                self.refuse_before_sync(e);
                self.sync_after_refusal().await;
                return Ok(());
            }
        };
        let batch = std::mem::take(&mut self.batch);
        let effects = std::mem::take(&mut self.batch_effects);
        let cache_use = std::mem::take(&mut self.batch_cache).verdict();
        self.run_request(target, &Request::default(), Payload::Batch(batch), &effects, cache_use).await
    }

    /// Flush without Sync: the client wants answers before it syncs. The batch so far is routed and sent with the
    /// Flush; responses are relayed until the client sends more. The connection stays bound (no ReadyForQuery yet).
    pub(super) async fn flush_batch(&mut self, flush: Frame) -> Result<(), SessionError> {
        self.follow_mode();
        if self.batch.is_empty() && self.machine.binding().is_none() || self.server_skipping() {
            return Ok(());
        }
        if !self.failed_on_server().await {
            return Ok(());
        }
        self.batch.push(flush);
        self.machine.firm();
        let target = match self.batch_target() {
            Ok((Some(t), _)) => t,
            Ok((None, _)) => route::fallback(&self.route_context()),
            Err(e) => {
                self.drop_batch();
                self.refuse_before_sync(e);
                return Ok(());
            }
        };
        let batch = std::mem::take(&mut self.batch);
        self.hold_flushed_writes();
        let Some((target, mut conn, prelude)) = self.bind_for_flush(target).await? else { return Ok(()) };
        let in_tx = prelude.as_ref().is_some_and(|p| !p.is_empty()) || conn.status() != crate::protocol::STATUS_IDLE;
        // A flushed batch is in a transaction (explicit, or its implicit one until Sync) with what follows it.
        self.sequences_ahead(&mut conn, &self.batch_effects, true);
        conn.set_holds_session(in_tx || self.machine.pinned_to(target));
        // Until a Sync's ReadyForQuery the connection is mid-exchange: never idle, never reusable.
        conn.mid_batch();
        if let Some(prelude) = prelude.filter(|p| !p.is_empty()) {
            match self.replay(&mut conn, &prelude).await {
                Ok(status) if status == crate::protocol::STATUS_FAILED => {
                    self.held_failed(&mut conn, false);
                    self.machine.flushed(conn);
                    self.machine.skip_until_sync();
                    return Ok(());
                }
                Ok(_) => {}
                Err(RelayError::Client(e)) => return Err(self.client_left(target, conn, e)),
                Err(RelayError::Server(e)) if conn.holds_session() => return Err(self.session_lost(target, conn, &e)),
                Err(RelayError::Server(e)) => {
                    self.flush_lost(target, conn, &e);
                    return Ok(());
                }
                Err(RelayError::Ended) => return Err(self.server_ended(target, conn)),
            }
        }
        match self.check_statements(target, &mut conn, &batch).await {
            Ok(Checked::Go) => {}
            Ok(Checked::Failed(error)) => {
                // The server skips the rest until the client's Sync, and so does the session.
                self.client.wbuf.extend_from_slice(&error);
                self.drop_batch();
                self.machine.flushed(conn);
                return Ok(());
            }
            Err(e) if conn.holds_session() => return Err(self.session_lost(target, conn, &e)),
            Err(e) => {
                self.flush_lost(target, conn, &e);
                return Ok(());
            }
        }
        let payload = self.rewrite_batch(target, &mut conn, batch);
        if let Some(wait) = self.in_flight(&conn) {
            self.set_running(wait).await;
        }
        let idle = self.app.idle_limits().of(false);
        let relayed = relay::exchange_until_client_speaks(&mut self.client, &mut conn, &payload, idle).await;
        self.give_back_rewrite(payload);
        if let Some(wait) = self.landed() {
            self.set_running(wait).await;
        }
        match relayed {
            Ok(()) => self.machine.flushed(conn),
            Err(RelayError::Client(e)) => return Err(self.client_left(target, conn, e)),
            Err(RelayError::Server(e)) if conn.holds_session() => return Err(self.session_lost(target, conn, &e)),
            Err(RelayError::Server(e)) => self.flush_lost(target, conn, &e),
            Err(RelayError::Ended) => return Err(self.server_ended(target, conn)),
        }
        Ok(())
    }

    /// Sends an extended-protocol batch that ends with Sync on `conn`, rewritten for it (`rewrite_batch`), after
    /// the check of statements parsed before DDL (`check_statements`), and relays its replies until ReadyForQuery.
    pub(super) async fn send_batch(
        &mut self,
        target: TargetId,
        conn: &mut PooledConn,
        batch: Vec<Frame>,
    ) -> Result<u8, RelayError> {
        match self.check_statements(target, conn, &batch).await.map_err(RelayError::Server)? {
            Checked::Go => {}
            Checked::Failed(error) => {
                // The server skips the batch up to its Sync: the error and the Sync's ReadyForQuery answer it.
                self.client.wbuf.extend_from_slice(&error);
                let sync = batch.last().filter(|f| f.tag == b'S').map_or(&b"S\0\0\0\x04"[..], |f| &f.bytes[..]);
                let status = relay::exchange(&mut self.client, conn, sync, relay::Sink::Client).await;
                let outcome = crate::backend::Outcome { error: true, ..conn.outcome() };
                conn.set_outcome(outcome);
                return status;
            }
        }
        let payload = self.rewrite_batch(target, conn, batch);
        let status = relay::exchange(&mut self.client, conn, &payload, relay::Sink::Client).await;
        self.give_back_rewrite(payload);
        status
    }

    /// The connection a flushed batch runs on, and what to replay on it first (a deferred BEGIN and what was held;
    /// behind a transaction pooler, its SET LOCALs or pgsplit's own transaction). `None` when none could be had
    /// (the client was told).
    async fn bind_for_flush(
        &mut self,
        target: TargetId,
    ) -> Result<Option<(TargetId, PooledConn, Option<Vec<Bytes>>)>, SessionError> {
        let (target, mut conn, mut prelude) = match self.machine.start(target, &Request::default()) {
            Start::Use(t, conn) => (t, conn, None),
            Start::Checkout { target, prelude, moved_from } => {
                if let Some((from, conn)) = moved_from {
                    self.roll_back_tentative(from, conn).await;
                }
                match self.acquire(target).await {
                    Ok(conn) => {
                        self.machine.checked_out();
                        (target, conn, Some(prelude))
                    }
                    Err(e) => {
                        self.machine.checkout_failed();
                        self.refuse_before_sync(e);
                        return Ok(None);
                    }
                }
            }
            Start::Answer(reply) => {
                self.reply(reply);
                return Ok(None);
            }
        };
        if let Some(prelude) = &mut prelude {
            // Behind a transaction pooler: SET LOCALs after the BEGIN, or a transaction around an autocommit batch.
            self.pooler_prelude(&mut conn, prelude, &self.batch_effects);
        }
        Ok(Some((target, conn, prelude)))
    }

    /// The server connection of a flushed batch failed: the client gets the error, the rest of the batch is skipped.
    pub(super) fn flush_lost(&mut self, target: TargetId, conn: PooledConn, e: &crate::backend::BackendError) {
        self.server_lost(target, conn, e);
        let err = errors::connection_lost(self.backend(target).name(), Some(e));
        self.refuse_before_sync(err);
    }

    /// Drops the batch gathered so far.
    fn drop_batch(&mut self) {
        self.batch.clear();
        self.batch_effects = Effects::default();
    }

    /// Whether the bound server reported an error in the batch flushed so far: like PostgreSQL, the session then
    /// ignores the client's messages until Sync (they would be ignored by the server, and what pgsplit adds to them
    /// — statements it prepares, replies it injects — must not happen either). True drops what was gathered.
    pub(super) fn server_skipping(&mut self) -> bool {
        let skipping = self.machine.conn().is_some_and(|c| c.skipping());
        if skipping {
            self.drop_batch();
        }
        skipping
    }

    /// In a failed transaction the batch goes to a server whose transaction failed too, which answers it exactly.
    /// Returns false (and answers the client) when that server cannot be had.
    async fn failed_on_server(&mut self) -> bool {
        if !self.machine.is_failed() {
            return true;
        }
        match self.fail_on_server().await {
            Ok(()) => true,
            Err(e) => {
                self.drop_batch();
                self.client.error_ready(&e, crate::protocol::STATUS_FAILED);
                false
            }
        }
    }

    /// The target the batch's statements agree on (`route::Batch`); `None` when the batch names no statement. Also
    /// tells whether every statement the batch parses or binds is transaction control pgsplit may answer itself
    /// (BEGIN, SAVEPOINT, SET LOCAL, ...).
    fn batch_target(&mut self) -> Result<(Option<TargetId>, bool), PgError> {
        let mut agreed = route::Batch::default();
        // Gathered anew from the batch's messages by `route_frame`.
        self.batch_cache = Default::default();
        let mut tx_control = self.target_hint.is_none() && !self.machine.single();
        let batch = std::mem::take(&mut self.batch);
        let mut result = Ok(());
        for f in &batch {
            let routed = match self.route_frame(f, &mut tx_control) {
                Ok(r) => r,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            if let Some(r) = routed {
                if let Err(e) = agreed.add(r, &self.route_context()) {
                    result = Err(e);
                    break;
                }
            }
        }
        self.batch = batch;
        result?;
        Ok((agreed.target(&self.route_context()), tx_control))
    }

    /// Routes one message of a batch: a Parse by its SQL, a Bind or Describe by the statement it names (routed again
    /// first if it was routed under another routing). Clears `tx_control` unless it is transaction control.
    fn route_frame(&mut self, f: &Frame, tx_control: &mut bool) -> Result<Option<route::Routed>, PgError> {
        let controls = |a: Option<&Analysis>| {
            a.is_some_and(|a| a.hint.is_none() && matches!(a.command, Command::Begin | Command::Holdable(_)))
        };
        match f.tag {
            b'P' => {
                let (routed, a) = self.route_parse(f)?;
                *tx_control &= controls(a.as_deref());
                self.scan_for_cache(f, routed.target, a.as_ref());
                Ok(Some(routed))
            }
            b'B' => {
                let name = decode::bind_names(f.body(), self.encoding).map_err(errors::invalid_extended)?.1;
                self.reroute_statement(&name)?;
                let stmt = self.statement_route(&name);
                let analysis = stmt.and_then(|(_, a)| a.cloned());
                let routed = stmt.map(|(r, _)| r);
                *tx_control &= controls(analysis.as_deref());
                // What the statement does to the session happens when it runs, in this batch or a later one.
                if let Some(a) = &analysis {
                    self.batch_effects.add(a);
                }
                match routed {
                    Some(r) => self.scan_for_cache(f, r.target, analysis.as_ref()),
                    // A statement the client does not have: nothing to cache.
                    None => self.batch_cache.uncacheable(),
                }
                Ok(routed)
            }
            b'C' => {
                *tx_control = false;
                // Session pooling closes the statement on the server that has it; otherwise pgsplit answers.
                match decode::describe_or_close(f.body(), self.encoding) {
                    Ok((b'S', name)) if self.session_pooled => Ok(self.statement_route(&name).map(|(r, _)| r)),
                    _ => Ok(None),
                }
            }
            b'D' => match decode::describe_or_close(f.body(), self.encoding).map_err(errors::invalid_extended)? {
                (b'S', name) => {
                    self.reroute_statement(&name)?;
                    let stmt = self.statement_route(&name);
                    // Only transaction control is described without a server (psql's `\gdesc` describes a SELECT
                    // it parsed in an earlier batch).
                    *tx_control &= controls(stmt.and_then(|(_, a)| a.map(|a| &**a)));
                    Ok(stmt.map(|(r, _)| r))
                }
                _ => Ok(None),
            },
            _ => Ok(None),
        }
    }

    /// Routes a Parse and records the statement it names.
    fn route_parse(&mut self, f: &Frame) -> Result<(route::Routed, Option<SharedAnalysis>), PgError> {
        let (name, sql) = decode::parse_sql(f.body(), self.encoding).map_err(errors::invalid_extended)?;
        let analysis = self.app.analysis_for(&sql, self.machine.single(), &mut self.lookup_memo);
        let routed = self.route(analysis.as_ref())?;
        let (t, explicit, epoch) = (routed.target, routed.explicit, self.routing_epoch());
        if name.is_empty() {
            self.unnamed = Some(Unnamed { target: t, explicit, analysis: analysis.clone(), epoch });
        } else if let Some(prepared) = Prepared::from_parse(
            t,
            explicit,
            analysis.clone(),
            epoch,
            Sharing { encoding: self.encoding, catalog: self.backend(t).statement_epoch(), search_path: &self.search_path },
            f.body(),
        ) {
            self.statements.insert(name.into_owned(), Arc::new(prepared));
        }
        Ok((routed, analysis))
    }

    /// A statement prepared under another routing (the other mode, or routes a reload has changed since) is routed
    /// again before it runs; the server-side statement stays the same.
    fn reroute_statement(&mut self, name: &str) -> Result<(), PgError> {
        let (single, epoch) = (self.machine.single(), self.routing_epoch());
        if name.is_empty() {
            if self.unnamed.as_ref().is_none_or(|u| u.epoch == epoch) {
                return Ok(());
            }
            let Some(parse) = self.unnamed_parse.clone() else { return Ok(()) };
            let Ok((_, sql)) = decode::parse_sql(parse.get(5..).unwrap_or_default(), self.encoding) else { return Ok(()) };
            let analysis = self.app.analysis_for(&sql, single, &mut self.lookup_memo);
            let r = self.route(analysis.as_ref())?;
            self.unnamed = Some(Unnamed { target: r.target, explicit: r.explicit, analysis, epoch });
        } else {
            let Some(old) = self.statements.get(name).filter(|p| p.epoch != epoch).cloned() else { return Ok(()) };
            let analysis = self.app.analysis_for(&old.sql(), single, &mut self.lookup_memo);
            let r = self.route(analysis.as_ref())?;
            self.statements.insert(name.to_owned(), Arc::new(old.rerouted(r.target, r.explicit, analysis, epoch)));
        }
        Ok(())
    }

    /// Answers a batch of transaction control without a server, as `local_command` answers a simple BEGIN: a BEGIN
    /// outside a transaction is deferred; SAVEPOINT, RELEASE, ROLLBACK TO and SET LOCAL of a deferred transaction
    /// are held. Returns false, having answered nothing, when the batch needs a server after all (portals by name,
    /// a SAVEPOINT outside a transaction, a statement the client does not have).
    fn answer_tx_control(&mut self) -> bool {
        let Some((replies, unnamed)) = self.tx_control_replies() else { return false };
        if let Some(parse) = unnamed {
            let mut frame = BytesMut::with_capacity(parse.len() + 5);
            encode::message(&mut frame, b'P', |b| b.extend_from_slice(&parse));
            self.unnamed_parse = Some(frame.freeze());
            // Answered here, it is no server-side statement: a later Bind of it sends this Parse first.
            self.unnamed_prepared = None;
        }
        self.drop_batch();
        for reply in replies {
            let buf = &mut self.client.wbuf;
            match reply {
                ControlReply::Parse => encode::tag_only(buf, b'1'),
                ControlReply::Bind => encode::tag_only(buf, b'2'),
                ControlReply::Statement(types) => {
                    encode::message(buf, b't', |b| {
                        b.put_i16(types.len() as i16);
                        types.iter().for_each(|t| b.put_u32(*t));
                    });
                    encode::tag_only(buf, b'n');
                }
                ControlReply::Portal => encode::tag_only(buf, b'n'),
                ControlReply::Control(control) => {
                    if let Some(Reply::Complete { tag, notice, .. }) = self.machine.local(control) {
                        if notice {
                            errors::already_in_transaction().encode(&mut self.client.wbuf);
                        }
                        encode::command_complete(&mut self.client.wbuf, tag);
                    }
                }
                ControlReply::Ready => encode::ready_for_query(buf, self.machine.status()),
            }
        }
        true
    }

    /// The replies `answer_tx_control` gives, message by message, and the batch's unnamed Parse body; `None` when
    /// the batch needs a server.
    fn tx_control_replies(&mut self) -> Option<(Vec<ControlReply>, Option<Bytes>)> {
        let mut deferred = !self.machine.idle();
        let mut unnamed: Option<(Bytes, Option<SharedAnalysis>)> = None;
        let mut portal: Option<(Command, Bytes)> = None;
        let mut replies = Vec::with_capacity(self.batch.len());
        for f in &self.batch {
            let reply = match f.tag {
                b'P' => {
                    let parsed = decode::parse_sql(f.body(), self.encoding);
                    if let Ok(("", sql)) = parsed.as_ref().map(|(n, s)| (&**n, &**s)) {
                        // This Parse's own analysis: `self.unnamed` holds the batch's last one.
                        let a = self.app.analysis_for(sql, self.machine.single(), &mut self.lookup_memo);
                        unnamed = Some((f.bytes.slice(5..), a));
                    }
                    ControlReply::Parse
                }
                b'B' => {
                    let (portal_name, name) = decode::bind_names(f.body(), self.encoding).ok()?;
                    if !portal_name.is_empty() {
                        return None;
                    }
                    let (body, Some(a)) = self.statement_source(&name, unnamed.as_ref())? else { return None };
                    let (_, sql) = decode::parse_raw(&body).ok()?;
                    portal = Some((a.command.clone(), encode::query(sql)));
                    ControlReply::Bind
                }
                b'D' => match decode::describe_or_close(f.body(), self.encoding).ok()? {
                    (b'S', name) => {
                        let (body, _) = self.statement_source(&name, unnamed.as_ref())?;
                        ControlReply::Statement(decode::parse(&body, self.encoding).ok()?.param_types)
                    }
                    (b'P', name) if name.is_empty() && portal.is_some() => ControlReply::Portal,
                    _ => return None,
                },
                b'E' => match (&portal, decode::execute_portal(f.body(), self.encoding).as_deref()) {
                    (Some((Command::Begin, q)), Ok("")) => {
                        deferred = true;
                        ControlReply::Control(Control::Begin(q.clone()))
                    }
                    (Some((Command::Holdable(tag), q)), Ok("")) if deferred => {
                        ControlReply::Control(Control::Hold(tag, q.clone()))
                    }
                    _ => return None,
                },
                b'S' => ControlReply::Ready,
                _ => return None,
            };
            replies.push(reply);
        }
        Some((replies, unnamed.map(|(parse, _)| parse)))
    }

    /// The Parse body (name, SQL, parameter types) and analysis of the client's statement `name`; the unnamed one
    /// is `batch_unnamed` (parsed in this batch) or the client's last unnamed Parse.
    pub(super) fn statement_source(
        &self,
        name: &str,
        batch_unnamed: Option<&(Bytes, Option<SharedAnalysis>)>,
    ) -> Option<(Bytes, Option<SharedAnalysis>)> {
        if name.is_empty() {
            if let Some(u) = batch_unnamed {
                return Some(u.clone());
            }
            let body = self.unnamed_parse.as_ref().map(|f| f.slice(5..))?;
            Some((body, self.unnamed.as_ref()?.analysis.clone()))
        } else {
            let p = self.statements.get(name)?;
            Some((p.parse_body.clone(), p.analysis.clone()))
        }
    }

    /// The client's statement of that name (empty: the unnamed statement): where it was routed, and its analysis.
    pub(super) fn statement_route(&self, name: &str) -> Option<(route::Routed, Option<&SharedAnalysis>)> {
        if name.is_empty() {
            let u = self.unnamed.as_ref()?;
            Some((route::Routed { target: u.target, explicit: u.explicit }, u.analysis.as_ref()))
        } else {
            let p = self.statements.get(name)?;
            Some((route::Routed { target: p.target, explicit: p.explicit }, p.analysis.as_ref()))
        }
    }

    /// Answers a batch that needs no server: CloseComplete for Closes, then ReadyForQuery.
    fn answer_locally(&mut self) {
        self.batch_effects = Effects::default();
        for f in std::mem::take(&mut self.batch) {
            if f.tag == b'C' {
                if let Ok((b'S', name)) = decode::describe_or_close(f.body(), self.encoding) {
                    self.statements.remove(&*name);
                }
                crate::protocol::encode::tag_only(&mut self.client.wbuf, b'3');
            }
        }
        let status = self.machine.status();
        crate::protocol::encode::ready_for_query(&mut self.client.wbuf, status);
    }
}

/// What `answer_tx_control` answers for one message of the batch.
enum ControlReply {
    /// ParseComplete.
    Parse,
    /// BindComplete.
    Bind,
    /// ParameterDescription with these types, then NoData.
    Statement(Vec<u32>),
    /// NoData for the portal.
    Portal,
    /// The Execute of transaction control: the machine answers it (its CommandComplete, no ReadyForQuery).
    Control(Control),
    /// ReadyForQuery for the Sync.
    Ready,
}
