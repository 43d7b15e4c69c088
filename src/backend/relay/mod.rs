//! The exchange of a client's request with its server: send it, relay the server's responses to the client as
//! framed bytes until ReadyForQuery (following the queue of expected replies), including COPY FROM STDIN.
//!
//! Every exchange runs under an `Exchange` guard: the connection counts as broken from the first byte sent until
//! the exchange reaches its end, so an I/O error, a protocol error, or a future dropped midway (the client's task
//! ended) leaves it closed, never reused.

use bytes::{Buf, Bytes};

use crate::client::{Client, ClientError};
use crate::protocol::expect::{Expect, Reply};
use crate::protocol::framing::{self, MAX_MESSAGE_LEN};
use crate::protocol::{decode, encode};
use crate::session::machine::copy;

use super::{BackendError, Outcome, ServerConn};

mod copy_in;

use copy_in::{copy_from_client, sync_after_copy};

/// Why a relay stopped early.
#[derive(Debug)]
pub enum RelayError {
    /// The client went away or broke the protocol: the session ends.
    Client(ClientError),
    /// The server failed: the client is told, the connection is discarded.
    Server(BackendError),
    /// The server ended a connection that held the client's session (`ServerConn::holds_session`) with a FATAL,
    /// which went to the client unchanged: the client's session ends, as a direct connection would.
    Ended,
}

impl From<ClientError> for RelayError {
    fn from(e: ClientError) -> Self {
        RelayError::Client(e)
    }
}

/// A connection in the middle of an exchange: dropped before `done`, it marks the connection broken.
pub(super) struct Exchange<'a> {
    conn: &'a mut ServerConn,
    finished: bool,
}

impl<'a> Exchange<'a> {
    /// The exchange begins (before its first byte is sent).
    #[inline]
    pub(super) fn start(conn: &'a mut ServerConn) -> Exchange<'a> {
        Exchange { conn, finished: false }
    }

    /// The exchange reached its end (ReadyForQuery, or the client's next message after a Flush).
    #[inline]
    pub(super) fn done(mut self) {
        self.finished = true;
    }
}

impl Drop for Exchange<'_> {
    #[inline]
    fn drop(&mut self) {
        if !self.finished {
            self.conn.broken = true;
        }
    }
}

impl std::ops::Deref for Exchange<'_> {
    type Target = ServerConn;

    fn deref(&self) -> &ServerConn {
        self.conn
    }
}

impl std::ops::DerefMut for Exchange<'_> {
    fn deref_mut(&mut self) -> &mut ServerConn {
        self.conn
    }
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
    let mut conn = Exchange::start(conn);
    conn.outcome = Outcome::default();
    conn.send_ahead().await?;
    let status = match send(client, &mut conn, bytes, sink).await? {
        Some(Step::Ready(status)) => status,
        Some(Step::CopyIn) => match copy_from_client(client, &mut conn).await? {
            Some(status) => status,
            None => match sync_after_copy(client, &mut conn).await? {
                Some(status) => status,
                None => relay_until_ready(client, &mut conn, sink).await?,
            },
        },
        _ => relay_until_ready(client, &mut conn, sink).await?,
    };
    conn.done();
    Ok(status)
}

/// Sends a batch that ends with Flush and relays its replies until the client speaks (see `until_client_speaks`);
/// once every reply is relayed, a client silent for `idle` (`idle_transaction_timeout`) ends the wait with
/// `ClientError::IdleInTransaction`.
pub async fn exchange_until_client_speaks(
    client: &mut Client,
    conn: &mut ServerConn,
    bytes: &[u8],
    idle: Option<std::time::Duration>,
) -> Result<(), RelayError> {
    let mut conn = Exchange::start(conn);
    conn.send_ahead().await?;
    let over = match send(client, &mut conn, bytes, Sink::Client).await? {
        Some(Step::Ready(_)) => true,
        Some(Step::CopyIn) => copy_from_client(client, &mut conn).await?.is_some(),
        _ => false,
    };
    if !over {
        until_client_speaks(client, &mut conn, idle).await?;
    }
    conn.done();
    Ok(())
}

