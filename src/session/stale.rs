//! A client's named statement used on a connection that lacks it (issue 16, point 5). PostgreSQL fixes a prepared
//! statement's result row when it is parsed, and refuses to run it once that row changed — by DDL, or by a
//! search_path under which its names mean other objects (`0A000 cached plan must not change result type`); the
//! client decodes rows by the description it was given then. Under transaction pooling the statement is prepared
//! again, lazily, on whichever connection serves it: planned there against today's catalog and the session's
//! search_path of today, its rows could reach the client in another shape than it expects.
//!
//! So the result row's shape is kept when the client's Parse runs (a hidden Describe in the same flight,
//! `Prepared::shape`); and a statement is prepared and described on a connection that lacks it before the batch
//! that uses it is sent (one round trip per statement and connection, the first time). Same shape: the batch runs
//! as ever. Another shape: the statement is not kept there, and that Bind or Describe of it fails on the server
//! with PostgreSQL's own error (the transaction fails as it would). The next use is compared again, as PostgreSQL
//! checks a cached plan at each execution (the row may be back to its shape); drivers prepare again on that error.

use std::sync::Arc;

use bytes::Bytes;

use crate::backend::{Described, PooledConn};
use crate::protocol::{decode, Frame, STATUS_IDLE};
use crate::router::TargetId;

use super::prepared::Prepared;
use super::Session;

/// What the check before a batch found.
pub(super) enum Checked {
    /// The batch may go (the uses of statements whose row changed fail on the server: `Session::changed_rows`).
    Go,
    /// Preparing a statement again failed inside a transaction or a flushed batch: the server skips until Sync, and
    /// the batch gets this ErrorResponse (whole) in place of its replies.
    Failed(Bytes),
}

impl Session {
    /// Before sending `batch` on `conn` (of `target`): each statement of the client that the batch binds or
    /// describes and that `conn` lacks is prepared and described there first, and compared with the shape the
    /// client was given (see the module's comment). Skipped while replies of an earlier flushed part are due.
    pub(super) async fn check_statements(
        &mut self,
        target: TargetId,
        conn: &mut PooledConn,
        batch: &[Frame],
    ) -> Result<Checked, crate::backend::BackendError> {
        self.changed_rows.clear();
        // A session-pooled client's statements are its own, under its names; behind a transaction pooler they are
        // parsed anew at each use; a client without named statements has nothing to check (the usual batch).
        if self.statements.is_empty() || self.session_pooled || conn.upstream_pooler() {
            return Ok(Checked::Go);
        }
        let mut checked: Vec<Arc<str>> = Vec::new();
        for f in batch {
            let Some(p) = self.used_statement(f) else { continue };
            let Some(&shape) = p.shape.get() else { continue };
            let due = p.target == target && conn.quiet() && !conn.has_prepared(&p.server_name, &p.parse_body);
            if !due || checked.contains(&p.server_name) {
                continue;
            }
            checked.push(p.server_name.clone());
            // Outside a transaction the check ends with Sync: a failure then leaves nothing behind, and the batch
            // meets it again at its place. Inside one, Flush: a failure fails the transaction, as the batch would.
            let sync = conn.status() == STATUS_IDLE;
            match conn.prepare_and_compare(&p.server_name, &p.parse_body, shape, sync, &mut self.client.wbuf).await? {
                Described::Same => {}
                Described::Changed => self.changed_rows.push(p.server_name.clone()),
                Described::Failed(_) if sync => {}
                Described::Failed(error) => return Ok(Checked::Failed(error)),
            }
        }
        Ok(Checked::Go)
    }

    /// The client's named statement a Bind or a statement Describe uses.
    fn used_statement(&self, f: &Frame) -> Option<Arc<Prepared>> {
        let name = match f.tag {
            b'B' => decode::bind_raw(f.body()).ok()?.1,
            b'D' => match decode::describe_or_close_raw(f.body()).ok()? {
                (b'S', name) => name,
                _ => return None,
            },
            _ => return None,
        };
        if name.is_empty() {
            return None;
        }
        let name = self.encoding.decode(name).ok()?;
        self.statements.get(&*name).cloned()
    }
}
