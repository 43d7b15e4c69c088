//! The session's semantics as one I/O-free state machine: where the client's transaction stands, which server
//! connection it holds, and what the session does next. The async driver (`state`, `query`, `extended`) feeds it
//! events and carries out what it answers; nothing here reads a socket, so every transition is tested on its own
//! (`tests.rs`, with a fake connection) and under random event sequences.
//!
//! The machine is generic over the connection it holds (`Conn`): in the proxy a pooled server connection, in the
//! tests a status byte. A connection is held exactly in the states that name one; it leaves the machine only to be
//! used for an exchange (`Start::Use`, `Start::Checkout`'s `moved_from`, `FailOn`) or returned (`Some(conn)` from `ready`), and the
//! machine returns one only after a ReadyForQuery `I`.
//!
//! # States
//!
//! | state       | meaning                                                                   | holds a connection |
//! |-------------|---------------------------------------------------------------------------|--------------------|
//! | `Idle`      | no transaction                                                            | no                 |
//! | `Deferred`  | BEGIN answered by pgsplit; no statement chose a target yet                | no                 |
//! | `Tentative` | deferred transaction bound to a target only because a plain read needed one | yes              |
//! | `Bound`     | a transaction (or a flushed, unsynced batch) is open on a server          | yes                |
//! | `Failed`    | pgsplit refused a statement inside the transaction                        | if it had bound    |
//! | `Waiting`   | a checkout for a request is under way                                     | no                 |
//! | `Running`   | a request is on a server; its ReadyForQuery settles the state             | out, in the driver |
//!
//! Beside the state, `skipping`: an error was sent for a flushed part of an extended batch, and the client's
//! messages are skipped until its Sync (as PostgreSQL skips them). `single`: the routing mode of the current
//! transaction, taken from the App only in `Idle`.
//!
//! # Transitions
//!
//! | from                 | event                                   | to                              | out (to the driver)                     |
//! |----------------------|-----------------------------------------|---------------------------------|-----------------------------------------|
//! | `Idle`               | `local(Begin)`                          | `Deferred`                      | BEGIN, ReadyForQuery `T`                |
//! | `Deferred`           | `local(Hold)` (SAVEPOINT, SET LOCAL, …) | `Deferred` (held += statement)  | its tag, `T`                            |
//! | `Deferred`           | `local(Begin)`                          | `Deferred`                      | WARNING 25001, BEGIN, `T`               |
//! | `Deferred`           | `local(End)` (COMMIT/ROLLBACK)           | `Idle`                          | its tag, `I`                            |
//! | `Failed` (unbound)   | `local(End)`                            | `Idle`                          | ROLLBACK, `I`                           |
//! | `Failed` (unbound)   | `local(_)`                              | `Failed`                        | 25P02, `E`                              |
//! | any                  | `refuse` (routing error)                | `Idle`→`Idle`, else `Failed`    | the error, status                       |
//! | `Idle`               | `start(t)`                              | `Waiting(t)`                    | `Checkout`, no prelude                  |
//! | `Deferred`           | `start(t)`                              | `Waiting(t)`                    | `Checkout`, prelude BEGIN + held        |
//! | `Bound(t)`           | `start(t)`                              | `Running(t)`                    | `Use(conn)`                             |
//! | `Tentative(t)`       | `start(t)`                              | `Running(t)`                    | `Use(conn)`; stays tentative if a plain read or (unhinted) held statement, else firm |
//! | `Tentative(t)`       | `start(u≠t)` (statement chose `u`)      | `Waiting(u)`                    | `Checkout`, prelude the replay; roll back on `t` and return it first |
//! | `Failed` (bound)     | `start(_)`                              | `Running(t)`                    | `Use(conn)`: the server answers 25P02   |
//! | `Failed` (unbound)   | `start(_)`                              | `Failed`                        | `Answer` 25P02                          |
//! | `Waiting(t)`         | `checked_out(conn)`                     | `Running(t)`                    | —                                       |
//! | `Waiting(t)`         | `checkout_failed`                       | `Idle` / `Failed` if deferred   | the error, status                       |
//! | `Running(t)`         | `ready(conn, I)`                        | `Idle`                          | the connection, to return               |
//! | `Running(t)`         | `ready(conn, T/E)`                      | `Bound(t)` or `Tentative(t)`    | —                                       |
//! | `Running(t)`         | `flushed(conn)` (batch sent with Flush) | `Bound(t)`                      | —                                       |
//! | `Running(t)`         | `lost`                                  | `Idle`                          | 08006 and `I` (connection closed)       |
//! | `Running(t)`, the transaction or a pin on `t` | `lost`, or the server's FATAL | — (the session ends) | the server's FATAL as it is, or FATAL 08006: what lived there is gone, as on a direct connection |
//! | `Failed` (bound)     | `take_failed`                           | `Running(t)`                    | `FailOn { conn }`: make it fail there   |
//! | `Failed` (unbound)   | `take_failed`                           | `Running(default)`              | `FailOn { no conn }`                    |
//! | `Running(t)`         | `failed_on_server(Failed)`              | `Bound(t)` (server status `E`)  | —                                       |
//! | `Running(t)`         | `failed_on_server(Ended)`               | `Idle`                          | the connection, to return               |
//! | `Running(t)`         | `failed_on_server(Lost)`                | `Failed` (unbound)              | 08006                                   |
//! | `Tentative(t)`       | `firm` (an extended batch)              | `Bound(t)`                      | —                                       |
//! | any                  | `refuse_before_sync`                    | as `refuse`, `skipping`         | the error only (no ReadyForQuery)       |
//! | `skipping`           | `sync_skipped`                          | not skipping                    | `FailOn` if bound-failed; then ReadyForQuery |
//!
//! # Pins
//!
//! Beside the transaction, the targets whose connection the session keeps (`pin`, after a statement that leaves
//! state only that connection has: LISTEN, temporary tables, session advisory locks, SQL PREPARE, ...):
//!
//! | connection released (`release`)      | pinned target?  | goes                                           |
//! |--------------------------------------|-----------------|------------------------------------------------|
//! | any                                  | no              | `Pool`: back to the pool (closed unless reusable) |
//! | reusable (idle, nothing pending)     | yes             | `Pinned`: into the pin slot, used by the next request for that target |
//! | not reusable                         | yes             | `Unpinned`: closed; the target is no longer pinned |
//!
//! # COPY
//!
//! COPY runs inside `Running`, within the one exchange the relay carries out for the request; its transitions are
//! `copy.rs`'s, which the relay asks for every message:
//!
//! | phase   | message                                          | to      | out                                        |
//! |---------|--------------------------------------------------|---------|--------------------------------------------|
//! | any     | server CopyInResponse                            | `In`    | relayed; the client's messages are read    |
//! | any     | server CopyOutResponse                           | `Out`   | relayed, then its CopyData like any reply  |
//! | `Out`   | server CopyDone                                  | `None`  | relayed                                    |
//! | any     | server ErrorResponse, ReadyForQuery              | `None`  | relayed (the server ended the COPY)        |
//! | any     | server CopyBothResponse (replication only)       | —       | the connection is closed, 08006 to the client |
//! | `In`    | client CopyData, Sync, Flush                     | `In`    | to the server (it ignores Sync and Flush in COPY) |
//! | `In`    | client CopyDone, CopyFail, anything else         | `None`  | to the server, which ends the COPY (08P01 for anything else); its replies are relayed |
//! | `In`    | the client goes away                             | —       | the connection is closed (the server ends the COPY as if its client left) |
//! | no COPY | client CopyData, CopyDone, CopyFail              | same    | ignored, as PostgreSQL ignores them        |
//!
//! # Cancel
//!
//! A CancelRequest arrives on another connection with the session's key; what it does depends on the state
//! (`cancel`), which the driver publishes where the cancel finds it (`Session::in_flight`):
//!
//! | state                 | cancel                                                                      |
//! |-----------------------|-----------------------------------------------------------------------------|
//! | `Waiting(t)`          | the wait for a connection ends: `checkout_failed`, 57014 to the client       |
//! | `Running(t)`          | CancelRequest to `t`'s server with its connection's key; the server's 57014 and ReadyForQuery settle the state as usual |
//! | any other             | nothing runs: ignored, as PostgreSQL ignores it                             |
//!
//! # Admin console
//!
//! A console session has no transaction and no server; `console.rs` is its machine:
//!
//! | skipping | message                                              | to        | out                                   |
//! |----------|------------------------------------------------------|-----------|---------------------------------------|
//! | no       | Query                                                | no        | the commands' answers, error, `I`     |
//! | no       | Parse, Bind, Describe, Execute, Close, Flush          | yes       | 0A000 (simple protocol only)          |
//! | yes      | Query, Parse, Bind, Describe, Execute, Close, Flush   | yes       | nothing                               |
//! | any      | Sync                                                 | no        | ReadyForQuery `I`                     |
//! | any      | CopyData, CopyDone, CopyFail                         | same      | nothing                               |
//! | any      | Terminate                                            | —         | the session ends                      |
//! | any      | anything else                                        | —         | FATAL 08P01, the session ends         |
//!
//! Everything else (a SET pgsplit.target, DEALLOCATE, DISCARD ALL answered locally, prepared statements,
//! parameters) changes no state here; the driver answers it with `status()`.

