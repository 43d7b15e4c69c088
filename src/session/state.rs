//! The session's state: the transaction state machine, the server connection it holds, and the run loop.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;

use crate::app::App;
use crate::backend::{CheckoutError, PooledConn};
use crate::protocol::encode::PgError;
use crate::protocol::{codes, Frame, STATUS_FAILED, STATUS_IDLE, STATUS_IN_TX};
use crate::router::TargetId;

use super::client::Client;
use super::relay::{self, RelayError, Sink};
use super::SessionError;

/// Where the client's transaction stands. This is the state machine of the module doc.
pub enum Tx {
    /// No transaction; no server connection held.
    Idle,
    /// BEGIN was answered by pgsplit; no statement has chosen a target yet. Holds the BEGIN text to replay.
    Deferred {
        /// The client's BEGIN as a Query message, replayed on the target when the transaction binds.
        begin: Bytes,
    },
    /// A transaction (or an unsynced extended batch) is open on a server connection of `target`.
    Bound {
        /// The target the transaction runs on.
        target: TargetId,
        /// The server connection, held until ReadyForQuery idle.
        conn: PooledConn,
    },
    /// pgsplit refused a statement inside the transaction: everything but COMMIT/ROLLBACK gets 25P02.
    Failed {
        /// The bound connection, if the transaction had bound; rolled back at the end.
        conn: Option<PooledConn>,
    },
}

impl Tx {
    /// The status byte the client sees in ReadyForQuery.
    pub fn status(&self) -> u8 {
        match self {
            Tx::Idle => STATUS_IDLE,
            Tx::Deferred { .. } => STATUS_IN_TX,
            Tx::Bound { conn, .. } => conn.status,
            Tx::Failed { .. } => STATUS_FAILED,
        }
    }
}

/// A connected, authenticated client.
pub struct Session {
    /// The client's socket and buffers.
    pub client: Client,
    /// Configuration, routing, pools.
    pub app: Arc<App>,
    /// The role the client authenticated as.
    pub user: String,
    /// Transaction state.
    pub tx: Tx,
    /// `SET pgsplit.target`: the session's default for statements that name no routed schema.
    pub target_hint: Option<TargetId>,
    /// The session's search_path (case-folded schema names), used to resolve unqualified names.
    pub search_path: Vec<String>,
    /// Extended-protocol messages received since the last Sync.
    pub batch: Vec<Frame>,
    /// Target of each named prepared statement the client created.
    pub statements: HashMap<String, TargetId>,
    /// Target of the unnamed statement, for a Bind that re-executes it.
    pub unnamed: Option<TargetId>,
    /// Server connections pinned to this session (named prepared statements live on them), by target.
    pub pins: HashMap<TargetId, Option<PooledConn>>,
}

impl Session {
    /// A session in the idle state.
    pub fn new(client: Client, app: Arc<App>, user: String, startup: &BTreeMap<String, String>) -> Session {
        let search_path = startup_search_path(startup);
        Session {
            client,
            app,
            user,
            tx: Tx::Idle,
            target_hint: None,
            search_path,
            batch: Vec::new(),
            statements: HashMap::new(),
            unnamed: None,
            pins: HashMap::new(),
        }
    }

    /// Serves the client's messages until it terminates.
    pub async fn run(&mut self) -> Result<(), SessionError> {
        loop {
            let Some(frame) = self.client.read_frame().await? else { return Ok(()) };
            match frame.tag {
                b'Q' => self.simple_query(frame).await?,
                b'P' | b'B' | b'D' | b'E' | b'C' => self.batch.push(frame),
                b'S' => self.sync(frame).await?,
                b'H' => self.flush_batch(frame).await?,
                b'X' => return Ok(()),
                // CopyData/CopyDone/CopyFail outside COPY are ignored, as PostgreSQL does.
                b'd' | b'c' | b'f' => {}
                other => {
                    return Err(SessionError::Fatal(PgError::fatal(
                        codes::PROTOCOL_VIOLATION,
                        format!("unexpected message type {:?}", other as char),
                    )))
                }
            }
            self.client.flush().await?;
        }
    }

