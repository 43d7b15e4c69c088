//! Targets behind an upstream transaction pooler (SPEC §5, `upstream: transaction_pooler`): consecutive
//! transactions on one server connection may run on different PostgreSQL backends, so nothing may be left on a
//! backend between transactions.
//!
//! - Parameters the pooler tracks itself (`params::TRACKED_BY_POOLER`) are SET at session level as on a direct
//!   target; every other parameter of the client is applied with `SET LOCAL` at the start of each transaction.
//! - An explicit transaction gets them right after its replayed BEGIN. An autocommit request (a Query, or an
//!   extended batch up to its Sync) that needs them is wrapped: pgsplit sends `BEGIN` and the `SET LOCAL`s first,
//!   holds back the request's ReadyForQuery, ends the transaction itself (`COMMIT`, or `ROLLBACK` after an error),
//!   passes on a commit error, and answers ReadyForQuery idle — what a direct connection shows.
//! - A session-level change of an untracked parameter (`SET work_mem`, `set_config(..., false)`) is followed by
//!   the session as on a direct target, and reset on the server before its transaction commits.
//! - Texts that control transactions themselves or cannot run in a transaction block (`Analysis::own_transaction`)
//!   are never wrapped: they run without the untracked settings.
//! - Named prepared statements are never kept on the server (see `prepared`): each use parses anew, unnamed.
//!
//! Nothing here runs for a direct target, nor for a client without untracked settings.

use bytes::Bytes;

use crate::backend::relay::{self, RelayError};
use crate::backend::{BackendError, ServerConn};
use crate::protocol::{encode, STATUS_FAILED, STATUS_IDLE, STATUS_IN_TX};

use super::params::untracked;
use super::state::Effects;
use super::Session;

impl Session {
    /// What to send before a request on `conn` besides `prelude` (a deferred BEGIN and what was held, or nothing):
    /// behind a transaction pooler, the `SET LOCAL`s after a BEGIN; for an autocommit request that needs them, a
    /// transaction of pgsplit's own (`conn.wrapped`); before a COMMIT, the reset of what the transaction changed at
    /// session level.
    pub(super) fn pooler_prelude(&self, conn: &mut ServerConn, prelude: &mut Vec<Bytes>, effects: &Effects) {
        if !conn.upstream_pooler() {
            return;
        }
        if !prelude.is_empty() {
            if let Some(local) = self.params.local_sql() {
                prelude.insert(1, encode::query(local.as_bytes()));
            }
        } else if conn.status() == STATUS_IDLE && !effects.own_transaction {
            let local = self.params.local_sql();
            if local.is_none() && untracked(&effects.changes).next().is_none() {
                return;
            }
            conn.set_wrapped(true);
            prelude.push(encode::query(b"BEGIN"));
            prelude.extend(local.as_deref().map(|l| encode::query(l.as_bytes())));
        } else if conn.status() == STATUS_IN_TX && effects.own_transaction {
            let resets = reset_sql(self.params.pending_untracked());
            if !resets.is_empty() {
                prelude.push(encode::query(resets.as_bytes()));
            }
        }
    }

    /// Ends the transaction pgsplit opened around an autocommit request (`conn.wrapped`), whose ReadyForQuery was
    /// held back: the request's session-level changes of untracked parameters are reset and the transaction
    /// committed (rolled back if the request failed); a commit error goes to the client, then ReadyForQuery with the
    /// status a direct connection would give. `conn.outcome` stays the request's (with the commit's error).
    pub(super) async fn end_wrapped(&mut self, conn: &mut ServerConn, effects: &Effects) -> Result<u8, RelayError> {
        conn.set_wrapped(false);
        let mut outcome = conn.outcome();
        if conn.status() != STATUS_IDLE {
            let mut sql = String::new();
            if conn.status() == STATUS_IN_TX {
                sql = reset_sql(untracked(&effects.changes));
                sql.push_str("COMMIT");
            } else {
                sql.push_str("ROLLBACK");
            }
            relay::replay(&mut self.client, conn, &[encode::query(sql.as_bytes())]).await?;
            if let Some(e) = conn.take_discarded_error() {
                self.client.wbuf.extend_from_slice(&e);
                outcome.error = true;
            }
        }
        conn.set_outcome(outcome);
        encode::ready_for_query(&mut self.client.wbuf, conn.status());
        Ok(conn.status())
    }
}

/// Makes the transaction on `conn` fail with a statement that raises (after `begin`, empty or `BEGIN;`), for a
/// transaction pgsplit failed (see `Session::fail_on_server`). pgsplit's own transaction around an autocommit
/// request (behind a transaction pooler) is not the client's: it ends first, so that the status is about the
/// client's transaction. The server's status after it, or `None` when the statement did not fail as expected.
pub(super) async fn raise_in_transaction(conn: &mut ServerConn, begin: &str) -> Option<u8> {
    const RAISE: &str =
        "DO $pgsplit$ BEGIN RAISE EXCEPTION USING ERRCODE = '0A000', MESSAGE = 'transaction failed by pgsplit'; END $pgsplit$";
    // A connection the transaction holds may be in the middle of the client's flushed batch, its server perhaps
    // skipping until Sync after an error pgsplit has not read yet: the statement goes as an extended one with its
    // own Sync, answered either way (a fresh connection gets BEGIN and the statement as one Query).
    let raised = match begin.is_empty() {
        true => conn.extended(RAISE).await,
        false => conn.simple(&format!("{begin}{RAISE}")).await,
    };
    match raised {
        Err(BackendError::Server { .. }) => {}
        // The server was skipping: the batch's own error failed the transaction already.
        Ok(_) if conn.status() != STATUS_IN_TX => {}
        _ => return None,
    }
    if conn.wrapped() && conn.status() == STATUS_FAILED && conn.simple("ROLLBACK").await.is_ok() {
        conn.set_wrapped(false);
    }
    Some(conn.status())
}

/// `RESET name;` for each name.
fn reset_sql<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let mut sql = String::new();
    for name in names {
        sql.push_str(&format!("RESET {};", crate::quote::guc_name(name)));
    }
    sql
}