use bytes::Bytes;

use crate::protocol::encode::PgError;
use crate::protocol::{STATUS_FAILED, STATUS_IDLE, STATUS_IN_TX};
use crate::router::TargetId;

use super::errors;

pub mod console;
pub mod copy;
#[cfg(test)]
mod tests;

/// A server connection as the machine sees it: its transaction status from the last ReadyForQuery, and whether it
/// may serve again.
pub trait Conn {
    /// `I`, `T` or `E`.
    fn status(&self) -> u8;
    /// Idle with nothing pending and not broken: it may go back to a pool or a pin slot.
    fn reusable(&self) -> bool;
}

/// Where the client's transaction stands (the table of the module doc).
enum Tx<C> {
    Idle,
    Deferred {
        begin: Bytes,
        held: Vec<Bytes>,
    },
    Tentative {
        target: TargetId,
        conn: C,
        replay: Vec<Bytes>,
    },
    Bound {
        target: TargetId,
        conn: C,
    },
    Failed {
        bound: Option<(TargetId, C)>,
    },
    /// `Waiting` (no connection yet: `waiting`) or `Running`: one variant, so that a checkout that succeeds only
    /// flips `waiting` in place.
    InFlight {
        target: TargetId,
        waiting: bool,
        deferred: bool,
        then: Then,
    },
}

