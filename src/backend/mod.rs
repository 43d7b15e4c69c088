//! Server side: connections to targets (TLS, auth, framed reads), the exchange of a request with its server
//! (`relay`), their pools (`pool`, `shelf`) and each target's health. A server connection's state is private to this module:
//! the session asks it to send, relay and forget; only this module marks a connection broken.

pub mod conn;
mod describe;
mod login;
pub mod pool;
pub mod relay;
pub mod servers;
mod shelf;
mod statements;
pub mod tls;
mod turns;

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use crate::stream::Stream;

pub use conn::TargetSpec;
pub use describe::Described;

/// The shape of a statement's result row (`protocol::decode::row_shape`), set once it is known.
pub type Shape = Arc<std::sync::OnceLock<u64>>;

/// A login on a target's server: the role, its password, and a role to take at login (the `role` startup
/// parameter, as `SET ROLE`, which neither `RESET ROLE` nor `DISCARD ALL` undoes).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Login {
    /// The role logged in as.
    pub user: String,
    /// Its password, if the server asks for one.
    pub password: Option<String>,
    /// The role taken at login.
    pub role: Option<String>,
    /// The client's own secret to log in with, no password: the keys of its SCRAM proof or its md5 verifier
    /// (pass-through); used when the server asks for SCRAM or md5 respectively.
    pub passthrough: Option<crate::auth::Passthrough>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Login({}, role {:?})", self.user, self.role)
    }
}

impl Login {
    /// How it is shown (SHOW POOLS' `user`): the role taken, else the login.
    pub fn shown(&self) -> &str {
        self.role.as_deref().unwrap_or(&self.user)
    }
}

/// A login's number in its target's pool (`Backend::login_id`); 0 is the target URL's login.
pub type LoginId = u32;
pub use pool::{Backend, CheckoutError, PoolSettings};
pub use shelf::PooledConn;

/// Polls a future once: its output if it is ready at once, else `Pending` (the future stays pinned by the caller, to
/// be awaited or raced later). The fast path of a checkout: an idle connection costs no waker, timer or select.
#[inline]
pub async fn poll_once<F: std::future::Future>(mut f: std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
    std::future::poll_fn(move |cx| std::task::Poll::Ready(f.as_mut().poll(cx))).await
}

/// A logged-in server connection, ready for queries.
pub struct ServerConn {
    /// Its entry in the pool's registry (`servers`): declared before the socket, so it leaves the registry before
    /// the socket closes.
    registration: Option<servers::Registration>,
    /// Bytes read from the server since it opened (PgBouncer's `bytes_sent`, to the clients).
    read_total: u64,
    /// The login it was opened with (`Backend::login_id`): lent only to clients of that login.
    login: LoginId,
    /// The socket.
    stream: Stream,
    /// Bytes read from the server not yet consumed.
    rbuf: BytesMut,
    /// ParameterStatus values the server reported, in arrival order.
    params: Vec<(String, String)>,
    /// The server's BackendKeyData, to forward cancels.
    key: Option<(i32, i32)>,
    /// NoticeResponses the server sent while the connection logged in (a WARNING about a setting of the role or
    /// database, say), for the first client that uses it: at most `LOGIN_NOTICES_MAX` bytes of them.
    login_notices: BytesMut,
    /// Status byte of the last ReadyForQuery: only `I` may go back to the pool.
    status: u8,
    /// Set when an exchange was cut short (an I/O or protocol error, or a future dropped mid-exchange), or when a
    /// session retired it: the connection must be closed, never reused. Only this module sets it.
    broken: bool,
    /// When it was opened, for `max_lifetime`.
    created: Instant,
    /// When it was last handed out (see `idle_and_alive`).
    handed_out: Instant,
    /// Session parameters pgsplit has SET on this connection on behalf of clients (name → SQL value text); absent
    /// names have the value the connection started with. The next client's settings are applied as a diff.
    applied: crate::session::Settings,
    /// What the last relayed exchange ended with, for following session state (see `Outcome`).
    outcome: Outcome,
    /// The server reported an error in an extended-protocol batch and skips every message until the next Sync.
    skipping: bool,
    /// The first ErrorResponse of a replay whose replies were discarded (a held statement that failed), whole.
    discarded_error: Option<bytes::Bytes>,
    /// Named statements prepared on this connection by pgsplit: server-side name → the Parse body that made it
    /// (compared on use, so a name is never trusted for other SQL), and the shape of its result row once known
    /// (`session::stale`). Shared by every client that prepares the same SQL.
    prepared: std::collections::HashMap<std::sync::Arc<str>, (bytes::Bytes, Shape)>,
    /// The target's name, for errors that must say which target failed.
    target: Arc<str>,
    /// Replies still due for the extended-protocol messages sent, in order (see `protocol::expect`).
    expect: std::collections::VecDeque<crate::protocol::expect::Expect>,
    /// Copied from the target: a transaction pooler is in front (named statements are not kept on it).
    upstream_pooler: bool,
    /// pgsplit opened the server transaction around an autocommit request (a transaction pooler's settings are
    /// applied with `SET LOCAL`): the request's ReadyForQuery is held back from the client until pgsplit has ended
    /// the transaction (see `session::pooler`).
    wrapped: bool,
    /// Something of the client's session lives on this connection for the exchange under way (its transaction, or
    /// its pin): a FATAL from the server then ends the client's session too (`relay::RelayError::Ended`), as it
    /// would end a direct connection. Otherwise the connection is replaced and the client goes on.
    holds_session: bool,
    /// The session (`Session::id`) whose sequence state (`currval`, `lastval`) the server session may hold since the
    /// last DISCARD; 0 for none, `SEQUENCES_MIXED` for more than one. A session's request that may read that state
    /// (or make its own in a transaction) goes after `DISCARD SEQUENCES` when it may be another's.
    sequences_of: u64,
    /// `DISCARD SEQUENCES` goes ahead of the next request sent on the connection, in the same flight (no round trip
    /// of its own): set by `discard_sequences_ahead`, taken by `send_ahead`.
    discard_ahead: bool,
    /// Replies to messages `send_ahead` sent, up to and including their ReadyForQuery, still to be hidden (0 or 1).
    hidden_ready: u8,
}

/// What the server said in the last exchange relayed to a client, beyond the final ReadyForQuery status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// An ErrorResponse was relayed: the statement (or the implicit transaction of a batch) failed.
    pub error: bool,
    /// The last CommandComplete tag was `ROLLBACK` (a rolled-back transaction, or a COMMIT of a failed one).
    pub rolled_back: bool,
    /// The last CommandComplete tag was `COMMIT`.
    pub committed: bool,
    /// The server refused to run a prepared statement whose result type changed since it was prepared
    /// (`0A000 cached plan must not change result type`): DDL pgsplit did not see.
    pub stale_statement: bool,
}

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
    /// The server's bytes do not frame as protocol messages.
    #[error("protocol error: {0}")]
    Framing(#[from] crate::protocol::framing::FrameError),
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
