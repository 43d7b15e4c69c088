//! Relaying a server's responses to the client as framed bytes, until ReadyForQuery, including COPY FROM STDIN.

use bytes::Buf;

use crate::backend::{BackendError, Outcome, ServerConn};
use crate::protocol::encode;
use crate::protocol::expect::{Expect, Reply};
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

/// What the buffered server messages ended with.
enum Step {
    /// ReadyForQuery with this status: the exchange is over.
    Ready(u8),
    /// CopyInResponse: the client's CopyData must flow to the server now.
    CopyIn,
    /// Everything buffered was relayed; more must be read.
    More,
}

/// Server replies pgsplit holds for one connection while a write to the server is blocked; past it pgsplit stops
/// reading the server and relays what it holds first (a single larger message is read whole). A client that does
/// not read its replies then stalls only its own session: the server waits on pgsplit, pgsplit on the client.
pub const REPLY_BUFFER_CAP: usize = 256 * 1024;

/// Sends `bytes` (a client's request) to the server, relaying the replies that arrive meanwhile whenever more than
/// `REPLY_BUFFER_CAP` of them are buffered. `Some(step)` when the exchange reached ReadyForQuery or COPY FROM STDIN
/// before everything was sent (a server that failed, or a COPY whose Sync the server will ignore).
async fn send(client: &mut Client, conn: &mut ServerConn, bytes: &[u8], sink: Sink) -> Result<Option<Step>, RelayError> {
    let mut off = 0;
    while !conn.send_from(bytes, &mut off, REPLY_BUFFER_CAP).await? {
        match forward_buffered(client, conn, sink).await? {
            Step::More => {}
            Step::CopyIn => {
                // The server now reads CopyData and ignores the rest of the batch (Sync, Flush): send it anyway.
                conn.send_from(bytes, &mut off, usize::MAX).await?;
                return Ok(Some(Step::CopyIn));
            }
            Step::Ready(status) => {
                // Over before the request was sent whole (the server ended the connection): never reuse it.
                conn.broken |= off < bytes.len();
                return Ok(Some(Step::Ready(status)));
            }
        }
    }
    Ok(None)
}

/// Sends a request and relays its replies until ReadyForQuery; returns its status byte (see `send`, `until_ready`).
pub async fn exchange(client: &mut Client, conn: &mut ServerConn, bytes: &[u8], sink: Sink) -> Result<u8, RelayError> {
    conn.outcome = Outcome::default();
    match send(client, conn, bytes, sink).await? {
        Some(Step::Ready(status)) => return Ok(status),
        Some(Step::CopyIn) => {
            if let Some(status) = copy_from_client(client, conn).await? {
                return Ok(status);
            }
        }
        _ => {}
    }
    relay_until_ready(client, conn, sink).await
}

/// Sends a batch that ends with Flush and relays its replies until the client speaks (see `until_client_speaks`).
pub async fn exchange_until_client_speaks(client: &mut Client, conn: &mut ServerConn, bytes: &[u8]) -> Result<(), RelayError> {
    let over = match send(client, conn, bytes, Sink::Client).await? {
        Some(Step::Ready(_)) => true,
        Some(Step::CopyIn) => copy_from_client(client, conn).await?.is_some(),
        _ => false,
    };
    if over {
        return Ok(());
    }
    until_client_speaks(client, conn).await
}

/// Relays complete server messages until ReadyForQuery and returns its status byte. Each read from the server is
/// written to the client in one write, straight from the read buffer, unless replies must be hidden or injected
/// (see `protocol::expect`).
pub async fn until_ready(client: &mut Client, conn: &mut ServerConn, sink: Sink) -> Result<u8, RelayError> {
    conn.outcome = Outcome::default();
    relay_until_ready(client, conn, sink).await
}