/// Relays the replies still due to a batch the client flushed, until none is due or the server reports an error in
/// it (it then skips every message up to Sync). Before a Query or FunctionCall on that connection: the server answers
/// it only if the batch went through, so pgsplit must know which before it sends one (sent to a server that skips,
/// it would wait forever for an answer; PostgreSQL ignores it).
pub async fn until_replied(client: &mut Client, conn: &mut ServerConn) -> Result<(), RelayError> {
    let mut conn = Exchange::start(conn);
    while !relay_buffered(client, &mut conn).await? && !conn.skipping && !conn.expect.is_empty() {
        wait_for_server(client, &mut conn).await?;
    }
    conn.done();
    Ok(())
}

/// Relays the complete messages buffered, through COPY FROM STDIN if one starts; true when the exchange reached
/// ReadyForQuery.
async fn relay_buffered(client: &mut Client, conn: &mut ServerConn) -> Result<bool, RelayError> {
    loop {
        match forward_buffered(client, conn, Sink::Client).await? {
            Step::Ready(_) => return Ok(true),
            Step::CopyIn if copy_from_client(client, conn).await?.is_some() => return Ok(true),
            Step::CopyIn => {}
            Step::More => return Ok(false),
        }
    }
}

/// Relays complete server messages until ReadyForQuery and returns its status byte. Each read from the server is
/// written to the client in one write, straight from the read buffer, unless replies must be hidden or injected
/// (see `protocol::expect`).
pub async fn until_ready(client: &mut Client, conn: &mut ServerConn, sink: Sink) -> Result<u8, RelayError> {
    let mut conn = Exchange::start(conn);
    conn.outcome = Outcome::default();
    let status = relay_until_ready(client, &mut conn, sink).await?;
    conn.done();
    Ok(status)
}

/// Sends Query messages pgsplit replays or runs on its own (a deferred BEGIN and what was held, pgsplit's own
/// COMMIT) in one write and relays their replies nowhere; returns the status after the last. The first error among
/// them is kept whole (`ServerConn::take_discarded_error`).
pub async fn replay(client: &mut Client, conn: &mut ServerConn, messages: &[Bytes]) -> Result<u8, RelayError> {
    let mut conn = Exchange::start(conn);
    conn.discarded_error = None;
    conn.send_ahead().await?;
    conn.send(&messages.concat()).await?;
    let mut status = crate::protocol::STATUS_IN_TX;
    for _ in messages {
        conn.outcome = Outcome::default();
        status = relay_until_ready(client, &mut conn, Sink::Discard).await?;
    }
    conn.done();
    Ok(status)
}

/// `until_ready` without resetting the exchange's outcome (`exchange` has relayed part of it already).
async fn relay_until_ready(client: &mut Client, conn: &mut ServerConn, sink: Sink) -> Result<u8, RelayError> {
    loop {
        // Right after a request is sent nothing is buffered yet: straight to the wait (forward_buffered would only
        // write nothing).
        let step = match nothing_to_forward(client, conn) {
            true => Step::More,
            false => forward_buffered(client, conn, sink).await?,
        };
        match step {
            Step::Ready(status) => return Ok(status),
            Step::CopyIn => {
                if let Some(status) = copy_from_client(client, conn).await? {
                    return Ok(status);
                }
                if let Some(status) = sync_after_copy(client, conn).await? {
                    return Ok(status);
                }
            }
            Step::More => wait_for_server(client, conn).await?,
        }
    }
}

/// Waits for more of the server's reply, noticing meanwhile a client that goes away (its session then ends at
/// once, and with it the statement: see `Session::client_left`).
#[inline]
async fn wait_for_server(client: &mut Client, conn: &mut ServerConn) -> Result<(), RelayError> {
    tokio::select! {
        biased;
        r = conn.fill() => Ok(r?),
        e = client.gone() => Err(RelayError::Client(e)),
    }
}

