//! Server side: connections to targets (TLS, auth, framed reads), their bb8 pools and each target's health.

pub mod conn;
pub mod pool;
pub mod tls;

pub use conn::{Outcome, ServerConn, TargetSpec};
pub use pool::{Backend, CheckoutError, PoolSettings, PooledConn};

/// Why talking to a server failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// A socket error.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The TLS handshake failed (certificate not trusted, wrong host name, ...).
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    /// The server broke the protocol or refused something pgsplit needs.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server answered with an ErrorResponse (bad password, database missing, ...).
    #[error("server error {code}: {message}")]
    Server {
        /// SQLSTATE.
        code: String,
        /// Primary message.
        message: String,
    },
    /// The server closed the connection.
    #[error("server closed the connection")]
    Closed,
    /// Connecting took too long.
    #[error("timed out connecting")]
    Timeout,
}