/// `until_ready` without resetting the exchange's outcome (`exchange` has relayed part of it already).
async fn relay_until_ready(client: &mut Client, conn: &mut ServerConn, sink: Sink) -> Result<u8, RelayError> {
    loop {
        match forward_buffered(client, conn, sink).await? {
            Step::Ready(status) => return Ok(status),
            Step::CopyIn => {
                if let Some(status) = copy_from_client(client, conn).await? {
                    return Ok(status);
                }
            }
            Step::More => conn.fill().await?,
        }
    }
}

/// Relays the complete messages in the server's read buffer, following the queue of expected replies.
async fn forward_buffered(client: &mut Client, conn: &mut ServerConn, sink: Sink) -> Result<Step, RelayError> {
    let mut off = 0;
    // Start of the bytes not yet passed on; a hidden or injected reply splices the output there.
    let mut run = 0;
    let mut step = Step::More;
    // Replies pgsplit gives itself that are due now (everything before them has been relayed): a Flush batch may
    // consist of nothing else, and no server message would ever carry them out.
    while let Some(Expect::Inject(reply)) = conn.expect.front() {
        if sink == Sink::Client {
            encode::tag_only(&mut client.wbuf, *reply);
        }
        conn.expect.pop_front();
    }
    while let Some(n) = framing::peek_len(&conn.rbuf[off..], |_| Some(MAX_MESSAGE_LEN)).map_err(|e| {
        conn.broken = true;
        BackendError::Protocol(e.to_string())
    })? {
        let tag = conn.rbuf[off];
        while let Some(Expect::Inject(reply)) = conn.expect.front() {
            let reply = *reply;
            if sink == Sink::Client {
                client.wbuf.extend_from_slice(&conn.rbuf[run..off]);
                encode::tag_only(&mut client.wbuf, reply);
            }
            run = off;
            conn.expect.pop_front();
        }
        let body = &conn.rbuf[off + 5..off + n];
        let mut hide = false;
        match tag {
            b'Z' => {
                let status = body.first().copied().unwrap_or(b'I');
                conn.status = status;
                conn.skipping = false;
                step = Step::Ready(status);
                conn.expect.clear();
                // The transaction pgsplit opened around the request is still to be ended: its answer comes later.
                hide = conn.wrapped;
            }
            b'G' => step = Step::CopyIn,
            b'E' if is_fatal(body) => {
                // The server is ending this connection (shutdown, restart, terminated backend), not the client's
                // session: the client gets an ERROR naming the target, and the exchange ends here.
                conn.outcome.error = true;
                conn.broken = true;
                if sink == Sink::Client {
                    client.wbuf.extend_from_slice(&conn.rbuf[run..off]);
                    fatal_as_error(body, &conn.target, &mut client.wbuf);
                    encode::ready_for_query(&mut client.wbuf, b'I');
                }
                run = off + n;
                off += n;
                step = Step::Ready(b'I');
                conn.status = b'I';
                conn.expect.clear();
                break;
            }
            b'E' => {
                conn.outcome.error = true;
                if sink == Sink::Discard && conn.discarded_error.is_none() {
                    conn.discarded_error = Some(bytes::Bytes::copy_from_slice(&conn.rbuf[off..off + n]));
                }
                failed_until_sync(conn);
            }
            b'C' => {
                conn.outcome.committed = body.starts_with(b"COMMIT\0");
                conn.outcome.rolled_back = body.starts_with(b"ROLLBACK\0");
                reply_part(conn, tag);
            }
            // Asynchronous messages belong to no reply.
            b'N' | b'S' | b'A' => {}
            _ => hide = reply_part(conn, tag),
        }
        if hide {
            if sink == Sink::Client {
                client.wbuf.extend_from_slice(&conn.rbuf[run..off]);
            }
            run = off + n;
        }
        off += n;
        if !matches!(step, Step::More) {
            break;
        }
    }
    if sink == Sink::Client {
        let written = if client.wbuf.is_empty() {
            client.write_raw(&conn.rbuf[run..off]).await
        } else {
            client.wbuf.extend_from_slice(&conn.rbuf[run..off]);
            client.flush().await
        };
        if let Err(e) = written {
            conn.broken = true;
            return Err(RelayError::Client(e));
        }
    }
    conn.rbuf.advance(off);
    Ok(step)
}