/// What the relay does with one server message besides following it.
enum Disposition {
    /// Pass it on to the client.
    Pass,
    /// Hide it (a reply to what pgsplit added, or the ReadyForQuery of a request pgsplit wrapped).
    Hide,
    /// The server's FATAL: the client gets it as an ERROR naming the target, and ReadyForQuery idle.
    Fatal,
    /// A message the server must not send on this connection: the exchange fails (the connection is closed).
    Refuse,
    /// The server's FATAL on a connection that holds the client's session: it goes to the client as it is, and the
    /// client's session ends.
    EndSession,
}

/// The relay's place in the server's read buffer: `off` is the next message, `run` the start of the bytes not yet
/// passed on (a hidden or injected reply splices the output there).
#[derive(Default)]
struct Cursor {
    off: usize,
    run: usize,
}

impl Cursor {
    /// Moves the bytes before the current message to the client's buffer; what follows starts a new run.
    #[inline]
    fn splice(&mut self, client: &mut Client, conn: &ServerConn, sink: Sink, next_run: usize) {
        if sink == Sink::Client {
            client.wbuf.extend_from_slice(&conn.rbuf[self.run..self.off]);
        }
        self.run = next_run;
    }
}

/// Relays the complete messages in the server's read buffer, following the queue of expected replies.
async fn forward_buffered(client: &mut Client, conn: &mut ServerConn, sink: Sink) -> Result<Step, RelayError> {
    let mut cur = Cursor::default();
    let mut step = Step::More;
    let mut ended = false;
    // Replies pgsplit gives itself that are due now (everything before them has been relayed): a Flush batch may
    // consist of nothing else, and no server message would ever carry them out.
    if matches!(conn.expect.front(), Some(Expect::Inject(_))) {
        inject_due(client, conn, sink, &mut cur);
    }
    while let Some(n) = framing::peek_len(&conn.rbuf[cur.off..], |_| Some(MAX_MESSAGE_LEN)).map_err(BackendError::Framing)? {
        if matches!(conn.expect.front(), Some(Expect::Inject(_))) {
            inject_due(client, conn, sink, &mut cur);
        }
        let (next, disposition) = follow_message(conn, sink, cur.off, n);
        match disposition {
            Disposition::Pass => {}
            Disposition::Refuse => {
                let tag = char::from(conn.rbuf[cur.off]);
                return Err(BackendError::Protocol(format!("unexpected message '{tag}' from the server")).into());
            }
            Disposition::Hide => cur.splice(client, conn, sink, cur.off + n),
            Disposition::EndSession => {
                cur.splice(client, conn, sink, cur.off + n);
                client.wbuf.extend_from_slice(&conn.rbuf[cur.off..cur.off + n]);
                ended = true;
            }
            Disposition::Fatal => {
                cur.splice(client, conn, sink, cur.off + n);
                if sink == Sink::Client {
                    fatal_as_error(&conn.rbuf[cur.off + 5..cur.off + n], &conn.target, &mut client.wbuf);
                    encode::ready_for_query(&mut client.wbuf, b'I');
                }
            }
        }
        cur.off += n;
        step = next;
        if !matches!(step, Step::More) {
            break;
        }
    }
    // Replies pgsplit gives itself after the last server message buffered: due now too (a client that flushed
    // and waits for every reply would otherwise wait forever).
    if matches!(step, Step::More) && matches!(conn.expect.front(), Some(Expect::Inject(_))) {
        inject_due(client, conn, sink, &mut cur);
    }
    if sink == Sink::Client {
        if client.wbuf.is_empty() {
            client.write_raw(&conn.rbuf[cur.run..cur.off]).await?;
        } else {
            client.wbuf.extend_from_slice(&conn.rbuf[cur.run..cur.off]);
            client.flush().await?;
        }
    }
    conn.rbuf.advance(cur.off);
    if ended {
        client.flush().await?;
        return Err(RelayError::Ended);
    }
    Ok(step)
}

/// Whether `forward_buffered` has nothing to do: no server bytes buffered, no reply of pgsplit's due, nothing of
/// pgsplit's own waiting to be written to the client.
#[inline]
fn nothing_to_forward(client: &Client, conn: &ServerConn) -> bool {
    conn.rbuf.is_empty() && client.wbuf.is_empty() && !matches!(conn.expect.front(), Some(Expect::Inject(_)))
}