/// What a request in flight becomes once its server answers with a transaction open.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Then {
    /// A transaction bound for good.
    Firm,
    /// Bound tentatively by a plain read; these Query messages are replayed if the transaction moves.
    Tentative(Vec<Bytes>),
}

/// Transaction control pgsplit may answer itself, as the driver classified a statement.
#[derive(Debug, Clone)]
pub enum Control {
    /// BEGIN / START TRANSACTION (the Query message, replayed where the transaction binds).
    Begin(Bytes),
    /// A statement a deferred transaction holds (SAVEPOINT, RELEASE, ROLLBACK TO, SET LOCAL): tag and message.
    Hold(&'static str, Bytes),
    /// COMMIT (true) or ROLLBACK (false).
    End(bool),
    /// Anything else.
    Other,
}

/// What the driver sends the client for a request answered without a server.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// CommandComplete with this tag (after a WARNING 25001 when `notice`), then ReadyForQuery with `status`.
    Complete { tag: &'static str, notice: bool, status: u8 },
    /// An ErrorResponse, then ReadyForQuery with `status`.
    Error { error: PgError, status: u8 },
}

/// What a request (a Query, or an extended batch) is, for the transitions that depend on it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Its statement chose the target (relations, hint) rather than following the session.
    pub explicit: bool,
    /// A read that leaves nothing behind (see `query::plain_read`): it may bind a deferred transaction tentatively.
    pub plain_read: bool,
    /// A statement a tentative transaction replays if it moves (a held statement run on the tentative target).
    pub replayed: Option<Bytes>,
}