/// Whether an ErrorResponse body has severity FATAL or PANIC.
fn is_fatal(body: &[u8]) -> bool {
    let mut rest = body;
    while let Some((&code, tail)) = rest.split_first() {
        let Some(end) = tail.iter().position(|&b| b == 0) else { return false };
        if code == b'S' {
            return matches!(&tail[..end], b"FATAL" | b"PANIC");
        }
        rest = &tail[end + 1..];
    }
    false
}

/// Rewrites a server's FATAL ErrorResponse as an ERROR whose message names the target; other fields are kept.
fn fatal_as_error(body: &[u8], target: &str, out: &mut bytes::BytesMut) {
    encode::message(out, b'E', |b| {
        let mut rest = body;
        while let Some((&code, tail)) = rest.split_first() {
            let Some(end) = tail.iter().position(|&x| x == 0) else { break };
            let value = &tail[..end];
            b.extend_from_slice(&[code]);
            match code {
                b'S' | b'V' => b.extend_from_slice(b"ERROR"),
                b'M' => {
                    b.extend_from_slice(format!("target \"{target}\": ").as_bytes());
                    b.extend_from_slice(value);
                }
                _ => b.extend_from_slice(value),
            }
            b.extend_from_slice(&[0]);
            rest = &tail[end + 1..];
        }
        b.extend_from_slice(&[0]);
    });
}

/// A server message that is part of the reply at the queue's front: pops the entry when the reply is complete.
/// Returns whether the message must be hidden from the client.
fn reply_part(conn: &mut ServerConn, tag: u8) -> bool {
    match conn.expect.front() {
        Some(Expect::Hide { .. }) => {
            conn.expect.pop_front();
            true
        }
        Some(Expect::Forward(reply)) => {
            if reply.ends_with(tag) {
                conn.expect.pop_front();
            }
            false
        }
        _ => false,
    }
}

/// After an ErrorResponse the server skips every message up to Sync: their replies will not come, injected ones
/// must not be sent, and statements whose Parse did not complete do not exist on the connection.
fn failed_until_sync(conn: &mut ServerConn) {
    conn.skipping = true;
    while let Some(e) = conn.expect.front() {
        if *e == Expect::Forward(Reply::Sync) {
            break;
        }
        if let Some(s) = e.creates() {
            conn.prepared.remove(s);
        }
        conn.expect.pop_front();
    }
}

/// Forwards the client's CopyData messages to the server, in batches as they arrive, through CopyDone or CopyFail.
/// `Some(status)` when the server's replies relayed meanwhile reached ReadyForQuery (it ended the COPY early).
async fn copy_from_client(client: &mut Client, conn: &mut ServerConn) -> Result<Option<u8>, RelayError> {
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
            // The server answers CopyData only with notices and errors; past the cap they are relayed first.
            let data = client.rbuf.split_to(off).freeze();
            let mut sent = 0;
            while !conn.send_from(&data, &mut sent, REPLY_BUFFER_CAP).await? {
                if let Step::Ready(status) = forward_buffered(client, conn, Sink::Client).await? {
                    // The server ended the COPY and the exchange: it ignores CopyData from now on, but the rest of
                    // this chunk must still go, or the next message would be read as part of it.
                    conn.send_from(&data, &mut sent, usize::MAX).await?;
                    return Ok(Some(status));
                }
            }
        }
        if done {
            return Ok(None);
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
        match forward_buffered(client, conn, Sink::Client).await? {
            Step::Ready(_) => return Ok(()),
            Step::CopyIn => {
                if copy_from_client(client, conn).await?.is_some() {
                    return Ok(());
                }
                continue;
            }
            Step::More => {}
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