/// Sends the replies pgsplit injects that are due before the current message (everything before them relayed).
#[inline]
fn inject_due(client: &mut Client, conn: &mut ServerConn, sink: Sink, cur: &mut Cursor) {
    while let Some(Expect::Inject(reply)) = conn.expect.front() {
        let reply = *reply;
        cur.splice(client, conn, sink, cur.off);
        if sink == Sink::Client {
            encode::tag_only(&mut client.wbuf, reply);
        }
        conn.expect.pop_front();
    }
}

/// Follows the server message of `n` bytes at `off`: the connection's status, outcome and queue of expected
/// replies. Returns whether the exchange goes on, and what to do with the message.
#[inline]
fn follow_message(conn: &mut ServerConn, sink: Sink, off: usize, n: usize) -> (Step, Disposition) {
    let tag = conn.rbuf[off];
    // The replies to what `send_ahead` sent, before the request's own: hidden, its ReadyForQuery included.
    if conn.hidden_ready > 0 {
        conn.hidden_ready -= u8::from(tag == b'Z');
        return (Step::More, Disposition::Hide);
    }
    let body = &conn.rbuf[off + 5..off + n];
    match tag {
        b'Z' => {
            let status = body.first().copied().unwrap_or(b'I');
            conn.status = status;
            conn.skipping = false;
            conn.expect.clear();
            // The transaction pgsplit opened around the request is still to be ended: its answer comes later.
            (Step::Ready(status), if conn.wrapped { Disposition::Hide } else { Disposition::Pass })
        }
        b'G' | b'W' => match copy::from_server(copy::Phase::None, tag) {
            copy::FromServer::Phase(copy::Phase::In) => (Step::CopyIn, Disposition::Pass),
            _ => {
                // CopyBothResponse: a replication stream on a connection pgsplit opened as a normal one.
                conn.broken = true;
                conn.expect.clear();
                (Step::Ready(b'I'), Disposition::Refuse)
            }
        },
        b'E' if is_fatal(body) => {
            // The server is ending this connection (shutdown, restart, terminated backend), not the client's
            // session: the client gets an ERROR naming the target, and the exchange ends here.
            conn.outcome.error = true;
            conn.broken = true;
            conn.status = b'I';
            conn.expect.clear();
            (Step::Ready(b'I'), if conn.holds_session { Disposition::EndSession } else { Disposition::Fatal })
        }
        b'E' => {
            conn.outcome.error = true;
            conn.outcome.stale_statement |= is_stale_statement(body);
            if sink == Sink::Discard && conn.discarded_error.is_none() {
                conn.discarded_error = Some(Bytes::copy_from_slice(&conn.rbuf[off..off + n]));
            }
            failed_until_sync(conn);
            (Step::More, Disposition::Pass)
        }
        b't' | b'T' | b'n' if matches!(conn.expect.front(), Some(Expect::Shape(_))) => {
            if tag != b't' {
                let shape = decode::row_shape(tag, body);
                if let Some(Expect::Shape(cell)) = conn.expect.pop_front() {
                    let _ = cell.set(shape);
                }
            }
            (Step::More, Disposition::Hide)
        }
        b'C' => {
            conn.outcome.committed = body.starts_with(b"COMMIT\0");
            conn.outcome.rolled_back = body.starts_with(b"ROLLBACK\0");
            // Hidden: the completion of an Execute pgsplit added (`ServerConn::discard_ahead_in_batch`).
            let hidden = reply_part(conn, tag);
            (Step::More, if hidden { Disposition::Hide } else { Disposition::Pass })
        }
        // Asynchronous messages belong to no reply.
        b'N' | b'S' | b'A' => (Step::More, Disposition::Pass),
        _ if reply_part(conn, tag) => (Step::More, Disposition::Hide),
        _ => (Step::More, Disposition::Pass),
    }
}

/// Whether an ErrorResponse is PostgreSQL's refusal to run a prepared statement whose result type changed.
#[inline]
fn is_stale_statement(body: &[u8]) -> bool {
    decode::error_field_bytes(body).any(|(code, v)| code == b'C' && v == b"0A000")
        && decode::error_field_bytes(body)
            .any(|(code, v)| code == b'M' && v.starts_with(b"cached plan must not change result type"))
}

