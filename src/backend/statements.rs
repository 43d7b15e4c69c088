//! What a session may ask of a server connection besides an exchange: its state from the last ReadyForQuery, the
//! session parameters and statements pgsplit left on it, the replies queued for a batch, and retiring it.

use std::sync::Arc;

use bytes::Bytes;

use crate::protocol::expect::Expect;
use crate::protocol::{STATUS_IDLE, STATUS_IN_TX};

use super::{Outcome, ServerConn};

/// Server-side statements kept per connection; past this the oldest-found one is closed to make room.
const MAX_PREPARED_PER_CONN: usize = 1000;

impl ServerConn {
    /// Status byte of the last ReadyForQuery (`I`, `T`, `E`).
    #[inline]
    pub fn status(&self) -> u8 {
        self.status
    }

    /// The server's BackendKeyData, to forward cancels.
    #[inline]
    pub fn key(&self) -> Option<(i32, i32)> {
        self.key
    }

    /// The notices the server sent while the connection logged in, once: the first client to use it gets them, as
    /// a direct connection's client gets them at its start.
    #[inline]
    pub fn take_login_notices(&mut self) -> Option<bytes::BytesMut> {
        (!self.login_notices.is_empty()).then(|| std::mem::take(&mut self.login_notices))
    }

    /// ParameterStatus values the server reported at login, in arrival order.
    #[inline]
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// Whether the connection runs over TLS.
    #[inline]
    pub fn is_tls(&self) -> bool {
        self.stream.is_tls()
    }

    /// When it was opened, for `max_lifetime`.
    #[inline]
    pub fn created(&self) -> std::time::Instant {
        self.created
    }

    /// A transaction pooler is in front (named statements are not kept on it).
    #[inline]
    pub fn upstream_pooler(&self) -> bool {
        self.upstream_pooler
    }

    /// What the last relayed exchange ended with.
    #[inline]
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// The server reported an error in an extended-protocol batch and skips every message until the next Sync.
    #[inline]
    pub fn skipping(&self) -> bool {
        self.skipping
    }

    /// Whether replies to messages of a flushed batch are still due (the server may yet report an error in it).
    #[inline]
    pub fn replies_due(&self) -> bool {
        !self.expect.is_empty()
    }

    /// Whether the server session may hold sequence state (`currval`, `lastval`) of a session other than `session`
    /// (see `sequences_of`).
    #[inline]
    pub fn sequences_foreign_to(&self, session: u64) -> bool {
        self.sequences_of != 0 && self.sequences_of != session
    }

    /// A request of `session` may have called nextval or setval here: the state is that session's, or mixed when
    /// another session's may be there too.
    #[inline]
    pub fn sequences_touched_by(&mut self, session: u64) {
        if self.sequences_of != session {
            self.sequences_of = if self.sequences_of == 0 { session } else { SEQUENCES_MIXED };
        }
    }

    /// The server session's sequence state is gone (`DISCARD ALL`).
    #[inline]
    pub fn sequences_discarded(&mut self) {
        self.sequences_of = 0;
    }

    /// Session parameters pgsplit has SET on this connection (name → SQL value text).
    #[inline]
    pub fn applied(&self) -> &crate::session::Settings {
        &self.applied
    }

    /// The same, to record what was just SET or reset.
    #[inline]
    pub fn applied_mut(&mut self) -> &mut crate::session::Settings {
        &mut self.applied
    }

    /// Whether pgsplit opened the server transaction around an autocommit request (see `session::pooler`).
    #[inline]
    pub fn wrapped(&self) -> bool {
        self.wrapped
    }

    /// The target's name.
    #[inline]
    pub fn target_name(&self) -> &str {
        &self.target
    }

    /// See `set_holds_session`.
    #[inline]
    pub fn holds_session(&self) -> bool {
        self.holds_session
    }

    /// Whether a FATAL from the server during the next exchanges ends the client's session too (see
    /// `ServerConn::holds_session`).
    #[inline]
    pub fn set_holds_session(&mut self, holds: bool) {
        self.holds_session = holds;
    }

    /// pgsplit opens (true) or has ended (false) its own transaction around an autocommit request.
    #[inline]
    pub fn set_wrapped(&mut self, wrapped: bool) {
        self.wrapped = wrapped;
    }

    /// The first ErrorResponse of a replay whose replies were discarded, whole; taken once.
    #[inline]
    pub fn take_discarded_error(&mut self) -> Option<Bytes> {
        self.discarded_error.take()
    }

    /// Records what the exchange pgsplit ran on its own ended with, for the client's request it stood for.
    #[inline]
    pub fn set_outcome(&mut self, outcome: Outcome) {
        self.outcome = outcome;
    }

    /// A batch was sent with Flush: until its Sync's ReadyForQuery the connection is mid-exchange, never idle.
    #[inline]
    pub fn mid_batch(&mut self) {
        self.status = STATUS_IN_TX;
    }

    /// The session no longer knows the connection's state (settings not applied, a rollback that failed, what a
    /// pinned session left on it): it is closed when returned, never reused.
    #[inline]
    pub fn retire(&mut self) {
        self.broken = true;
    }

    /// Whether the connection may serve another client: its last exchange completed at ReadyForQuery idle, with no
    /// reply still due and no error being skipped, and nobody retired it.
    #[inline]
    pub fn reusable(&self) -> bool {
        !self.broken && self.status == STATUS_IDLE && self.expect.is_empty() && !self.skipping
    }

    /// Every statement pgsplit prepared on the connection is gone (`DEALLOCATE ALL`, `DISCARD ALL`).
    #[inline]
    pub fn forget_prepared(&mut self) {
        self.prepared.clear();
    }

    /// Whether the server-side statement `name` exists on the connection, made from this Parse body.
    #[inline]
    pub fn has_prepared(&self, name: &str, parse_body: &Bytes) -> bool {
        self.prepared.get(name).is_some_and(|(body, _)| body == parse_body)
    }

    /// The shape of the result row of the statement `name` here, when known.
    #[inline]
    pub fn shape_here(&self, name: &str) -> Option<u64> {
        self.prepared.get(name).and_then(|(_, shape)| shape.get().copied())
    }

    /// Records that the batch being sent prepares `name` from `parse_body`; `shape` is (or will be) its result
    /// row's.
    #[inline]
    pub fn prepared_here(&mut self, name: Arc<str>, parse_body: Bytes, shape: super::Shape) {
        self.prepared.insert(name, (parse_body, shape));
    }

    /// Before preparing `name`: the statement to close first, if any — a stale one under the same name (a hash
    /// collision), else one to keep the connection's cache within `MAX_PREPARED_PER_CONN`. It is forgotten here.
    #[inline]
    pub fn make_room_for(&mut self, name: &Arc<str>) -> Option<Arc<str>> {
        let stale = self.prepared.contains_key(name).then(|| name.clone());
        let victim = stale
            .or_else(|| (self.prepared.len() >= MAX_PREPARED_PER_CONN).then(|| self.prepared.keys().next().cloned()).flatten());
        if let Some(v) = &victim {
            self.prepared.remove(v);
        }
        victim
    }

    /// Queues the reply the next message of the batch being written will get (see `protocol::expect`).
    #[inline]
    pub fn expect(&mut self, reply: Expect) {
        self.expect.push_back(reply);
    }
}

/// `ServerConn::sequences_of` when more than one session's sequence state may be in the server session.
const SEQUENCES_MIXED: u64 = u64::MAX;