/// How the driver starts a request on `target`.
#[derive(Debug)]
pub enum Start<C> {
    /// Check a connection out of the target's pool (or the session's pin), send `prelude` then the request.
    Checkout {
        /// The target.
        target: TargetId,
        /// Query messages to replay first (a deferred BEGIN and what was held); their answers were given already.
        prelude: Vec<Bytes>,
        /// A tentative transaction moves here: first roll it back on this connection and return it.
        moved_from: Option<(TargetId, C)>,
    },
    /// Send the request on this connection (bound to `target`).
    Use(TargetId, C),
    /// Answer without a server.
    Answer(Reply),
}

/// What a transaction pgsplit failed needs to fail on a server too (see `Session::fail_on_server`).
#[derive(Debug)]
pub enum FailOn<C> {
    /// The transaction's own connection.
    Bound(TargetId, C),
    /// It never bound: a connection of the fallback target, with a BEGIN first.
    Unbound,
}

/// How making a transaction fail on a server ended.
#[derive(Debug)]
pub enum Failing<C> {
    /// The server's transaction failed too (status `E`): it answers what follows.
    Failed(TargetId, C),
    /// The implicit transaction of a flushed batch ended, rolled back: the connection is idle and clean.
    Ended(C),
    /// The connection is gone (or the statement did not fail as expected); the driver closed it.
    Lost,
}

/// The state machine of one client session (see the module doc).
pub struct Machine<C> {
    tx: Tx<C>,
    skipping: bool,
    single: bool,
    /// Targets whose server connection the session keeps (LISTEN, temporary tables, session advisory locks, ...),
    /// with the connection while no request uses it. Usually empty.
    pins: Vec<(TargetId, Option<C>)>,
}

/// What a client's CancelRequest does to the session now (the table "Cancel" of the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    /// Nothing runs: ignored.
    Nothing,
    /// The request waits for a server connection: the wait ends (57014).
    EndWait,
    /// The request runs on this target: the cancel goes to its server.
    Server(TargetId),
}

/// Where a connection the session is done with goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Release<C> {
    /// Back to its target's pool (closed there unless reusable).
    Pool(C),
    /// Into the session's pin slot for its target: nothing to do.
    Pinned,
    /// A pinned connection that is no longer reusable: closed, and the session is unpinned from its target
    /// (`last`: it was the session's last pin).
    Unpinned {
        /// The connection, to close.
        conn: C,
        /// No pin is left.
        last: bool,
    },
}

impl<C: Conn> Machine<C> {
    /// A session in `Idle`, routing in the given mode.
    pub fn new(single: bool) -> Machine<C> {
        Machine { tx: Tx::Idle, skipping: false, single, pins: Vec::new() }
    }

    /// Takes the state out, leaving the placeholder `Idle` (which owns nothing) until `put`.
    #[inline]
    fn take(&mut self) -> Tx<C> {
        std::mem::replace(&mut self.tx, Tx::Idle)
    }

    /// Sets the state. Over the placeholder `Idle` nothing is dropped: no drop glue on the hot path.
    #[inline]
    fn put(&mut self, tx: Tx<C>) {
        match std::mem::replace(&mut self.tx, tx) {
            Tx::Idle => {}
            old => drop(old),
        }
    }

    /// The status byte of ReadyForQuery now.
    #[inline]
    pub fn status(&self) -> u8 {
        match &self.tx {
            Tx::Idle => STATUS_IDLE,
            Tx::Deferred { .. } | Tx::InFlight { .. } => STATUS_IN_TX,
            Tx::Tentative { conn, .. } | Tx::Bound { conn, .. } => conn.status(),
            Tx::Failed { .. } => STATUS_FAILED,
        }
    }

    /// The session's routing mode for this transaction (single: everything to the single target).
    #[inline]
    pub fn single(&self) -> bool {
        self.single
    }

