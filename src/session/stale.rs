//! A client's named statement used after DDL on a connection that lacks it (issue 16, point 5). PostgreSQL fixes a
//! prepared statement's result row when it is parsed, and refuses to run it once DDL changed that row (`0A000
//! cached plan must not change result type`); the client decodes rows by the description it was given then. Under
//! transaction pooling the statement is prepared again, lazily, on whichever connection serves it: after DDL that
//! would plan it against today's catalog, and its rows would reach the client in another shape than it expects.
//!
//! So the result row's shape is kept when the client's Parse runs (a hidden Describe in the same flight,
//! `Prepared::shape`); and a statement parsed before the target's catalog last changed is prepared and described on
//! a connection that lacks it before the batch that uses it is sent (one round trip, only after DDL). Same shape:
//! the batch runs as ever. Another shape: the statement is stale for good, and each Bind or Describe of it fails on
//! the server with PostgreSQL's own error (`Prepared::stale`; the transaction fails as it would), until the client
//! prepares it again — as drivers do on that error.

use std::sync::Arc;

use bytes::Bytes;

use crate::backend::{Described, PooledConn};
use crate::protocol::{decode, Frame, STATUS_IDLE};
use crate::router::TargetId;

use super::prepared::Prepared;
use super::Session;

/// What the check before a batch found.
pub(super) enum Checked {
    /// The batch may go (statements whose shape changed are marked stale; their uses fail on the server).
    Go,
    /// Preparing a statement again failed inside a transaction or a flushed batch: the server skips until Sync, and
    /// the batch gets this ErrorResponse (whole) in place of its replies.
    Failed(Bytes),
}

impl Session {
    /// Before sending `batch` on `conn` (of `target`): each statement of the client that the batch binds or
    /// describes, parsed before the target's catalog last changed and missing on `conn`, is prepared and described
    /// there first, and compared with the shape the client was given (see the module's comment).
    pub(super) async fn check_statements(
        &mut self,
        target: TargetId,
        conn: &mut PooledConn,
        batch: &[Frame],
    ) -> Result<Checked, crate::backend::BackendError> {
        let epoch = self.backend(target).statement_epoch();
        let mut checked: Vec<Arc<str>> = Vec::new();
        for f in batch {
            let Some(p) = self.used_statement(f) else { continue };
            let Some(&shape) = p.shape.get() else { continue };
            let due = !p.stale && p.target == target && p.catalog < epoch;
            if !due || !conn.quiet() || conn.has_prepared(&p.server_name, &p.parse_body) || checked.contains(&p.server_name) {
                continue;
            }
            checked.push(p.server_name.clone());
            // Outside a transaction the check ends with Sync: a failure then leaves nothing behind, and the batch
            // meets it again at its place. Inside one, Flush: a failure fails the transaction, as the batch would.
            let sync = conn.status() == STATUS_IDLE;
            match conn.prepare_and_describe(&p.server_name, &p.parse_body, sync, &mut self.client.wbuf).await? {
                Described::Shape(now) if now != shape => self.mark_stale(&p.server_name),
                Described::Shape(_) => {}
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

    /// Every client name for the statement `server_name` is stale: its result row changed since it was parsed.
    fn mark_stale(&mut self, server_name: &Arc<str>) {
        for p in self.statements.values_mut() {
            if p.server_name == *server_name {
                *p = Arc::new(Prepared { stale: true, ..(**p).clone() });
            }
        }
    }
}
