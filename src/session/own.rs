//! What becomes of a session's pinned connections when it ends: under session pooling (`pool_mode: session`) the
//! client's own backends, kept for its whole session, go back to the pool reset; a transaction-pooled session's
//! pins are closed.

use crate::backend::PooledConn;
use crate::protocol::STATUS_IDLE;
use crate::router::TargetId;

use super::Session;

impl Session {
    /// Session pooling: `conn`, the client's own backend on `target` (whose key the client was given), is kept for
    /// the whole session, and so is every connection the session uses after it.
    pub(super) fn session_pooled(&mut self, target: TargetId, conn: PooledConn) {
        self.session_pooled = true;
        self.pin(target);
        self.release(target, conn);
    }

    /// When a session-pooled client leaves: its idle connections are reset as PgBouncer's `server_reset_query`
    /// resets them (`DISCARD ALL`: settings, prepared statements, temporary tables, LISTEN, advisory locks, cursors,
    /// role) and given back to the pool; one that cannot be reset is closed. (Transaction pooling never gives back
    /// a pinned connection: see `Drop`.)
    pub(super) async fn give_back_own(&mut self) {
        if !self.session_pooled {
            return;
        }
        for target in 0..self.app.backends().len() {
            let Some(mut conn) = self.machine.take_pinned(target) else { continue };
            let reset = conn.status() == STATUS_IDLE && conn.simple("DISCARD ALL").await.is_ok() && conn.status() == STATUS_IDLE;
            if reset {
                *conn.applied_mut() = crate::session::Settings::default();
                conn.forget_prepared();
                conn.sequences_discarded();
            } else {
                conn.retire();
            }
            drop(conn);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.app.cancels().unregister(&self.key);
        if self.machine.pinned() {
            self.app.pinned_sessions().fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
        // What pinned a connection (LISTEN, temporary tables, advisory locks, ...) must not reach another client:
        // the connection is closed rather than returned.
        self.machine.pinned_idle().for_each(|c| c.retire());
    }
}
