//! One client session: startup and authentication, then a loop over the client's messages.
//!
//! Layout — what each file owns:
//!
//! | file          | owns                                                                                      |
//! |---------------|-------------------------------------------------------------------------------------------|
//! | `machine/`    | the semantics: transaction states and transitions, I/O-free (`mod.rs`; read first), its tests |
//! | `route.rs`    | the one decision of where a request goes                                                  |
//! | `errors.rs`   | every error and notice a logged-in session sends the client                               |
//! | `state.rs`    | the driver: the message loop, checkout/return of connections, running requests            |
//! | `effects.rs`  | what a request does to the session once it ran (parameters, DDL, pins, a database to free) |
//! | `query.rs`    | simple-query messages: analysis, local answers, running                                   |
//! | `extended.rs` | extended-protocol batches: holding until Sync/Flush, routing, local answers              |
//! | `prepared.rs` | named prepared statements under transaction pooling: rewriting a batch for its connection |
//! | `pooler.rs`   | targets behind an upstream transaction pooler: SET LOCAL and pgsplit's own transactions   |
//! | `params.rs`   | session parameters followed from SET/RESET and replayed on each connection               |
//! | `own.rs`      | pinned connections when the session ends: reset and given back, or closed                 |
//! | `lost.rs`     | a client or a server gone mid-request: the connection, the session, the cancel            |
//! | `notify.rs`   | a pinned session between statements (LISTEN notifications)                               |
//! | `drain.rs`    | shutdown as a session sees it                                                             |
//! | `startup.rs`  | TLS, StartupMessage, SCRAM, the greeting                                                  |
//! | `console.rs`  | the admin console's message loop (its commands are `crate::admin`)                        |
//!
//! The exchange with a server (send, relay until ReadyForQuery, COPY, marking a connection broken) is the backend's
//! (`backend::relay`); the session decides, the backend talks.

mod cache;
mod console;
mod counts;
mod drain;
mod effects;
pub(crate) mod errors;
mod extended;
mod idle;
mod lost;
pub(crate) mod machine;
mod notify;
mod own;
mod params;
pub use params::Settings;
mod pooler;
mod prepared;
mod query;
mod route;
mod stale;
mod startup;
mod state;
mod temp;

use std::sync::Arc;

use crate::worker::Socket as TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use crate::app::App;
use crate::protocol::encode::PgError;
use crate::protocol::framing::FrameError;
use crate::server::Limits;

pub use startup::ADMIN_DATABASE;

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
    /// The server ended the connection that held the client's session (its transaction, or its pin) with a FATAL
    /// the client was given as it is: the client is disconnected, as a direct connection would be.
    #[error("the server ended the client's session")]
    ServerEnded,
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
        SessionError::Fatal(errors::unexpected_message(tag))
    }
}

impl From<crate::client::ClientError> for SessionError {
    fn from(e: crate::client::ClientError) -> Self {
        match e {
            crate::client::ClientError::Gone => SessionError::ClientGone,
            crate::client::ClientError::Io(e) => SessionError::Io(e),
            crate::client::ClientError::Frame(e) => e.into(),
            crate::client::ClientError::IdleInTransaction => SessionError::Fatal(errors::idle_in_transaction_timeout()),
        }
    }
}

impl From<FrameError> for SessionError {
    fn from(e: FrameError) -> Self {
        SessionError::Fatal(errors::protocol_violation(e))
    }
}

/// Serves one client connection to its end. Errors end only this session. `login` is the connection's slot in the
/// login budget, given back once it has logged in (it then holds a `max_client_conn` slot instead).
/// `unix`: the name of the Unix-domain socket it came in by.
pub async fn serve(tcp: TcpStream, unix: Option<Arc<str>>, app: Arc<App>, limits: &Limits, login: OwnedSemaphorePermit) {
    let peer = match &unix {
        Some(socket) => format!("unix:{socket}"),
        None => tcp.peer_addr().map(|a| a.to_string()).unwrap_or_default(),
    };
    let _ = tcp.set_nodelay(true);
    crate::net::keepalive(&tcp);
    // A client that never finishes logging in (stalled, or a slow drip) is dropped: it would hold a task, a socket
    // and a login slot, and keep pgsplit from exiting at shutdown.
    let login_timeout = app.config().client_login_timeout;
    // Boxed: the login's future (TLS, SCRAM) takes memory only while the client logs in.
    let login: crate::server::LoginSlot = Arc::new(std::sync::Mutex::new(Some(login)));
    let logged_in = tokio::time::timeout(login_timeout, Box::pin(startup::startup(tcp, unix, &app, limits, &login))).await;
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
    let database = session.database().to_owned();
    let tls = session.tls();
    let user = session.user().to_owned();
    tracing::info!(%peer, %user, %database, tls, "client connected");
    match session.run().await {
        Ok(()) | Err(SessionError::ClientGone) => tracing::info!(%peer, %user, "client disconnected"),
        Err(SessionError::Fatal(e)) => {
            tracing::info!(%peer, %user, sqlstate = e.code, error = %e, "client disconnected by pgsplit");
            Box::pin(session.fatal(&e)).await;
        }
        Err(SessionError::ServerEnded) => {
            tracing::warn!(%peer, %user, "client disconnected: the server ended the connection that held its session")
        }
        Err(e) => tracing::info!(%peer, %user, error = %e, "client disconnected"),
    }
    // Boxed, as the login: the session's own future is not sized for what it does only once.
    Box::pin(session.give_back_own()).await;
}