/// Whether an ErrorResponse body has severity FATAL or PANIC.
#[inline]
pub(super) fn is_fatal(body: &[u8]) -> bool {
    decode::error_field_bytes(body).find(|(code, _)| *code == b'S').is_some_and(|(_, v)| matches!(v, b"FATAL" | b"PANIC"))
}

/// Rewrites a server's FATAL ErrorResponse as an ERROR whose message names the target; other fields are kept.
fn fatal_as_error(body: &[u8], target: &str, out: &mut bytes::BytesMut) {
    encode::message(out, b'E', |b| {
        for (code, value) in decode::error_field_bytes(body) {
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
        }
        b.extend_from_slice(&[0]);
    });
}

/// A server message that is part of the reply at the queue's front: pops the entry when the reply is complete.
/// Returns whether the message must be hidden from the client.
#[inline]
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

/// After a Flush: relays whatever the server sends until the client has more to say (or the server sends
/// ReadyForQuery, which cannot happen before a Sync, but is handled).
async fn until_client_speaks(
    client: &mut Client,
    conn: &mut ServerConn,
    idle: Option<std::time::Duration>,
) -> Result<(), RelayError> {
    while !relay_buffered(client, conn).await? && client.rbuf.is_empty() {
        // With every reply relayed the server is idle: the wait is the client's, bounded by `idle`.
        let side = match idle.filter(|_| conn.expect.is_empty()) {
            None => read_either(client, conn).await?,
            // Cancel-safe: each side's read lands in its buffer.
            Some(limit) => match tokio::time::timeout(limit, read_either(client, conn)).await {
                Ok(side) => side?,
                Err(_) => return Err(RelayError::Client(ClientError::IdleInTransaction)),
            },
        };
        if side == Side::Client {
            break;
        }
    }
    Ok(())
}

/// Which socket `read_either` read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Server,
    Client,
}

/// Reads whichever of the server and the client sends first, into its read buffer; either one closing is an error
/// (the server's, or the client's going away).
async fn read_either(client: &mut Client, conn: &mut ServerConn) -> Result<Side, RelayError> {
    use tokio::io::AsyncReadExt;
    if client.rbuf.capacity() - client.rbuf.len() < 1024 {
        client.rbuf.reserve(8192);
    }
    if conn.rbuf.capacity() - conn.rbuf.len() < 4096 {
        conn.rbuf.reserve(8192);
    }
    tokio::select! {
        r = conn.stream.read_buf(&mut conn.rbuf) => match r {
            Ok(0) => Err(RelayError::Server(BackendError::Closed)),
            Ok(_) => Ok(Side::Server),
            Err(e) => Err(RelayError::Server(e.into())),
        },
        r = client.stream.read_buf(&mut client.rbuf) => match r {
            Ok(0) => Err(RelayError::Client(ClientError::Gone)),
            Ok(_) => Ok(Side::Client),
            Err(e) => Err(RelayError::Client(e.into())),
        },
    }
}

/// Relays what an idle pinned connection sends unprompted (NotificationResponse, NoticeResponse, ParameterStatus)
/// after `ServerConn::fill`; anything else from an idle connection breaks it. True when that was the server's FATAL
/// (it ended the connection, and with it what the session kept there): it is relayed too, as it is.
pub async fn unprompted(client: &mut Client, conn: &mut ServerConn) -> Result<bool, ClientError> {
    let mut off = 0;
    let mut fatal = false;
    while let Ok(Some(n)) = framing::peek_len(&conn.rbuf[off..], |_| Some(MAX_MESSAGE_LEN)) {
        if !matches!(conn.rbuf[off], b'A' | b'N' | b'S') {
            conn.broken = true;
            if conn.rbuf[off] == b'E' && is_fatal(&conn.rbuf[off + 5..off + n]) {
                fatal = true;
                off += n;
            }
            break;
        }
        off += n;
    }
    if off > 0 {
        client.write_raw(&conn.rbuf[..off]).await?;
        conn.rbuf.advance(off);
    }
    Ok(fatal)
}