    /// Between transactions the session takes the mode in force: a switch applies from its next transaction.
    #[inline]
    pub fn follow_mode(&mut self, single: bool) {
        if matches!(self.tx, Tx::Idle) {
            self.single = single;
        }
    }

    /// The transaction's server target and status when it holds a connection, and whether the binding is tentative.
    #[inline]
    pub fn binding(&self) -> Option<Binding> {
        match &self.tx {
            Tx::Bound { target, conn } => Some(Binding { target: *target, status: conn.status(), tentative: false }),
            Tx::Tentative { target, conn, .. } => Some(Binding { target: *target, status: conn.status(), tentative: true }),
            _ => None,
        }
    }

    /// The target whose connection the transaction holds (bound, tentatively bound, or failed after binding).
    #[inline]
    pub fn held_target(&self) -> Option<TargetId> {
        match &self.tx {
            Tx::Bound { target, .. } | Tx::Tentative { target, .. } | Tx::Failed { bound: Some((target, _)) } => Some(*target),
            _ => None,
        }
    }

    /// The connection the transaction holds, if any (to read its state, never to exchange on it).
    #[inline]
    pub fn conn(&self) -> Option<&C> {
        match &self.tx {
            Tx::Bound { conn, .. } | Tx::Tentative { conn, .. } | Tx::Failed { bound: Some((_, conn)) } => Some(conn),
            _ => None,
        }
    }

    /// Whether a plain read could bind the transaction tentatively (only then is a text checked for one).
    #[inline]
    pub fn asks_plain_read(&self) -> bool {
        matches!(self.tx, Tx::Deferred { .. } | Tx::Tentative { .. })
    }

    /// Whether no transaction is open.
    #[inline]
    pub fn idle(&self) -> bool {
        matches!(self.tx, Tx::Idle)
    }

    /// Whether no transaction has bound to a server yet (none is open, or one is deferred).
    pub fn idle_or_deferred(&self) -> bool {
        matches!(self.tx, Tx::Idle | Tx::Deferred { .. })
    }

    /// Whether nothing of the client's is open: no transaction, no batch being skipped.
    pub fn at_rest(&self) -> bool {
        matches!(self.tx, Tx::Idle) && !self.skipping
    }

    /// Whether a transaction was failed by pgsplit (bound or not).
    #[inline]
    pub fn is_failed(&self) -> bool {
        matches!(self.tx, Tx::Failed { .. })
    }

    /// Whether the failed transaction holds a connection (it is made to fail there before the next message).
    #[inline]
    pub fn failed_bound(&self) -> bool {
        matches!(self.tx, Tx::Failed { bound: Some(_) })
    }

    /// What a CancelRequest for the session does now.
    #[inline]
    pub fn cancel(&self) -> Cancel {
        match &self.tx {
            Tx::InFlight { waiting: true, .. } => Cancel::EndWait,
            Tx::InFlight { target, waiting: false, .. } => Cancel::Server(*target),
            _ => Cancel::Nothing,
        }
    }

    /// Whether the client's messages are skipped until its Sync.
    #[inline]
    pub fn skipping(&self) -> bool {
        self.skipping
    }

