//! Relaying a server's responses to the client as framed bytes, until ReadyForQuery, including COPY FROM STDIN.

use bytes::Buf;

use crate::backend::{BackendError, Outcome, ServerConn};
use crate::protocol::framing::{self, MAX_MESSAGE_LEN};

use super::client::Client;
use super::SessionError;

/// Why a relay stopped early.
pub enum RelayError {
    /// The client went away or broke the protocol: the session ends.
    Client(SessionError),
    /// The server failed: the client is told, the connection is discarded.
    Server(BackendError),
}

impl From<BackendError> for RelayError {
    fn from(e: BackendError) -> Self {
        RelayError::Server(e)
    }
}

/// Where relayed server bytes go.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// To the client, unchanged.
    Client,
    /// Nowhere: the response to a statement pgsplit replayed on its own (a deferred BEGIN).
    Discard,
}

/// Relays complete server messages until ReadyForQuery and returns its status byte. Each read from the server is
/// written to the client in one write, straight from the read buffer.
pub async fn until_ready(client: &mut Client, conn: &mut ServerConn, sink: Sink) -> Result<u8, RelayError> {
    conn.outcome = Outcome::default();
    loop {
        let mut off = 0;
        let mut ready = None;
        let mut copy_in = false;
        while let Some(n) = framing::peek_len(&conn.rbuf[off..], |_| Some(MAX_MESSAGE_LEN)).map_err(|e| {
            conn.broken = true;
            BackendError::Protocol(e.to_string())
        })? {
            let tag = conn.rbuf[off];
            let body = &conn.rbuf[off + 5..off + n];
            off += n;
            match tag {
                b'Z' => {
                    ready = Some(body.first().copied().unwrap_or(b'I'));
                    break;
                }
                b'G' => {
                    copy_in = true;
                    break;
                }
                b'E' => conn.outcome.error = true,
                b'C' => {
                    conn.outcome.committed = body.starts_with(b"COMMIT\0");
                    conn.outcome.rolled_back = body.starts_with(b"ROLLBACK\0");
                }
                _ => {}
            }
        }
        if off > 0 {
            if sink == Sink::Client {
                if let Err(e) = client.write_raw(&conn.rbuf[..off]).await {
                    conn.broken = true;
                    return Err(RelayError::Client(e));
                }
            }
            conn.rbuf.advance(off);
        }
        if let Some(status) = ready {
            conn.status = status;
            return Ok(status);
        }
        if copy_in {
            copy_from_client(client, conn).await?;
            continue;
        }
        conn.fill().await?;
    }
}

/// Forwards the client's CopyData messages to the server, in batches as they arrive, through CopyDone or CopyFail.
async fn copy_from_client(client: &mut Client, conn: &mut ServerConn) -> Result<(), RelayError> {
    loop {
        let mut off = 0;
        let mut done = false;
        loop {
            match framing::peek_len(&client.rbuf[off..], framing::frontend_limit) {
                Ok(Some(n)) => {
                    let tag = client.rbuf[off];
                    off += n;
                    if tag == b'c' || tag == b'f' {
                        done = true;
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    conn.broken = true;
                    return Err(RelayError::Client(e.into()));
                }
            }
        }
        if off > 0 {
            conn.send(&client.rbuf[..off]).await?;
            client.rbuf.advance(off);
        }
        if done {
            return Ok(());
        }
        match client.fill().await {
            Ok(0) => {
                conn.broken = true;
                return Err(RelayError::Client(SessionError::ClientGone));
            }
            Ok(_) => {}
            Err(e) => {
                conn.broken = true;
                return Err(RelayError::Client(e));
            }
        }
    }
}

/// After a Flush: relays whatever the server sends until the client has more to say (or the server sends
/// ReadyForQuery, which cannot happen before a Sync, but is handled).
pub async fn until_client_speaks(client: &mut Client, conn: &mut ServerConn) -> Result<(), RelayError> {
    use tokio::io::AsyncReadExt;
    loop {
        let mut off = 0;
        while let Some(n) = framing::peek_len(&conn.rbuf[off..], |_| Some(MAX_MESSAGE_LEN)).map_err(|e| {
            conn.broken = true;
            BackendError::Protocol(e.to_string())
        })? {
            off += n;
        }
        if off > 0 {
            client.write_raw(&conn.rbuf[..off]).await.map_err(RelayError::Client)?;
            conn.rbuf.advance(off);
        }
        if !client.rbuf.is_empty() {
            return Ok(());
        }
        if client.rbuf.capacity() < 1024 {
            client.rbuf.reserve(8192);
        }
        if conn.rbuf.capacity() - conn.rbuf.len() < 4096 {
            conn.rbuf.reserve(8192);
        }
        tokio::select! {
            r = conn.stream.read_buf(&mut conn.rbuf) => match r {
                Ok(0) => { conn.broken = true; return Err(RelayError::Server(BackendError::Closed)); }
                Ok(_) => {}
                Err(e) => { conn.broken = true; return Err(RelayError::Server(e.into())); }
            },
            r = client.stream.read_buf(&mut client.rbuf) => match r {
                Ok(0) => { conn.broken = true; return Err(RelayError::Client(SessionError::ClientGone)); }
                Ok(_) => return Ok(()),
                Err(e) => { conn.broken = true; return Err(RelayError::Client(e.into())); }
            },
        }
    }
}
