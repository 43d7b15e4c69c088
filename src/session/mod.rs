//! One client session: startup and authentication, then a loop over the client's messages, driven by the transaction
//! state machine in `state`.
//!
//! Transitions (see `Tx`): `Idle` → (BEGIN) → `Deferred` → (first statement with a target) → `Bound`;
//! `Idle` → (statement) → `Bound` if the server stays in a transaction, else back to `Idle`;
//! `Bound`/`Deferred` → (statement for another target) → `Failed`; `Failed` → (COMMIT/ROLLBACK) → `Idle`.
//! A server connection is held only in `Bound` (and `Failed` if one was bound), and returns to its pool at
//! ReadyForQuery idle.

mod client;
mod console;
mod drain;
mod extended;
mod notify;
mod params;
mod pooler;
mod prepared;
mod query;
mod relay;
mod startup;
mod state;

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use crate::app::App;
use crate::protocol::codes;
use crate::protocol::encode::PgError;
use crate::protocol::framing::FrameError;
use crate::server::Limits;

pub use startup::ADMIN_DATABASE;
pub use state::Tx;

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The client closed the connection mid-message or mid-exchange.
    #[error("client disconnected")]
    ClientGone,
    /// A socket error on the client side.
    #[error("client I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The client broke the protocol; it is told why (FATAL) and disconnected.
    #[error("{0}")]
    Fatal(PgError),
    /// The client did not log in within `client_login_timeout`; it is disconnected.
    #[error("client_login_timeout ({0:?}) reached before the client logged in")]
    LoginTimeout(std::time::Duration),
    /// The client sent no whole startup packet within `client_first_packet_timeout`; it is disconnected.
    #[error("client_first_packet_timeout ({0:?}) reached before the client's first packet")]
    FirstPacketTimeout(std::time::Duration),
}

impl SessionError {
    /// A message type the session does not accept here: FATAL 08P01, as PostgreSQL answers it.
    pub fn unexpected_message(tag: u8) -> SessionError {
        SessionError::Fatal(PgError::fatal(codes::PROTOCOL_VIOLATION, format!("unexpected message type {:?}", tag as char)))
    }
}

impl From<FrameError> for SessionError {
    fn from(e: FrameError) -> Self {
        SessionError::Fatal(PgError::fatal(codes::PROTOCOL_VIOLATION, e.to_string()))
    }
}

/// Serves one client connection to its end. Errors end only this session. `login` is the connection's slot in the
/// login budget, given back once it has logged in (it then holds a `max_client_conn` slot instead).
pub async fn serve(tcp: TcpStream, app: Arc<App>, limits: &Limits, login: OwnedSemaphorePermit) {
    let peer = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let _ = tcp.set_nodelay(true);
    // A client that never finishes logging in (stalled, or a slow drip) is dropped: it would hold a task, a socket
    // and a login slot, and keep pgsplit from exiting at shutdown.
    let login_timeout = app.config().client_login_timeout;
    let logged_in = tokio::time::timeout(login_timeout, startup::startup(tcp, &app, limits)).await;
    drop(login);
    let (mut session, _client_slot) = match logged_in.unwrap_or_else(|_| Err(SessionError::LoginTimeout(login_timeout))) {
        Ok(Some(s)) => s,
        Ok(None) => return,
        Err(e) => {
            let sqlstate = if let SessionError::Fatal(e) = &e { e.code } else { "" };
            tracing::info!(%peer, sqlstate, error = %e, "client refused at startup");
            if !sqlstate.is_empty() {
                app.metrics().startup_refused(sqlstate);
            }
            return;
        }
    };
    let _connected = app.metrics().client_connected();
    let database = session.passthrough.map_or(app.database(), |t| app.backend(t).name());
    let tls = session.client.stream.is_tls();
    let user = session.user.clone();
    tracing::info!(%peer, %user, %database, tls, "client connected");
    match session.run().await {
        Ok(()) | Err(SessionError::ClientGone) => tracing::info!(%peer, %user, "client disconnected"),
        Err(SessionError::Fatal(e)) => {
            tracing::info!(%peer, %user, sqlstate = e.code, error = %e, "client disconnected by pgsplit");
            session.client.fatal(&e).await;
        }
        Err(e) => tracing::info!(%peer, %user, error = %e, "client disconnected"),
    }
}

pub use state::Session;
