//! Extended-query batches: messages are held until Sync (or Flush), routed as one unit, rewritten for the server
//! connection they run on (see `prepared`), and sent in one write.
//!
//! Named prepared statements live in the session and are prepared lazily on each server connection; the unnamed
//! statement and portals live only within a batch's transaction.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::protocol::encode::{self, PgError};
use crate::protocol::{codes, decode, Frame};
use crate::router::{Analysis, Command, SharedAnalysis, TargetId};

use super::prepared::Prepared;
use super::state::{Effects, Payload, Session, Tx, Unnamed};
use super::SessionError;

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
        let e = PgError::error(
            codes::PROGRAM_LIMIT_EXCEEDED,
            format!("extended-protocol batch over {} MiB without Sync", MAX_BATCH_BYTES >> 20),
        )
        .with_hint("send Sync (or Flush) more often");
        self.refuse_before_sync(e);
    }

    /// Sync: route the batch and run it, relaying until ReadyForQuery.
    pub(super) async fn sync(&mut self, sync: Frame) -> Result<(), SessionError> {
        self.follow_mode();
        if self.server_skipping() {
            // Only the Sync reaches the server: it gives the ReadyForQuery a direct connection would.
            let target = match &self.tx {
                Tx::Bound { target, .. } => *target,
                _ => return Ok(()),
            };
            return self.run_on(target, Payload::Raw(&sync.bytes), &Effects::default()).await;
        }
        self.batch.push(sync);
        if !self.failed_on_server().await {
            return Ok(());
        }
        // A batch on the same target firms up a transaction bound by a plain read (see `Session::tentative`).
        self.tentative = None;
        let target = match self.batch_target() {
            Ok((_, true)) if matches!(self.tx, Tx::Idle | Tx::Deferred { .. }) && self.answer_tx_control() => return Ok(()),
            Ok((Some(t), _)) => t,
            Ok((None, _)) => match &self.tx {
                Tx::Bound { target, .. } => *target,
                _ if self.batch.iter().all(|f| matches!(f.tag, b'C' | b'S' | b'H')) => {
                    // Nothing to run (a bare Sync, or Closes): answer as the server would.
                    self.answer_locally();
                    return Ok(());
                }
                // A Bind or Describe of a name the client does not have: the server gives the error a direct
                // connection would.
                _ if self.single => self.app.single_target(),
                _ => self.app.table().default_target,
            },
            Err(e) => {
                self.batch.clear();
                self.batch_effects = Effects::default();
                // As if refused before this Sync: a transaction bound on a server (perhaps only by a flushed part
                // of this very batch) is failed there, and the server's status ends the batch.
                self.refuse_before_sync(e);
                self.sync_after_refusal().await;
                return Ok(());
            }
        };
        let batch = std::mem::take(&mut self.batch);
        let effects = std::mem::take(&mut self.batch_effects);
        self.run_on(target, Payload::Batch(batch), &effects).await
    }

    /// Flush without Sync: the client wants answers before it syncs. The batch so far is routed and sent with the
    /// Flush; responses are relayed until the client sends more. The connection stays bound (no ReadyForQuery yet).
    pub(super) async fn flush_batch(&mut self, flush: Frame) -> Result<(), SessionError> {
        self.follow_mode();
        if self.batch.is_empty() && !matches!(self.tx, Tx::Bound { .. }) || self.server_skipping() {
            return Ok(());
        }
        if !self.failed_on_server().await {
            return Ok(());
        }
        self.batch.push(flush);
        self.tentative = None;
        let target = match self.batch_target() {
            Ok((Some(t), _)) => t,
            Ok((None, _)) => match &self.tx {
                Tx::Bound { target, .. } => *target,
                _ if self.single => self.app.single_target(),
                _ => self.app.table().default_target,
            },
            Err(e) => {
                self.batch.clear();
                self.batch_effects = Effects::default();
                self.refuse_before_sync(e);
                return Ok(());
            }
        };
        let batch = std::mem::take(&mut self.batch);
        let (mut conn, mut prelude) = match std::mem::replace(&mut self.tx, Tx::Idle) {
            Tx::Bound { conn, .. } => (conn, None),
            // A deferred transaction binds here (asyncpg prepares with Parse/Describe/Flush inside transactions).
            Tx::Deferred { begin, held } => match self.acquire(target).await {
                Ok(c) => (c, Some(std::iter::once(begin).chain(held).collect())),
                Err(e) => {
                    self.tx = Tx::Deferred { begin, held };
                    self.refuse_before_sync(e);
                    return Ok(());
                }
            },
            other => {
                self.tx = other;
                match self.acquire(target).await {
                    Ok(c) => (c, Some(Vec::new())),
                    Err(e) => {
                        self.refuse_before_sync(e);
                        return Ok(());
                    }
                }
            }
        };
        if let Some(prelude) = &mut prelude {
            // Behind a transaction pooler: SET LOCALs after the BEGIN, or a transaction around an autocommit batch.
            self.pooler_prelude(&mut conn, prelude, &self.batch_effects);
        }
        if let Some(prelude) = prelude.filter(|p| !p.is_empty()) {
            match self.replay(&mut conn, &prelude).await {
                Ok(status) if status == crate::protocol::STATUS_FAILED => {
                    self.held_failed(&mut conn, false);
                    self.tx = Tx::Bound { target, conn };
                    self.skip_until_sync = true;
                    return Ok(());
                }
                Ok(_) => {}
                Err(super::relay::RelayError::Client(e)) => return Err(e),
                Err(super::relay::RelayError::Server(e)) => {
                    conn.broken = true;
                    self.release(target, conn);
                    let name = self.app.backend(target).name().to_owned();
                    let err = PgError::error(codes::CONNECTION_FAILURE, format!("connection to target \"{name}\" lost: {e}"));
                    self.refuse_before_sync(err);
                    return Ok(());
                }
            }
        }
        // Until a Sync's ReadyForQuery the connection is mid-exchange: never idle, never reusable.
        conn.status = crate::protocol::STATUS_IN_TX;
        let payload = self.rewrite_batch(&mut conn, batch);
        self.in_flight(target, &conn).await;
        let relayed = super::relay::exchange_until_client_speaks(&mut self.client, &mut conn, &payload).await;
        self.give_back_rewrite(payload);
        self.landed().await;
        match relayed {
            Ok(()) => {
                self.tx = Tx::Bound { target, conn };
                Ok(())
            }
            Err(super::relay::RelayError::Client(e)) => Err(e),
            Err(super::relay::RelayError::Server(e)) => {
                conn.broken = true;
                self.release(target, conn);
                let name = self.app.backend(target).name().to_owned();
                let err = PgError::error(codes::CONNECTION_FAILURE, format!("connection to target \"{name}\" lost: {e}"));
                self.tx = Tx::Idle;
                self.refuse_before_sync(err);
                Ok(())
            }
        }
    }

    /// Whether the bound server reported an error in the batch flushed so far: like PostgreSQL, the session then
    /// ignores the client's messages until Sync (they would be ignored by the server, and what pgsplit adds to them
    /// — statements it prepares, replies it injects — must not happen either). True drops what was gathered.
    fn server_skipping(&mut self) -> bool {
        let skipping = matches!(&self.tx, Tx::Bound { conn, .. } if conn.skipping);
        if skipping {
            self.batch.clear();
            self.batch_effects = Effects::default();
        }
        skipping
    }

    /// The target every statement of the batch agrees on; `None` when the batch names no statement.
    /// In a failed transaction the batch goes to a server whose transaction failed too, which answers it exactly.
    /// Returns false (and answers the client) when that server cannot be had.
    async fn failed_on_server(&mut self) -> bool {
        if !matches!(self.tx, Tx::Failed { .. }) {
            return true;
        }
        match self.fail_on_server().await {
            Ok(()) => true,
            Err(e) => {
                self.batch.clear();
                self.batch_effects = Effects::default();
                self.client.error_ready(&e, crate::protocol::STATUS_FAILED);
                false
            }
        }
    }

    /// Statements that chose their target (relations, hints) must agree; the others (a JDBC `BEGIN`, `SELECT 1`)
    /// follow them, else go where the first of them would. Also tells whether every statement the batch parses or
    /// binds is transaction control pgsplit may answer itself (BEGIN, SAVEPOINT, SET LOCAL, ...).
    fn batch_target(&mut self) -> Result<(Option<TargetId>, bool), PgError> {
        let mut explicit: Option<TargetId> = None;
        let mut follower: Option<TargetId> = None;
        let mut tx_control = self.target_hint.is_none() && !self.single;
        let controls = |a: Option<&Analysis>| {
            a.is_some_and(|a| a.hint.is_none() && matches!(a.command, Command::Begin | Command::Holdable(_)))
        };
        let batch = std::mem::take(&mut self.batch);
        let mut result = Ok(());
        for f in &batch {
            let routed = match f.tag {
                b'P' => match self.route_parse(f) {
                    Ok((t, explicit, a)) => {
                        tx_control &= controls(a.as_deref());
                        Some((t, explicit))
                    }
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                },
                b'B' => {
                    let name = decode::bind_names(f.body()).ok().map(|(_, name)| name);
                    if let Err(e) = name.map_or(Ok(()), |n| self.reroute_statement(n)) {
                        result = Err(e);
                        break;
                    }
                    let stmt = name.and_then(|n| self.statement_route(n));
                    let analysis = stmt.and_then(|(_, _, a)| a.cloned());
                    let routed = stmt.map(|(t, explicit, _)| (t, explicit));
                    tx_control &= controls(analysis.as_deref());
                    // What the statement does to the session happens when it runs, in this batch or a later one.
                    if let Some(a) = analysis {
                        self.batch_effects.add(&a);
                    }
                    routed
                }
                b'C' => {
                    tx_control = false;
                    None
                }
                b'D' => match decode::describe_or_close(f.body()) {
                    Ok((b'S', name)) => {
                        if let Err(e) = self.reroute_statement(name) {
                            result = Err(e);
                            break;
                        }
                        self.statement_route(name).map(|(t, explicit, _)| (t, explicit))
                    }
                    _ => None,
                },
                _ => None,
            };
            // A statement prepared earlier for another target cannot join the bound transaction (a Parse was
            // checked by `route`; a Bind or Describe of an older statement is checked here).
            if let (Some((t, true)), Tx::Bound { target: b, .. }) = (routed, &self.tx) {
                if t != *b {
                    result = Err(self.other_target_in_transaction(t, *b));
                    break;
                }
            }
            match routed {
                Some((t, true)) => match explicit {
                    Some(e) if e != t => {
                        let names = self.app.table();
                        result = Err(PgError::error(
                            codes::FEATURE_NOT_SUPPORTED,
                            format!("extended-protocol batch mixes targets \"{}\" and \"{}\"", names.name(e), names.name(t)),
                        )
                        .because("batch_mixes_targets"));
                        break;
                    }
                    _ => explicit = Some(t),
                },
                Some((t, false)) => follower = follower.or(Some(t)),
                None => {}
            }
        }
        self.batch = batch;
        result?;
        // Inside a bound transaction everything runs where it is bound (an explicit other target was refused
        // above); a statement prepared earlier for another target only follows.
        let bound = match &self.tx {
            Tx::Bound { target, .. } => Some(*target),
            _ => None,
        };
        Ok((explicit.or(bound).or(follower), tx_control))
    }

    /// Routes a Parse and records the statement it names.
    fn route_parse(&mut self, f: &Frame) -> Result<(TargetId, bool, Option<SharedAnalysis>), PgError> {
        let (name, sql) = decode::parse_sql(f.body()).map_err(bad_message)?;
        let analysis = self.app.analysis_for(sql, self.single, &mut self.lookup_memo);
        let (t, explicit) = self.route(analysis.as_ref())?;
        if name.is_empty() {
            self.unnamed = Some(Unnamed { target: t, explicit, analysis: analysis.clone(), epoch: self.routing_epoch() });
        } else if let Some(prepared) = Prepared::from_parse(t, explicit, analysis.clone(), self.routing_epoch(), f.body()) {
            self.statements.insert(name.to_owned(), Arc::new(prepared));
        }
        Ok((t, explicit, analysis))
    }

    /// A statement prepared under another routing (the other mode, or routes a reload has changed since) is routed
    /// again before it runs; the server-side statement stays the same.
    fn reroute_statement(&mut self, name: &str) -> Result<(), PgError> {
        let (single, epoch) = (self.single, self.routing_epoch());
        if name.is_empty() {
            if self.unnamed.as_ref().is_none_or(|u| u.epoch == epoch) {
                return Ok(());
            }
            let Some(parse) = self.unnamed_parse.clone() else { return Ok(()) };
            let Ok((_, sql)) = decode::parse_sql(parse.get(5..).unwrap_or_default()) else { return Ok(()) };
            let analysis = self.app.analysis_for(sql, single, &mut self.lookup_memo);
            let (target, explicit) = self.route(analysis.as_ref())?;
            self.unnamed = Some(Unnamed { target, explicit, analysis, epoch });
        } else {
            let Some(old) = self.statements.get(name).filter(|p| p.epoch != epoch).cloned() else { return Ok(()) };
            let analysis = self.app.analysis_for(old.sql(), single, &mut self.lookup_memo);
            let (target, explicit) = self.route(analysis.as_ref())?;
            self.statements.insert(name.to_owned(), Arc::new(old.rerouted(target, explicit, analysis, epoch)));
        }
        Ok(())
    }

    /// Answers a batch of transaction control without a server, as `local_command` answers a simple BEGIN: a BEGIN
    /// outside a transaction is deferred; SAVEPOINT, RELEASE, ROLLBACK TO and SET LOCAL of a deferred transaction
    /// are held. Returns false, having answered nothing, when the batch needs a server after all (portals by name,
    /// a SAVEPOINT outside a transaction, a statement the client does not have).
    fn answer_tx_control(&mut self) -> bool {
        enum Reply {
            Parse,
            Bind,
            Statement(Vec<u32>),
            Portal,
            Begin(Bytes),
            AlreadyBegun,
            Hold(&'static str, Bytes),
            Ready,
        }
        let mut deferred = matches!(self.tx, Tx::Deferred { .. });
        let mut unnamed: Option<(Bytes, Option<SharedAnalysis>)> = None;
        let mut portal: Option<(Command, Bytes)> = None;
        let mut replies = Vec::with_capacity(self.batch.len());
        for f in &self.batch {
            let reply = match f.tag {
                b'P' => {
                    if let Ok(("", sql)) = decode::parse_sql(f.body()) {
                        // This Parse's own analysis: `self.unnamed` holds the batch's last one.
                        unnamed = Some((f.bytes.slice(5..), self.app.analysis_for(sql, self.single, &mut self.lookup_memo)));
                    }
                    Reply::Parse
                }
                b'B' => {
                    let Ok(("", name)) = decode::bind_names(f.body()) else { return false };
                    let Some((body, Some(a))) = self.statement_source(name, unnamed.as_ref()) else { return false };
                    let Ok(p) = decode::parse(&body) else { return false };
                    portal = Some((a.command.clone(), query_message(p.sql)));
                    Reply::Bind
                }
                b'D' => match decode::describe_or_close(f.body()) {
                    Ok((b'S', name)) => {
                        let Some((body, _)) = self.statement_source(name, unnamed.as_ref()) else { return false };
                        let Ok(p) = decode::parse(&body) else { return false };
                        Reply::Statement(p.param_types)
                    }
                    Ok((b'P', "")) if portal.is_some() => Reply::Portal,
                    _ => return false,
                },
                b'E' => match (&portal, decode::execute_portal(f.body())) {
                    (Some((Command::Begin, _)), Ok("")) if deferred => Reply::AlreadyBegun,
                    (Some((Command::Begin, q)), Ok("")) => {
                        deferred = true;
                        Reply::Begin(q.clone())
                    }
                    (Some((Command::Holdable(tag), q)), Ok("")) if deferred => Reply::Hold(tag, q.clone()),
                    _ => return false,
                },
                b'S' => Reply::Ready,
                _ => return false,
            };
            replies.push(reply);
        }
        if let Some((parse, _)) = unnamed {
            let mut frame = BytesMut::with_capacity(parse.len() + 5);
            encode::message(&mut frame, b'P', |b| b.extend_from_slice(&parse));
            self.unnamed_parse = Some(frame.freeze());
        }
        self.batch.clear();
        self.batch_effects = Effects::default();
        let buf = &mut self.client.wbuf;
        for reply in replies {
            match reply {
                Reply::Parse => encode::tag_only(buf, b'1'),
                Reply::Bind => encode::tag_only(buf, b'2'),
                Reply::Statement(types) => {
                    encode::message(buf, b't', |b| {
                        b.put_i16(types.len() as i16);
                        types.iter().for_each(|t| b.put_u32(*t));
                    });
                    encode::tag_only(buf, b'n');
                }
                Reply::Portal => encode::tag_only(buf, b'n'),
                Reply::Begin(q) => {
                    self.tx = Tx::Deferred { begin: q, held: Vec::new() };
                    encode::command_complete(buf, "BEGIN");
                }
                Reply::AlreadyBegun => {
                    super::query::notice_already_in_transaction(buf);
                    encode::command_complete(buf, "BEGIN");
                }
                Reply::Hold(tag, q) => {
                    if let Tx::Deferred { held, .. } = &mut self.tx {
                        held.push(q);
                    }
                    encode::command_complete(buf, tag);
                }
                Reply::Ready => encode::ready_for_query(buf, self.tx.status()),
            }
        }
        true
    }

    /// The Parse body (name, SQL, parameter types) and analysis of the client's statement `name`; the unnamed one
    /// is `batch_unnamed` (parsed in this batch) or the client's last unnamed Parse.
    fn statement_source(
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

    /// The client's statement of that name (empty: the unnamed statement): target, whether its SQL chose it, and
    /// its analysis.
    pub(super) fn statement_route(&self, name: &str) -> Option<(TargetId, bool, Option<&SharedAnalysis>)> {
        if name.is_empty() {
            self.unnamed.as_ref().map(|u| (u.target, u.explicit, u.analysis.as_ref()))
        } else {
            self.statements.get(name).map(|p| (p.target, p.explicit, p.analysis.as_ref()))
        }
    }

    /// Answers a batch that needs no server: CloseComplete for Closes, then ReadyForQuery.
    fn answer_locally(&mut self) {
        self.batch_effects = Effects::default();
        for f in std::mem::take(&mut self.batch) {
            if f.tag == b'C' {
                if let Ok((b'S', name)) = decode::describe_or_close(f.body()) {
                    self.statements.remove(name);
                }
                crate::protocol::encode::tag_only(&mut self.client.wbuf, b'3');
            }
        }
        let status = self.tx.status();
        crate::protocol::encode::ready_for_query(&mut self.client.wbuf, status);
    }
}

fn bad_message(e: decode::DecodeError) -> PgError {
    PgError::error(codes::PROTOCOL_VIOLATION, format!("invalid extended-protocol message: {e}"))
}

/// A Query message carrying `sql`, to replay a statement answered locally.
fn query_message(sql: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(sql.len() + 6);
    encode::message(&mut buf, b'Q', |b| {
        b.extend_from_slice(sql.as_bytes());
        b.put_u8(0);
    });
    buf.freeze()
}