    /// Transaction control answered without a server; `None` when the statement needs one after all.
    #[inline]
    pub fn local(&mut self, control: Control) -> Option<Reply> {
        // Most statements are none of these: answered `None` without moving the state.
        let applies = matches!(
            (&self.tx, &control),
            (Tx::Idle, Control::Begin(_))
                | (Tx::Deferred { .. }, Control::Begin(_) | Control::Hold(..) | Control::End(_))
                | (Tx::Failed { bound: None }, _)
        );
        if !applies {
            return None;
        }
        let tx = self.take();
        let (tx, reply) = match (tx, control) {
            (Tx::Idle, Control::Begin(begin)) => {
                (Tx::Deferred { begin, held: Vec::new() }, complete("BEGIN", false, STATUS_IN_TX))
            }
            (Tx::Deferred { begin, mut held }, Control::Hold(tag, q)) => {
                held.push(q);
                (Tx::Deferred { begin, held }, complete(tag, false, STATUS_IN_TX))
            }
            (tx @ Tx::Deferred { .. }, Control::Begin(_)) => (tx, complete("BEGIN", true, STATUS_IN_TX)),
            (Tx::Deferred { .. }, Control::End(commit)) => {
                (Tx::Idle, complete(if commit { "COMMIT" } else { "ROLLBACK" }, false, STATUS_IDLE))
            }
            // PostgreSQL answers COMMIT of a failed transaction with ROLLBACK.
            (Tx::Failed { bound: None }, Control::End(_)) => (Tx::Idle, complete("ROLLBACK", false, STATUS_IDLE)),
            (tx @ Tx::Failed { bound: None }, _) => {
                (tx, Reply::Error { error: errors::in_failed_transaction(), status: STATUS_FAILED })
            }
            (tx, _) => {
                self.put(tx);
                return None;
            }
        };
        self.put(tx);
        Some(reply)
    }

    /// A statement pgsplit refuses: inside a transaction the transaction fails, as PostgreSQL would fail it.
    /// Returns the status of the ReadyForQuery that follows the error.
    pub fn refuse(&mut self) -> u8 {
        let failed = match self.take() {
            Tx::Idle => Tx::Idle,
            Tx::Bound { target, conn } | Tx::Tentative { target, conn, .. } => Tx::Failed { bound: Some((target, conn)) },
            Tx::Failed { bound } => Tx::Failed { bound },
            Tx::Deferred { .. } | Tx::InFlight { .. } => Tx::Failed { bound: None },
        };
        self.put(failed);
        self.status()
    }

    /// A refusal of part of an extended batch flushed before its Sync: the transaction fails as after `refuse`, and
    /// the client's messages are skipped until its Sync, whose ReadyForQuery comes from `sync_skipped`.
    pub fn refuse_before_sync(&mut self) {
        self.refuse();
        self.skipping = true;
    }

    /// A statement held since BEGIN failed when replayed on the transaction's server: the rest of the flushed batch
    /// is skipped until Sync (the server skips it too).
    pub fn skip_until_sync(&mut self) {
        self.skipping = true;
    }

    /// The Sync that ends a skipped batch: skipping stops. `Some` when a bound failed transaction must first fail
    /// on its server (the driver then calls `failed_on_server`); ReadyForQuery follows with `status()`.
    pub fn sync_skipped(&mut self) -> bool {
        self.skipping = false;
        self.failed_bound()
    }

    /// A tentative binding becomes firm (an extended batch runs on it).
    pub fn firm(&mut self) {
        if matches!(self.tx, Tx::Tentative { .. }) {
            if let Tx::Tentative { target, conn, .. } = self.take() {
                self.put(Tx::Bound { target, conn });
            }
        }
    }

    /// Starts a request on `target` (as `route` chose it, checked against the binding).
    #[inline]
    pub fn start(&mut self, target: TargetId, request: &Request) -> Start<C> {
        if let Tx::Idle = self.tx {
            // Every autocommit request: `Idle` owns nothing, so it is overwritten in place (no take, no drop glue).
            self.tx = Tx::InFlight { target, waiting: true, deferred: false, then: Then::Firm };
            return Start::Checkout { target, prelude: Vec::new(), moved_from: None };
        }
        match self.take() {
            // Answered above; kept whole so that the match covers every state.
            Tx::Idle => {
                self.put(Tx::InFlight { target, waiting: true, deferred: false, then: Then::Firm });
                Start::Checkout { target, prelude: Vec::new(), moved_from: None }
            }
            Tx::Deferred { begin, held } => self.start_deferred(target, request, begin, held, None),
            Tx::Tentative { target: t, conn, mut replay } if t != target && request.explicit => {
                let held = replay.split_off(1.min(replay.len()));
                let begin = replay.pop().unwrap_or_default();
                self.start_deferred(target, request, begin, held, Some((t, conn)))
            }
            Tx::Tentative { target: t, conn, mut replay } => {
                let stays = match &request.replayed {
                    Some(q) if !request.explicit => {
                        replay.push(q.clone());
                        true
                    }
                    _ => request.plain_read && !request.explicit,
                };
                self.put(running(t, if stays { Then::Tentative(replay) } else { Then::Firm }));
                Start::Use(t, conn)
            }
            Tx::Bound { target: t, conn } | Tx::Failed { bound: Some((t, conn)) } => {
                self.put(running(t, Then::Firm));
                Start::Use(t, conn)
            }
            tx @ Tx::Failed { bound: None } => {
                self.put(tx);
                Start::Answer(Reply::Error { error: errors::in_failed_transaction(), status: STATUS_FAILED })
            }
            tx @ Tx::InFlight { .. } => {
                // A request while another is in flight cannot happen (the driver awaits each); refuse it safely.
                self.put(tx);
                Start::Answer(Reply::Error { error: errors::request_in_flight(), status: STATUS_FAILED })
            }
        }
    }

