//! The client's socket with its read and write buffers, read one whole message at a time; shared by the session
//! (which reads requests) and the backend's relay (which writes replies and forwards COPY data).

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::protocol::encode::{self, PgError};
use crate::protocol::framing::{self, Frame};
use crate::stream::Stream;

/// Why reading from or writing to the client failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The client closed the connection mid-message or mid-exchange.
    #[error("client disconnected")]
    Gone,
    /// A socket error.
    #[error("client I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The client sent a message the framing refuses (length, type).
    #[error(transparent)]
    Frame(#[from] framing::FrameError),
    /// The client stayed silent past `idle_transaction_timeout` while its flushed batch held a server connection.
    #[error("idle in a transaction past idle_transaction_timeout")]
    IdleInTransaction,
}

/// A read buffer up to this size goes to the thread's spares when its client goes idle (a larger one is freed).
const IDLE_BUFFER_KEEP: usize = 16 * 1024;

/// The size of a read buffer made when no spare is at hand.
const READ_BUFFER: usize = 8192;

/// Most spare read buffers one thread keeps.
const SPARES_MAX: usize = 64;

thread_local! {
    /// Read buffers of this thread's idle clients, for the next client with something to read: an idle client holds
    /// no read buffer, only its socket and its session (README, *Memory per connection*).
    static SPARES: std::cell::RefCell<Vec<BytesMut>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Most bytes of a client's next requests pgsplit reads ahead while it waits for something else (a server's reply,
/// a pool connection): past it the client is not read until the wait is over, and TCP holds the rest.
pub const READ_AHEAD_MAX: usize = 64 * 1024;

/// A connected client.
pub struct Client {
    /// The socket (plain or TLS).
    pub stream: Stream,
    /// Bytes read and not yet framed.
    pub rbuf: BytesMut,
    /// Messages pgsplit builds itself, flushed once per reply.
    pub wbuf: BytesMut,
    /// A copy of what is written to the client while a reply the session cache may keep is relayed.
    pub capture: Option<Box<Capture>>,
}

/// The bytes written to a client from a point on, up to a limit (`Client::capture`): the reply the session cache
/// stores is the one the client received.
#[derive(Debug, Default)]
pub struct Capture {
    /// What was written so far.
    pub bytes: Vec<u8>,
    /// Bytes queued in `wbuf` before the capture began: written, but not part of it.
    skip: usize,
    /// The most it keeps; past it the capture is given up (`over`).
    limit: usize,
    /// The reply outgrew `limit`: nothing is kept.
    pub over: bool,
}

impl Capture {
    /// A capture of what follows the `queued` bytes already in the write buffer, of at most `limit` bytes.
    pub fn new(queued: usize, limit: usize) -> Box<Capture> {
        Box::new(Capture { bytes: Vec::new(), skip: queued, limit, over: false })
    }

    /// Records bytes written to the client.
    fn take(&mut self, written: &[u8]) {
        let from = self.skip.min(written.len());
        self.skip -= from;
        let rest = written.get(from..).unwrap_or_default();
        if self.over || self.bytes.len() + rest.len() > self.limit {
            self.over = true;
            self.bytes = Vec::new();
            return;
        }
        self.bytes.extend_from_slice(rest);
    }

    /// The capture with what is still queued in the write buffer (`wbuf`), which the client will receive next.
    pub fn finish(mut self, wbuf: &[u8]) -> Option<Vec<u8>> {
        self.take(wbuf);
        (!self.over).then_some(self.bytes)
    }
}

impl Client {
    /// Wraps a socket, keeping bytes already read during startup.
    pub fn new(stream: Stream, rbuf: BytesMut) -> Client {
        Client { stream, rbuf, wbuf: BytesMut::new(), capture: None }
    }

    /// The next whole message; `Ok(None)` when the client closed the connection between messages.
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, ClientError> {
        self.read_frame_within(framing::MAX_MESSAGE_LEN).await
    }

    /// `read_frame`, refusing a message longer than `max` (08P01) before reading it whole.
    pub async fn read_frame_within(&mut self, max: usize) -> Result<Option<Frame>, ClientError> {
        loop {
            if let Some(f) = framing::next_frontend_within(&mut self.rbuf, max)? {
                return Ok(Some(f));
            }
            if self.rbuf.is_empty() {
                // Idle between messages: the buffer goes back to the thread's spares until the socket is readable.
                self.spare_buffer();
                if let Stream::Plain(tcp) = &mut self.stream {
                    // The socket's own readiness (no waiter list, unlike `readable()`).
                    std::future::poll_fn(|cx| tcp.poll_read_ready(cx)).await?;
                }
            }
            if self.fill().await? == 0 {
                return if self.rbuf.is_empty() { Ok(None) } else { Err(ClientError::Gone) };
            }
        }
    }

    /// Reads more bytes; returns how many (0 at end of stream).
    pub async fn fill(&mut self) -> Result<usize, ClientError> {
        if self.rbuf.capacity() - self.rbuf.len() < 1024 {
            if self.rbuf.capacity() == 0 {
                self.rbuf = SPARES.with(|s| s.borrow_mut().pop()).unwrap_or_default();
            }
            if self.rbuf.capacity() - self.rbuf.len() < 1024 {
                self.rbuf.reserve(READ_BUFFER);
            }
        }
        Ok(self.stream.read_into(&mut self.rbuf).await?)
    }

    /// Gives the (empty) read buffer to the thread's spares, or frees it when it is large or spares are many; frees
    /// the (empty) write buffer.
    fn spare_buffer(&mut self) {
        if self.wbuf.is_empty() && self.wbuf.capacity() > 0 {
            self.wbuf = BytesMut::new();
        }
        let buf = std::mem::take(&mut self.rbuf);
        if (1024..=IDLE_BUFFER_KEEP).contains(&buf.capacity()) {
            SPARES.with(|s| {
                let mut spares = s.borrow_mut();
                if spares.len() < SPARES_MAX {
                    spares.push(buf);
                }
            });
        }
    }

    /// Reads what the client sends while pgsplit waits on something else, so that a client that goes away is
    /// noticed at once (PostgreSQL notices it only when it next writes); returns only then, with why. What the client
    /// sends meanwhile (a pipelining client's next requests) stays in `rbuf`, up to `READ_AHEAD_MAX`; past it this
    /// waits forever. Cancel-safe: a read either lands in `rbuf` or does not happen.
    pub async fn gone(&mut self) -> ClientError {
        loop {
            if self.rbuf.len() >= READ_AHEAD_MAX {
                return std::future::pending().await;
            }
            if let Stream::Plain(tcp) = &mut self.stream {
                // Readiness first: the wait costs no buffer and no read (TLS is read at once: its records may
                // already hold bytes).
                if let Err(e) = std::future::poll_fn(|cx| tcp.poll_read_ready(cx)).await {
                    return e.into();
                }
            }
            match self.fill().await {
                Ok(0) => return ClientError::Gone,
                Ok(_) => {}
                Err(e) => return e,
            }
        }
    }

    /// Writes pgsplit's own pending messages.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        if !self.wbuf.is_empty() {
            if let Some(c) = &mut self.capture {
                c.take(&self.wbuf);
            }
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Writes relayed bytes directly (no copy into `wbuf`).
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.flush().await?;
        if let Some(c) = &mut self.capture {
            c.take(bytes);
        }
        Ok(self.stream.write_all(bytes).await?)
    }

    /// Queues an ErrorResponse followed by ReadyForQuery with `status`.
    pub fn error_ready(&mut self, err: &PgError, status: u8) {
        err.encode(&mut self.wbuf);
        encode::ready_for_query(&mut self.wbuf, status);
    }

    /// Queues CommandComplete with `tag` followed by ReadyForQuery with `status`.
    pub fn complete_ready(&mut self, tag: &str, status: u8) {
        encode::command_complete(&mut self.wbuf, tag);
        encode::ready_for_query(&mut self.wbuf, status);
    }

    /// Sends a FATAL error and ends the conversation (best effort: the client may already be gone).
    pub async fn fatal(&mut self, err: &PgError) {
        err.encode(&mut self.wbuf);
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle client holds no read buffer: waiting for its next message, its buffer is with the thread's spares,
    /// and its next message is read into one of them.
    #[tokio::test]
    async fn an_idle_client_holds_no_read_buffer() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut peer = tokio::net::TcpStream::connect(listener.local_addr().expect("addr")).await.expect("connect");
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut client = Client::new(Stream::Plain(tcp.into()), BytesMut::new());
        let query = [b'Q', 0, 0, 0, 13, b's', b'e', b'l', b'e', b'c', b't', b' ', b'1', 0];
        peer.write_all(&query).await.expect("write");
        let frame = client.read_frame().await.expect("read").expect("a frame");
        assert_eq!(&frame.bytes[..], &query[..]);
        drop(frame);
        let spares_before = SPARES.with(|s| s.borrow().len());
        // Nothing more to read: the wait gives the buffer back.
        let idle = tokio::time::timeout(std::time::Duration::from_millis(50), client.read_frame()).await;
        assert!(idle.is_err(), "no message was sent");
        assert_eq!(client.rbuf.capacity(), 0, "an idle client keeps its read buffer");
        assert_eq!(SPARES.with(|s| s.borrow().len()), spares_before + 1);
        peer.write_all(&query).await.expect("write");
        let frame = client.read_frame().await.expect("read").expect("a frame");
        assert_eq!(&frame.bytes[..], &query[..]);
        assert_eq!(SPARES.with(|s| s.borrow().len()), spares_before, "the spare was taken back");
    }
}