impl Session {
    /// The pool the session takes `target`'s connections from: a database's own under `any_database`.
    /// The login of the user's server connections on `target` (`App::login_for`, asked once per session).
    #[inline]
    async fn login_on(
        &mut self,
        target: crate::router::TargetId,
    ) -> Result<crate::backend::LoginId, crate::protocol::encode::PgError> {
        if let Some(Some(id)) = self.logins.get(target) {
            return Ok(*id);
        }
        // Once per session and target: boxed, so the request's own future stays small (it is moved as a whole).
        let id = Box::pin(self.app.login_for(&self.user, target, self.own_secret.as_ref())).await?;
        if self.logins.len() <= target {
            self.logins.resize(target + 1, None);
        }
        if let Some(slot) = self.logins.get_mut(target) {
            *slot = Some(id);
        }
        Ok(id)
    }

    fn backend(&self, target: crate::router::TargetId) -> &crate::backend::Backend {
        match &self.database_pool {
            Some(pool) if self.passthrough == Some(target) => pool,
            _ => self.app.backend(target),
        }
    }
}

/// A connected, authenticated client. Its fields are private to the session module; the transaction's state is
/// the machine's (`machine`), everything else is what the client's session carries between requests.
pub struct Session {
    /// The client's socket and buffers.
    client: crate::client::Client,
    /// Configuration, routing, pools.
    app: Arc<App>,
    /// The role the client authenticated as.
    user: String,
    /// Where the transaction stands, and the server connection it holds.
    machine: machine::Machine<crate::backend::PooledConn>,
    /// `SET pgsplit.target`: the session's default for statements that name no routed schema.
    target_hint: Option<crate::router::TargetId>,
    /// The session's search_path (case-folded schema names), used to resolve unqualified names; derived from
    /// `params` whenever they change.
    search_path: Vec<String>,
    /// Moved on whenever `search_path` changes (the decision memo compares it instead of the path).
    search_path_generation: u64,
    /// How the client's text is read (`client_encoding`); derived from `params` whenever they change.
    encoding: crate::protocol::encoding::ClientEncoding,
    /// The last routing decision, reused for the next statement of the same shape (see `router::DecisionMemo`).
    route_memo: crate::router::DecisionMemo,
    /// The session's last route cache lookup, for repeated texts.
    lookup_memo: crate::router::cache::LookupMemo,
    /// The buffer extended batches are rewritten into, kept between batches while small (`give_back_rewrite`).
    rewrite_buf: bytes::BytesMut,
    /// Session parameters (startup, SET, RESET) applied to every server connection the client uses.
    params: params::Params,
    /// The login of the user's server connections on each target, once asked (`App::login_for`).
    logins: Vec<Option<crate::backend::LoginId>>,
    /// What the client's login left to log in with in its name (SCRAM keys or md5 verifier; pass-through).
    own_secret: Option<crate::auth::Passthrough>,
    /// When the open transaction's first request was sent (SHOW STATS' `xact_time`).
    xact_began: Option<std::time::Instant>,
    /// A target on which DDL ran inside the open transaction: its catalog is re-read when the transaction ends.
    catalog_stale: Option<(crate::router::TargetId, u64)>,
    /// A target on which a request of the open transaction may have made a temporary object unseen: the server is
    /// asked when the transaction ends (`temp_check`).
    temp_due: Option<crate::router::TargetId>,
    /// Statements (server-side names) of the batch being sent whose result row changed since the client parsed
    /// them: their Bind or Describe fails as PostgreSQL fails it (`stale`).
    changed_rows: Vec<Arc<str>>,
    /// The cancel key pgsplit gave the client, and where its statement in flight runs.
    key: crate::cancel::ClientKey,
    /// Connected with a target's name as the database: every statement goes to that target, unsplit.
    passthrough: Option<crate::router::TargetId>,
    /// Connected to a database reached through `any_database` (`passthrough` is then that target): this database's
    /// pool stands for the target's wherever the session takes connections.
    database_pool: Option<Arc<crate::backend::Backend>>,
    /// Extended-protocol messages received since the last Sync.
    batch: Vec<crate::protocol::Frame>,
    /// Bytes held in `batch` (counted from its first message; see `extended::MAX_BATCH_BYTES`).
    batch_bytes: usize,
    /// What the statements parsed in the current batch do to session state.
    batch_effects: state::Effects,
    /// The client's named prepared statements, by the client's name.
    statements: std::collections::HashMap<String, Arc<prepared::Prepared>>,
    /// The unnamed statement (its target, whether its SQL chose it, what it does), for a Bind that re-executes it.
    unnamed: Option<state::Unnamed>,
    /// The client's last unnamed Parse, re-sent before a later batch's Bind of the unnamed statement.
    unnamed_parse: Option<bytes::Bytes>,
    /// An admin console session (database `pgsplit`).
    admin: bool,
    /// Session pooling (`pool_mode: session`): every server connection the session uses is its own until it leaves.
    session_pooled: bool,
    /// `prepare_unnamed` at login: the unnamed statement is served from a server-side prepared statement
    /// (`unnamed_prepared`), except under session pooling and behind a transaction pooler.
    prepare_unnamed: bool,
    /// The client's unnamed statement as a server-side prepared statement, when `prepare_unnamed`.
    unnamed_prepared: Option<prepared::UnnamedPrepared>,
    /// Never the same for two sessions of the process (`ServerConn::sequences_of`).
    id: u64,
    /// Writes to cached tables in the open transaction (`crate::cache::WriteHold`): dropped once it has ended.
    cache_holds: Vec<crate::cache::WriteHold>,
    /// What the current batch's statements are to the session cache.
    batch_cache: cache::BatchScan,
}

/// The last `Session::id` given.
static SESSION_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
