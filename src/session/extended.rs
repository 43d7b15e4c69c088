//! Extended-query batches: messages are held until Sync (or Flush), routed as one unit, rewritten for the server
//! connection they run on (see `prepared`), and sent in one write.
//!
//! Named prepared statements live in the session and are prepared lazily on each server connection; the unnamed
//! statement and portals live only within a batch's transaction.

use std::sync::Arc;

use crate::protocol::encode::PgError;
use crate::protocol::{codes, decode, Frame};
use crate::router::{Command, TargetId};

use super::prepared::Prepared;
use super::state::{Effects, Payload, Session, Tx};
use super::SessionError;

impl Session {
    /// Sync: route the batch and run it, relaying until ReadyForQuery.
    pub(super) async fn sync(&mut self, sync: Frame) -> Result<(), SessionError> {
        self.batch.push(sync);
        if !self.failed_on_server().await {
            return Ok(());
        }
        let target = match self.batch_target() {
            Ok(Some(t)) => t,
            Ok(None) => match &self.tx {
                Tx::Bound { target, .. } => *target,
                _ if self.batch.iter().all(|f| matches!(f.tag, b'C' | b'S' | b'H')) => {
                    // Nothing to run (a bare Sync, or Closes): answer as the server would.
                    self.answer_locally();
                    return Ok(());
                }
                // A Bind or Describe of a name the client does not have: the server gives the error a direct
                // connection would.
                _ if self.app.is_single() => self.app.single_target(),
                _ => self.app.table().default_target,
            },
            Err(e) => {
                self.batch.clear();
                self.batch_effects = Effects::default();
                self.refuse(e);
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
        if self.batch.is_empty() && !matches!(self.tx, Tx::Bound { .. }) {
            return Ok(());
        }
        if !self.failed_on_server().await {
            return Ok(());
        }
        self.batch.push(flush);
        let target = match self.batch_target() {
            Ok(Some(t)) => t,
            Ok(None) => match &self.tx {
                Tx::Bound { target, .. } => *target,
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
        let mut conn = match std::mem::replace(&mut self.tx, Tx::Idle) {
            Tx::Bound { conn, .. } => conn,
            other => {
                self.tx = other;
                match self.acquire(target).await {
                    Ok(c) => c,
                    Err(e) => {
                        self.refuse_before_sync(e);
                        return Ok(());
                    }
                }
            }
        };
        // Until a Sync's ReadyForQuery the connection is mid-exchange: never idle, never reusable.
        conn.status = crate::protocol::STATUS_IN_TX;
        let payload = self.rewrite_batch(&mut conn, batch);
        self.in_flight(target, &conn).await;
        let sent = conn.send(&payload).await;
        let relayed = match sent {
            Ok(()) => super::relay::until_client_speaks(&mut self.client, &mut conn).await,
            Err(e) => Err(super::relay::RelayError::Server(e)),
        };
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
    /// follow them, else go where the first of them would.
    fn batch_target(&mut self) -> Result<Option<TargetId>, PgError> {
        let mut explicit: Option<TargetId> = None;
        let mut follower: Option<TargetId> = None;
        let batch = std::mem::take(&mut self.batch);
        let mut result = Ok(());
        for f in &batch {
            let routed = match f.tag {
                b'P' => match self.route_parse(f) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                },
                b'B' => decode::bind_names(f.body()).ok().and_then(|(_, stmt)| self.statement_target(stmt)),
                b'D' | b'C' => match decode::describe_or_close(f.body()) {
                    Ok((b'S', name)) => self.statement_target(name),
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
        Ok(explicit.or(follower))
    }

    /// Routes a Parse and records the statement it names.
    fn route_parse(&mut self, f: &Frame) -> Result<(TargetId, bool), PgError> {
        let p = decode::parse(f.body()).map_err(bad_message)?;
        let analysis = self.app.analysis(p.sql);
        let (t, explicit) = self.route(analysis.as_deref())?;
        if let Some(a) = &analysis {
            self.batch_effects.changes.extend(a.session_changes.iter().cloned());
            self.batch_effects.ddl |= a.ddl;
            self.batch_effects.pins |= a.pins;
            self.batch_effects.forgets_prepared |= a.session_changes.iter().any(Command::forgets_prepared);
        }
        if p.name.is_empty() {
            self.unnamed = Some((t, explicit));
        } else if let Some(prepared) = Prepared::from_parse(t, explicit, f.body()) {
            self.statements.insert(p.name.to_owned(), Arc::new(prepared));
        }
        Ok((t, explicit))
    }

    fn statement_target(&self, name: &str) -> Option<(TargetId, bool)> {
        if name.is_empty() {
            self.unnamed
        } else {
            self.statements.get(name).map(|p| (p.target, p.explicit))
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