    /// A deferred transaction binds with this request: BEGIN and what was held are replayed first; a plain read
    /// binds it only tentatively.
    #[inline]
    fn start_deferred(
        &mut self,
        target: TargetId,
        request: &Request,
        begin: Bytes,
        held: Vec<Bytes>,
        moved_from: Option<(TargetId, C)>,
    ) -> Start<C> {
        let prelude: Vec<Bytes> = std::iter::once(begin).chain(held).collect();
        let then = if request.plain_read && !request.explicit { Then::Tentative(prelude.clone()) } else { Then::Firm };
        self.put(Tx::InFlight { target, waiting: true, deferred: true, then });
        Start::Checkout { target, prelude, moved_from }
    }

    /// The connection for a `Start::Checkout`: the request runs on it.
    #[inline]
    pub fn checked_out(&mut self) {
        if let Tx::InFlight { waiting, .. } = &mut self.tx {
            *waiting = false;
        }
    }

    /// No connection for a `Start::Checkout`: a deferred transaction fails (as a refused statement fails it), an
    /// autocommit request just errs. Returns the status for the ReadyForQuery after the error.
    pub fn checkout_failed(&mut self) -> u8 {
        let deferred = matches!(self.tx, Tx::InFlight { waiting: true, deferred: true, .. });
        self.put(if deferred { Tx::Failed { bound: None } } else { Tx::Idle });
        self.status()
    }

    /// The server's ReadyForQuery ended the request on `conn`: `Some(conn)` to return when the server is idle.
    #[inline]
    pub fn ready(&mut self, conn: C) -> Option<C> {
        let (target, then) = match self.take() {
            Tx::InFlight { target, then, .. } => (target, then),
            _ => return Some(conn),
        };
        if conn.status() == STATUS_IDLE {
            return Some(conn);
        }
        self.put(match then {
            Then::Firm => Tx::Bound { target, conn },
            Then::Tentative(replay) => Tx::Tentative { target, conn, replay },
        });
        None
    }

    /// A batch was sent with Flush (no Sync yet): the connection stays bound, mid-exchange, until the Sync.
    pub fn flushed(&mut self, conn: C) {
        let target = match &self.tx {
            Tx::InFlight { target, .. } => *target,
            _ => return,
        };
        self.put(Tx::Bound { target, conn });
    }

    /// The server connection failed mid-request (the driver closes it): the transaction is gone with it.
    pub fn lost(&mut self) {
        self.put(Tx::Idle);
    }

    /// A transaction pgsplit failed, to be failed on a server too; `None` when it is not failed.
    pub fn take_failed(&mut self, fallback: TargetId) -> Option<FailOn<C>> {
        match self.take() {
            Tx::Failed { bound: Some((target, conn)) } => {
                self.put(running(target, Then::Firm));
                Some(FailOn::Bound(target, conn))
            }
            Tx::Failed { bound: None } => {
                self.put(running(fallback, Then::Firm));
                Some(FailOn::Unbound)
            }
            tx => {
                self.put(tx);
                None
            }
        }
    }