    /// A server connection for `target`: the session's pinned one if it has one, else one from the pool.
    pub async fn acquire(&mut self, target: TargetId) -> Result<PooledConn, PgError> {
        if let Some(slot) = self.pins.get_mut(&target) {
            if let Some(conn) = slot.take() {
                return Ok(conn);
            }
        }
        let backend = self.app.backend(target);
        backend.checkout().await.map_err(|e| {
            let code = match e {
                CheckoutError::Unavailable { .. } => codes::CONNECTION_FAILURE,
                CheckoutError::Timeout { .. } => codes::TOO_MANY_CONNECTIONS,
            };
            tracing::warn!(target = backend.name(), error = %e, "server connection unavailable");
            PgError::error(code, e.to_string())
        })
    }

    /// Gives a connection back: to the session's pin slot if pinned (and healthy), else to the pool.
    pub fn release(&mut self, target: TargetId, conn: PooledConn) {
        if let Some(slot) = self.pins.get_mut(&target) {
            if !conn.broken {
                *slot = Some(conn);
                return;
            }
            // A broken pinned connection loses its prepared statements; the session must start over on a new one.
            self.pins.remove(&target);
            self.statements.retain(|_, t| *t != target);
        }
        drop(conn);
    }

    /// Keeps the server connection of `target` for the rest of the session.
    pub fn pin(&mut self, target: TargetId) {
        self.pins.entry(target).or_insert(None);
    }

    /// Sends `frames` (already encoded, optionally preceded by a deferred BEGIN) on `conn`, relays the answer to the
    /// client, and settles the transaction state from the server's ReadyForQuery.
    pub async fn execute(
        &mut self,
        target: TargetId,
        mut conn: PooledConn,
        begin: Option<Bytes>,
        payload: &[u8],
    ) -> Result<(), SessionError> {
        let result = async {
            if let Some(b) = &begin {
                conn.send(b).await?;
                relay::until_ready(&mut self.client, &mut conn, Sink::Discard).await?;
            }
            conn.send(payload).await?;
            relay::until_ready(&mut self.client, &mut conn, Sink::Client).await
        }
        .await;
        match result {
            Ok(status) if status == STATUS_IDLE => {
                self.tx = Tx::Idle;
                self.release(target, conn);
                Ok(())
            }
            Ok(_) => {
                self.tx = Tx::Bound { target, conn };
                Ok(())
            }
            Err(RelayError::Client(e)) => Err(e),
            Err(RelayError::Server(e)) => {
                conn.broken = true;
                let name = self.app.backend(target).name().to_owned();
                tracing::warn!(target = %name, error = %e, "server connection lost");
                self.release(target, conn);
                self.tx = Tx::Idle;
                let err = PgError::error(codes::CONNECTION_FAILURE, format!("connection to target \"{name}\" lost: {e}"));
                self.client.error_ready(&err, STATUS_IDLE);
                Ok(())
            }
        }
    }

    /// Refuses a statement: inside a transaction the transaction fails as PostgreSQL would fail it.
    pub fn refuse(&mut self, err: PgError) {
        tracing::info!(user = %self.user, error = %err, "statement refused");
        self.tx = match std::mem::replace(&mut self.tx, Tx::Idle) {
            Tx::Idle => Tx::Idle,
            Tx::Deferred { .. } => Tx::Failed { conn: None },
            Tx::Bound { conn, .. } => Tx::Failed { conn: Some(conn) },
            Tx::Failed { conn } => Tx::Failed { conn },
        };
        let status = self.tx.status();
        self.client.error_ready(&err, status);
    }
}

/// search_path from the startup packet (`search_path` or `options=-c search_path=...`).
fn startup_search_path(startup: &BTreeMap<String, String>) -> Vec<String> {
    let from_options = startup.get("options").and_then(|o| {
        let mut words = o.split_whitespace();
        let mut found = None;
        while let Some(w) = words.next() {
            let kv = if w == "-c" { words.next() } else { w.strip_prefix("-c") }.or_else(|| w.strip_prefix("--"));
            if let Some(v) = kv.and_then(|kv| kv.strip_prefix("search_path=")) {
                found = Some(v.to_owned());
            }
        }
        found
    });
    let raw = startup.get("search_path").cloned().or(from_options).unwrap_or_else(|| "\"$user\", public".into());
    raw.split(',').map(|s| s.trim().trim_matches('"').to_owned()).filter(|s| !s.is_empty()).collect()
}
