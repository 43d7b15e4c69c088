//! Simple-query messages: local answers for transaction control and hints, routing, and the transaction rules of §4.

use crate::backend::relay::{self, RelayError};
use crate::protocol::{decode, Frame, STATUS_FAILED, STATUS_IDLE};
use crate::router::{Analysis, Command, RouteError};

use super::errors;
use super::machine::{Control, Request, Start};
use super::state::{Effects, Payload};
use super::{Session, SessionError};

impl Session {
    /// Handles a Query message.
    pub(super) async fn simple_query(&mut self, frame: Frame) -> Result<(), SessionError> {
        let sql = decode::query(frame.body()).map_err(|e| SessionError::Fatal(errors::invalid_query(e)))?;
        if !self.ready_for_request().await? {
            return Ok(());
        }
        let sql = match self.encoding.decode(sql) {
            Ok(sql) => sql,
            Err(e) => {
                self.refuse(errors::unreadable_text(&e));
                return Ok(());
            }
        };
        let sql = &*sql;
        self.follow_mode();
        // Single mode analyses only what may change session state; a failed transaction still needs to know its
        // COMMIT or ROLLBACK.
        let single = self.machine.single() && !self.machine.is_failed();
        let analysis = self.app.analysis_for(sql, single, &mut self.lookup_memo);
        if let Some(a) = &analysis {
            if self.local_command(a, &frame) {
                return Ok(());
            }
        }
        let routed = match self.route(analysis.as_ref()) {
            Ok(r) => r,
            Err(e) => {
                self.refuse(e);
                return Ok(());
            }
        };
        // Only a deferred or tentatively bound transaction asks (`Analysis::plain`).
        let plain_read = self.machine.asks_plain_read() && !routed.explicit && analysis.as_deref().is_some_and(|a| a.plain);
        let replayed = matches!(analysis.as_deref().map(|a| &a.command), Some(Command::Holdable(_))).then(|| frame.bytes.clone());
        let request = Request { explicit: routed.explicit, plain_read, replayed };
        let effects = Effects::of(analysis.as_deref());
        let cache_use = self.cache_use(routed.target, analysis.as_deref(), None);
        self.run_request(routed.target, &request, Payload::Raw(&frame.bytes), &effects, cache_use).await
    }

    /// Handles a FunctionCall (the fast-path interface, which libpq's large-object API uses): it runs where a
    /// statement that names nothing runs (the transaction's connection, the session's hint, else the default target),
    /// and the server answers FunctionCallResponse and ReadyForQuery, as on a direct connection.
    pub(super) async fn function_call(&mut self, frame: Frame) -> Result<(), SessionError> {
        if !self.ready_for_request().await? {
            return Ok(());
        }
        self.follow_mode();
        let routed = match self.route(None) {
            Ok(r) => r,
            Err(e) => {
                self.refuse(e);
                return Ok(());
            }
        };
        let request = Request { explicit: routed.explicit, plain_read: false, replayed: None };
        // A function called this way may be nextval or currval, or call them, or create a temporary table.
        let effects =
            Effects { sequences: true, observes_sequences: true, calls_nextval: true, may_make_temp: true, ..Effects::default() };
        // It may as well write a cached table.
        let cache_use = self.cache_use(routed.target, None, None);
        self.run_request(routed.target, &request, Payload::Raw(&frame.bytes), &effects, cache_use).await
    }

    /// Before a Query or FunctionCall: false when it is not to run. After an error in a batch the client flushed,
    /// PostgreSQL ignores every message but Sync (no answer), and so does pgsplit: sent on, the message would wait
    /// forever for an answer the server never gives, and the client's Sync would never be read. Replies still due to
    /// the flushed batch are relayed first, to learn whether it failed. A transaction pgsplit failed on a bound
    /// connection is failed there first (its error answers the message).
    async fn ready_for_request(&mut self) -> Result<bool, SessionError> {
        let flushed = !self.machine.is_failed() && self.machine.conn().is_some_and(|c| c.replies_due() && !c.skipping());
        if flushed && !self.await_flushed().await? {
            return Ok(false);
        }
        if self.machine.conn().is_some_and(|c| c.skipping()) && self.server_skipping() {
            return Ok(false);
        }
        if self.machine.failed_bound() {
            if let Err(e) = self.fail_on_server().await {
                self.client.error_ready(&e, STATUS_FAILED);
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Relays what the server still owes the batch the client flushed (`relay::until_replied`). False when the
    /// connection was lost meanwhile (the client was told, and the session skips until Sync).
    async fn await_flushed(&mut self) -> Result<bool, SessionError> {
        let Some(target) = self.machine.held_target() else { return Ok(true) };
        let Start::Use(target, mut conn) = self.machine.start(target, &Request::default()) else { return Ok(true) };
        match relay::until_replied(&mut self.client, &mut conn).await {
            Ok(()) => {
                self.machine.flushed(conn);
                Ok(true)
            }
            Err(RelayError::Client(e)) => Err(self.client_left(target, conn, e)),
            Err(RelayError::Server(e)) if conn.holds_session() => Err(self.session_lost(target, conn, &e)),
            Err(RelayError::Server(e)) => {
                self.flush_lost(target, conn, &e);
                Ok(false)
            }
            Err(RelayError::Ended) => Err(self.server_ended(target, conn)),
        }
    }

    /// Answers what pgsplit handles itself; returns true when the statement was answered.
    fn local_command(&mut self, a: &Analysis, frame: &Frame) -> bool {
        let control = match &a.command {
            Command::Begin => Control::Begin(frame.bytes.clone()),
            Command::Holdable(tag) if a.hint.is_none() && self.target_hint.is_none() => Control::Hold(tag, frame.bytes.clone()),
            Command::Commit => Control::End(true),
            Command::Rollback => Control::End(false),
            // Only a failed transaction answers other statements itself (25P02).
            _ if self.machine.is_failed() => Control::Other,
            _ => return self.session_command(a),
        };
        if let Some(reply) = self.machine.local(control) {
            self.reply(reply);
            return true;
        }
        self.session_command(a)
    }

    /// Answers what changes only the session's own state (hint, statement names, settings); true when answered.
    fn session_command(&mut self, a: &Analysis) -> bool {
        let status = self.machine.status();
        match &a.command {
            Command::SetTarget(name) => match self.app.table().target_id(name) {
                Some(t) => {
                    self.target_hint = Some(t);
                    self.client.complete_ready("SET", status);
                }
                None => self.refuse(errors::route(RouteError::UnknownTarget(name.clone()))),
            },
            Command::Deallocate(None) if !self.machine.pinned() => {
                self.statements.clear();
                self.client.complete_ready("DEALLOCATE ALL", status);
            }
            Command::Deallocate(Some(name)) if !self.session_pooled && self.statements.remove(name).is_some() => {
                self.client.complete_ready("DEALLOCATE", status);
            }
            Command::DiscardAll if !self.machine.pinned() && self.machine.idle() => {
                // Nothing of this client lives on a server connection: DISCARD ALL is its names and settings.
                self.statements.clear();
                self.params.discard_all();
                self.params_changed();
                self.client.complete_ready("DISCARD ALL", STATUS_IDLE);
            }
            Command::ResetTarget => {
                self.target_hint = None;
                self.client.complete_ready("RESET", status);
            }
            _ => return false,
        }
        true
    }
}
