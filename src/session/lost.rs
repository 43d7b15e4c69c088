//! A client or a server gone in the middle of a request: what becomes of the connection and of the session.

use crate::backend::{BackendError, PooledConn};
use crate::router::TargetId;

use super::{errors, Session, SessionError};

impl Session {
    /// The client went away in the middle of a request: the session ends, and the request's statement is cancelled
    /// on its server at once (its connection, mid-exchange, is closed, never reused: without the cancel the server
    /// would run the statement to its end, holding a connection of the target's budget meanwhile).
    pub(super) fn client_left(&mut self, target: TargetId, conn: PooledConn, e: crate::client::ClientError) -> SessionError {
        if let Some(key) = conn.key() {
            let app = self.app.clone();
            tokio::spawn(async move { app.cancel_on_server(target, key).await });
        }
        drop(conn);
        self.machine.lost();
        e.into()
    }

    /// The server ended, with a FATAL the client was given, the connection that held the client's session: it is
    /// closed, and the client's session ends with it.
    pub(super) fn server_ended(&mut self, target: TargetId, mut conn: PooledConn) -> SessionError {
        conn.retire();
        tracing::warn!(target = self.backend(target).name(), "the server ended the connection holding a session");
        self.release(target, conn);
        self.machine.lost();
        SessionError::ServerEnded
    }

    /// A server connection that held the client's session (its transaction, or its pin) failed without a word from
    /// the server: it is closed, and the client's session ends with FATAL 08006.
    pub(super) fn session_lost(&mut self, target: TargetId, conn: PooledConn, e: &BackendError) -> SessionError {
        self.server_lost(target, conn, e);
        SessionError::Fatal(errors::session_connection_lost(self.backend(target).name(), Some(e)))
    }

    /// A server connection failed mid-request: it is closed, and the transaction is gone with it.
    pub(super) fn server_lost(&mut self, target: TargetId, mut conn: PooledConn, e: &BackendError) {
        conn.retire();
        tracing::warn!(target = self.backend(target).name(), error = %e, "server connection lost");
        self.release(target, conn);
        self.machine.lost();
    }
}