    /// How failing the transaction on a server ended; `Some(conn)` to return.
    pub fn failed_on_server(&mut self, failing: Failing<C>) -> Option<C> {
        match failing {
            Failing::Failed(target, conn) => {
                self.put(Tx::Bound { target, conn });
                None
            }
            Failing::Ended(conn) => {
                self.put(Tx::Idle);
                Some(conn)
            }
            Failing::Lost => {
                self.put(Tx::Failed { bound: None });
                None
            }
        }
    }

    /// Keeps the connection of `target` for the rest of the session; true when the target was not pinned yet
    /// (`first` in the second place: the session had no pin before).
    pub fn pin(&mut self, target: TargetId) -> (bool, bool) {
        let first = self.pins.is_empty();
        if self.pins.iter().any(|(t, _)| *t == target) {
            return (false, false);
        }
        self.pins.push((target, None));
        (true, first)
    }

    /// Whether the session keeps the connection of `target`.
    #[inline]
    pub fn pinned_to(&self, target: TargetId) -> bool {
        self.pins.iter().any(|(t, _)| *t == target)
    }

    /// Whether the session keeps any connection.
    #[inline]
    pub fn pinned(&self) -> bool {
        !self.pins.is_empty()
    }

    /// The pinned connection of `target`, for a request (it comes back through `release`).
    #[inline]
    pub fn take_pinned(&mut self, target: TargetId) -> Option<C> {
        self.pins.iter_mut().find(|(t, _)| *t == target).and_then(|(_, c)| c.take())
    }

    /// A connection the session is done with (after a request, a failed setting, a moved transaction).
    #[inline]
    pub fn release(&mut self, target: TargetId, conn: C) -> Release<C> {
        let Some(i) = self.pins.iter().position(|(t, _)| *t == target) else { return Release::Pool(conn) };
        if conn.reusable() {
            if let Some((_, slot)) = self.pins.get_mut(i) {
                *slot = Some(conn);
            }
            return Release::Pinned;
        }
        // A broken pinned connection loses what was pinned to it; the session goes on unpinned from it.
        self.pins.remove(i);
        Release::Unpinned { conn, last: self.pins.is_empty() }
    }

    /// The pinned connections idle between requests (their notifications are relayed while the client is quiet).
    #[inline]
    pub fn pinned_idle(&mut self) -> impl Iterator<Item = &mut C> {
        self.pins.iter_mut().filter_map(|(_, c)| c.as_mut())
    }

    /// Drops the idle pinned connections `gone` says are gone (the target stays pinned: its next request gets a
    /// new connection, kept as well).
    pub fn drop_pinned_if(&mut self, gone: impl Fn(&C) -> bool) {
        for (_, slot) in &mut self.pins {
            slot.take_if(|c| gone(c));
        }
    }

    /// The state's name, for tests.
    #[cfg(test)]
    pub fn state(&self) -> &'static str {
        match &self.tx {
            Tx::Idle => "Idle",
            Tx::Deferred { .. } => "Deferred",
            Tx::Tentative { .. } => "Tentative",
            Tx::Bound { .. } => "Bound",
            Tx::Failed { bound: Some(_) } => "Failed(bound)",
            Tx::Failed { bound: None } => "Failed",
            Tx::InFlight { waiting: true, .. } => "Waiting",
            Tx::InFlight { waiting: false, .. } => "Running",
        }
    }
}

/// A transaction's hold on a server target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    /// The target.
    pub target: TargetId,
    /// The connection's transaction status.
    pub status: u8,
    /// Bound by a plain read only: a statement choosing another target moves the transaction there.
    pub tentative: bool,
}

/// A request on its connection, settled by the server's ReadyForQuery.
fn running<C>(target: TargetId, then: Then) -> Tx<C> {
    Tx::InFlight { target, waiting: false, deferred: false, then }
}

fn complete(tag: &'static str, notice: bool, status: u8) -> Reply {
    Reply::Complete { tag, notice, status }
}
