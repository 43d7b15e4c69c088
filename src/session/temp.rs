//! Temporary objects a statement made where pgsplit could not see it: in the body of a function or procedure, or in
//! a `DO` block. Such an object lives on its server connection only, so like a `CREATE TEMP TABLE` it pins; and
//! the next client of an unpinned connection would see it (`relation "foo" already exists`).

use crate::backend::PooledConn;
use crate::router::TargetId;

use super::effects::Effects;
use super::Session;

/// Whether the server session has a temporary relation now (a temporary schema is created at the first temporary
/// object and kept after it is dropped, so its existence alone says nothing).
const TEMP_OBJECTS: &str = "SELECT pg_catalog.pg_my_temp_schema() <> 0 AND EXISTS (SELECT FROM pg_catalog.pg_class \
                            WHERE relnamespace = pg_catalog.pg_my_temp_schema())";

impl Session {
    /// After an exchange: a request that may have made a temporary object unseen (`Effects::may_make_temp`) on a
    /// connection the session does not keep is looked at when its transaction ends (`temp_check`).
    pub(super) fn may_have_made_temp(&mut self, target: TargetId, conn: &PooledConn, effects: &Effects) {
        if effects.may_make_temp && !self.session_pooled && !conn.upstream_pooler() && !self.machine.pinned_to(target) {
            self.temp_due = Some(target);
        }
    }

    /// When the transaction on `conn` has ended, before the connection goes back: if a request of it may have made
    /// a temporary object, the server is asked, and the session is pinned when one exists. The client has had its
    /// answer already; the question costs a round trip to the server only for such transactions. A connection that
    /// cannot answer is retired (closed, never given to another client).
    pub(super) async fn temp_check(&mut self, target: TargetId, conn: &mut PooledConn) {
        if self.temp_due.take() != Some(target) || self.machine.pinned_to(target) {
            return;
        }
        // The client's reply first: the question is not on its path.
        let _ = self.client.flush().await;
        match conn.simple(TEMP_OBJECTS).await {
            Ok(rows) if conn.status() == crate::protocol::STATUS_IDLE => {
                if rows.first().and_then(|r| r.first()).is_some_and(|v| v.as_deref() == Some("t")) {
                    self.pin(target);
                }
            }
            Ok(_) | Err(_) => conn.retire(),
        }
    }
}
