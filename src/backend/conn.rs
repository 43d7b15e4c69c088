//! One server connection: TCP, optional TLS, authentication towards the server, and framed reads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::worker::Socket as TcpStream;
use bytes::{Buf, BytesMut};
use postgres_protocol::message::backend::ErrorFields;
use postgres_protocol::message::frontend;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use crate::protocol::framing::{self, Frame};
use crate::stream::Stream;

use super::{BackendError, LoginId, Outcome, ServerConn};

/// How long establishing a server connection (TCP, TLS, auth) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How to reach and log in to one target.
pub struct TargetSpec {
    /// The target's configured name, for errors and logs.
    pub name: String,
    /// Server host name or address.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Role pgsplit logs in as.
    pub user: String,
    /// Its password, if the server asks for one.
    pub password: Option<String>,
    /// Database on the server.
    pub dbname: String,
    /// TLS configuration and the name to verify, when the target uses TLS.
    pub tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    /// A server that answers the SSLRequest with `N` is refused (`require` and the verify modes); otherwise
    /// (`prefer`, `allow`) the connection goes on in plain TCP, as libpq's does.
    pub tls_required: bool,
    /// The server's certificate is verified (`verify-ca`, `verify-full`, or pinned): only then is a cleartext
    /// password request answered, since otherwise anyone in the path could ask for it.
    pub verified: bool,
    /// The address is a transaction pooler (`upstream: transaction_pooler`): consecutive transactions on one
    /// connection may run on different PostgreSQL backends, so no session state may be left between them.
    pub upstream_pooler: bool,
    /// The pool's registry of server connections (`SHOW SERVERS`, `RECONNECT`, `KILL`); each pool has its own.
    pub servers: Arc<super::servers::Servers>,
}

impl TargetSpec {
    /// The same server, login and TLS for another database (PgBouncer's `*` database), named after it.
    pub fn for_database(&self, dbname: &str) -> TargetSpec {
        TargetSpec {
            name: dbname.to_owned(),
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
            password: self.password.clone(),
            dbname: dbname.to_owned(),
            tls: self.tls.clone(),
            tls_required: self.tls_required,
            verified: self.verified,
            upstream_pooler: self.upstream_pooler,
            servers: Arc::default(),
        }
    }

    /// Whether `other` is on the same server (host and port).
    pub fn same_server(&self, other: &TargetSpec) -> bool {
        self.host == other.host && self.port == other.port
    }
}

impl std::fmt::Debug for TargetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}:{}/{} (tls: {})", self.user, self.host, self.port, self.dbname, self.tls.is_some())
    }
}

/// `DISCARD_SEQUENCES` as extended messages: Parse (unnamed statement), Bind (portal `pgsplit_discard`), Execute,
/// Close of the portal.
const DISCARD_SEQUENCES_EXTENDED: &[u8] = b"P\0\0\0\x19\0DISCARD SEQUENCES\0\0\0\
B\0\0\0\x1bpgsplit_discard\0\0\0\0\0\0\0\0\
E\0\0\0\x18pgsplit_discard\0\0\0\0\0\
C\0\0\0\x15Ppgsplit_discard\0";

/// The Query message `discard_sequences_ahead` sends.
const DISCARD_SEQUENCES: &[u8] = b"Q\0\0\0\x16DISCARD SEQUENCES\0";

/// A connection handed out again within this time is checked for liveness by its socket's readiness alone (see
/// `ServerConn::idle_and_alive`); after a longer rest, with a peek at the socket.
const PEEK_AFTER: Duration = Duration::from_secs(1);

impl ServerConn {
    /// Connects, negotiates TLS if configured, logs in with the target URL's login, and waits for the first
    /// ReadyForQuery.
    pub async fn connect(spec: &TargetSpec) -> Result<ServerConn, BackendError> {
        let login = super::Login { user: spec.user.clone(), password: spec.password.clone(), role: None, passthrough: None };
        Self::connect_as(spec, &login, 0).await
    }

    /// `connect` with `login` (number `id` in the target's pool).
    pub async fn connect_as(spec: &TargetSpec, login: &super::Login, id: LoginId) -> Result<ServerConn, BackendError> {
        match tokio::time::timeout(CONNECT_TIMEOUT, Self::connect_inner(spec, login, id)).await {
            Ok(r) => r,
            Err(_) => Err(BackendError::Timeout),
        }
    }

    async fn connect_inner(spec: &TargetSpec, login: &super::Login, id: LoginId) -> Result<ServerConn, BackendError> {
        let tcp = open_tcp(spec).await?;
        let stream = match &spec.tls {
            None => Stream::Plain(tcp),
            Some((config, name)) => match start_tls(tcp, config.clone(), name.clone(), spec.tls_required).await {
                Ok(stream) => stream,
                // libpq's `prefer`: a handshake that fails is tried again in plain TCP, on a new connection.
                Err(BackendError::Tls(e)) if !spec.tls_required => {
                    tracing::debug!(target = %spec.name, error = %e, "TLS handshake failed: sslmode prefer goes on in plain TCP");
                    Stream::Plain(open_tcp(spec).await?)
                }
                Err(e) => return Err(e),
            },
        };
        let mut conn = ServerConn {
            registration: None,
            read_total: 0,
            login: id,
            stream,
            rbuf: BytesMut::with_capacity(8192),
            params: Vec::new(),
            key: None,
            login_notices: BytesMut::new(),
            status: 0,
            broken: false,
            created: Instant::now(),
            handed_out: Instant::now(),
            applied: crate::session::Settings::default(),
            outcome: Outcome::default(),
            discarded_error: None,
            skipping: false,
            prepared: std::collections::HashMap::new(),
            target: spec.name.as_str().into(),
            expect: std::collections::VecDeque::new(),
            upstream_pooler: spec.upstream_pooler,
            wrapped: false,
            holds_session: false,
            sequences_of: 0,
            discard_ahead: false,
            hidden_ready: 0,
        };
        conn.login(spec, login).await?;
        conn.register(spec, login);
        Ok(conn)
    }

    /// Joins the pool's registry of server connections (`SHOW SERVERS`).
    fn register(&mut self, spec: &TargetSpec, login: &super::Login) {
        use std::os::fd::AsRawFd;
        let tcp = self.stream.tcp();
        self.registration = Some(spec.servers.register(super::servers::Details {
            user: login.shown().to_owned(),
            login: self.login,
            database: spec.dbname.clone(),
            pool: spec.name.clone(),
            addr: spec.host.clone(),
            port: spec.port,
            local: tcp.local_addr().ok(),
            remote_pid: self.key.map_or(0, |(pid, _)| pid),
            remote_secret: self.key.map_or(0, |(_, secret)| secret),
            tls: self.stream.tls_version(),
            // SAFETY: the descriptor is this connection's open socket for the duration of the call.
            fd: unsafe { std::os::fd::BorrowedFd::borrow_raw(tcp.as_raw_fd()) }.try_clone_to_owned().ok(),
        }));
    }

    /// What the registry shows of this connection (none for one outside a pool's registry).
    #[inline]
    pub fn info(&self) -> Option<&Arc<super::servers::ServerInfo>> {
        self.registration.as_ref().map(|r| &r.info)
    }

    /// The login it was opened with.
    #[inline]
    pub fn login_id(&self) -> LoginId {
        self.login
    }

    /// Bytes read from the server since it opened.
    #[inline]
    pub fn read_total(&self) -> u64 {
        self.read_total
    }

    /// Reads more bytes from the server; a closed socket is an error, and so is any I/O error: both mark the
    /// connection broken. Cancel-safe (a read into the buffer), so an idle pinned connection is waited on with it
    /// beside the client.
    pub async fn fill(&mut self) -> Result<(), BackendError> {
        if self.rbuf.capacity() - self.rbuf.len() < 4096 {
            self.rbuf.reserve(8192);
        }
        match self.stream.read_into(&mut self.rbuf).await {
            Ok(0) => {
                self.broken = true;
                Err(BackendError::Closed)
            }
            Ok(n) => {
                self.read_total += n as u64;
                Ok(())
            }
            Err(e) => {
                self.broken = true;
                Err(e.into())
            }
        }
    }

    /// Whether an idle connection is still open with nothing unread: a server that shut down or dropped the
    /// connection while it sat in the pool has sent a FATAL error or closed the socket. Never blocks.
    ///
    /// `now` is the time of this checkout. A connection handed out less than `PEEK_AFTER` before is judged by the
    /// readiness the runtime's reactor has already seen for its socket (no system call): a server that wrote or
    /// closed meanwhile made it readable. Readiness, or a longer rest, is confirmed with a non-blocking peek.
    pub fn idle_and_alive(&mut self, now: Instant) -> bool {
        use std::os::fd::AsRawFd;
        if !self.rbuf.is_empty() {
            return false;
        }
        let tcp = match &mut self.stream {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.get_mut().0,
        };
        // Compared by adding (a third of the instructions of a subtraction of Instants).
        let recent = now < self.handed_out + PEEK_AFTER;
        self.handed_out = now;
        if recent {
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            if tcp.poll_read_ready(&mut cx).is_pending() {
                return true;
            }
        }
        let fd = tcp.as_raw_fd();
        let mut byte = 0u8;
        // SAFETY: `fd` is this connection's open socket for the duration of the call; recv writes at most one byte
        // into `byte`, which outlives the call. MSG_PEEK leaves any data in place; MSG_DONTWAIT never blocks.
        let n = unsafe { libc::recv(fd, (&mut byte as *mut u8).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
        n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
    }

    /// Moves the socket to the calling thread's event loop when it is another's (a connection taken from another
    /// worker's idle stack, or opened by the main thread): its readiness then wakes this thread only, and the loop
    /// that served it no longer watches it. The socket stays open throughout (`worker::Socket::here`; a socket
    /// polled elsewhere moves by itself, this makes the move, and its error, happen at checkout).
    pub fn rehome(&mut self) -> std::io::Result<()> {
        match &mut self.stream {
            Stream::Plain(tcp) => tcp.here(),
            Stream::Tls(tls) => tls.get_mut().0.here(),
        }
    }

    /// Reads one whole message from the server.
    pub async fn read_frame(&mut self) -> Result<Frame, BackendError> {
        loop {
            if let Some(f) = framing::next_backend(&mut self.rbuf)? {
                return Ok(f);
            }
            self.fill().await?;
        }
    }

    /// Ends the server session (Terminate, then the write side is shut) and marks the connection broken.
    pub async fn terminate(&mut self) {
        self.broken = true;
        if self.stream.write_all(&[b'X', 0, 0, 0, 4]).await.is_ok() {
            let _ = self.stream.flush().await;
            let _ = self.stream.shutdown().await;
        }
    }

    /// `terminate`, then waits (up to `wait`) until the server closes its end: its process has then left
    /// PostgreSQL's connection count (it closes the socket on exit), so a connection opened next stays within a
    /// budget the server counts.
    pub async fn terminate_and_wait(&mut self, wait: Duration) {
        self.terminate().await;
        let _ = tokio::time::timeout(wait, async {
            loop {
                self.rbuf.clear();
                if self.fill().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }

    /// `DISCARD SEQUENCES` before the next request: another session's sequence state (`currval`, `lastval`) may
    /// be in the server session, and the session given the connection must not see it. Sent in the same flight as
    /// that request (`send_ahead`); its replies are hidden.
    pub fn discard_sequences_ahead(&mut self) {
        self.discard_ahead = true;
        self.sequences_of = 0;
    }

    /// Puts what is to go ahead of an extended-protocol batch (`discard_sequences_ahead`) at the head of `out`, as
    /// extended messages whose replies are hidden: a Query there could end the batch's implicit transaction, or go
    /// unanswered while the server skips to Sync. The unnamed statement it replaces is re-sent before any use of the
    /// client's (`Session::rewrite_batch`); its portal is pgsplit's own, closed at once.
    pub fn discard_ahead_in_batch(&mut self, out: &mut BytesMut) {
        if std::mem::take(&mut self.discard_ahead) {
            out.extend_from_slice(DISCARD_SEQUENCES_EXTENDED);
            for _ in 0..4 {
                self.expect.push_back(crate::protocol::expect::Expect::Hide { statement: None });
            }
        }
    }

    /// Sends what is to go ahead of the request about to be sent (`discard_sequences_ahead`), without waiting for
    /// its replies, which the relay then hides up to their ReadyForQuery.
    pub(super) async fn send_ahead(&mut self) -> Result<(), BackendError> {
        if std::mem::take(&mut self.discard_ahead) {
            self.send(DISCARD_SEQUENCES).await?;
            self.hidden_ready += 1;
        }
        Ok(())
    }

    /// Writes bytes to the server; a failure marks the connection broken. For pgsplit's own short statements,
    /// whose replies are small: replies that arrive meanwhile are read into `rbuf` (see `send_from`), without a cap.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), BackendError> {
        let mut off = 0;
        self.send_from(bytes, &mut off, usize::MAX).await.map(|_| ())
    }

    /// Writes `bytes[*off..]` to the server, advancing `off`; a failure marks the connection broken.
    ///
    /// While a write cannot proceed, the server's replies are read into `rbuf` (to be relayed after): a server
    /// blocked writing replies to the start of a long pipelined batch stops reading, and a sender that did not read
    /// meanwhile would wait for it forever. Reading stops once `rbuf` holds `cap` bytes and at least one whole
    /// message: then this returns `Ok(false)` before everything is written, and the caller relays what is buffered
    /// (`relay::send`) before it goes on. `Ok(true)` when everything is written.
    pub async fn send_from(&mut self, bytes: &[u8], off: &mut usize, cap: usize) -> Result<bool, BackendError> {
        use std::pin::Pin;
        use std::task::Poll;
        use tokio::io::AsyncWrite;
        let stream = &mut self.stream;
        let rbuf = &mut self.rbuf;
        let read_total = &mut self.read_total;
        let sent = std::future::poll_fn(|cx| loop {
            let step = if *off < bytes.len() {
                Pin::new(&mut *stream).poll_write(cx, &bytes[*off..]).map_ok(Some)
            } else {
                Pin::new(&mut *stream).poll_flush(cx).map_ok(|()| None)
            };
            match step {
                Poll::Ready(Ok(Some(0))) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(Some(n))) => {
                    *off += n;
                    continue;
                }
                Poll::Ready(Ok(None)) => return Poll::Ready(Ok(true)),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
            if rbuf.len() >= cap && matches!(framing::peek_len(rbuf, |_| Some(framing::MAX_MESSAGE_LEN)), Ok(Some(_)) | Err(_)) {
                return Poll::Ready(Ok(false));
            }
            if rbuf.capacity() - rbuf.len() < 4096 {
                rbuf.reserve(8192);
            }
            match stream.poll_read_into(cx, rbuf) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::UnexpectedEof.into())),
                Poll::Ready(Ok(n)) => *read_total += n as u64,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        })
        .await;
        sent.map_err(|e| {
            self.broken = true;
            e.into()
        })
    }

    /// Runs a simple query and discards its results; returns the server's error if it failed.
    /// Used for pgsplit's own housekeeping (settings, resets, catalog reads, `check`). Until its ReadyForQuery the
    /// connection counts as broken, so one dropped midway (a timeout) is never reused; a server error answered with
    /// ReadyForQuery leaves it as usable as the server says.
    pub async fn simple(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, BackendError> {
        let mut out = BytesMut::new();
        frontend::query(sql, &mut out)?;
        self.send_ahead().await?;
        self.run_own(&out, None).await
    }

    /// `simple`, keeping the bodies of the NotificationResponses that arrive meanwhile in `notes` (a LISTEN
    /// connection's own queries: a notification sent just before ReadyForQuery is not lost).
    pub async fn simple_noting(&mut self, sql: &str, notes: &mut Vec<Vec<u8>>) -> Result<Vec<Vec<Option<String>>>, BackendError> {
        let mut out = BytesMut::new();
        frontend::query(sql, &mut out)?;
        self.send_ahead().await?;
        self.run_own(&out, Some(notes)).await
    }

    /// Runs `sql` with text parameters `params` ($1, ...) as one extended-protocol statement and Sync: values never
    /// become SQL text (`auth_query` looks a client's name up with it).
    pub async fn extended_with(&mut self, sql: &str, params: &[&str]) -> Result<Vec<Vec<Option<String>>>, BackendError> {
        let mut out = BytesMut::new();
        frontend::parse("", sql, std::iter::empty(), &mut out)?;
        frontend::bind(
            "",
            "",
            std::iter::empty(),
            params.iter(),
            |p: &&str, buf| {
                buf.extend_from_slice(p.as_bytes());
                Ok(postgres_protocol::IsNull::No)
            },
            Some(0),
            &mut out,
        )
        .map_err(|_| BackendError::Protocol("cannot encode Bind".into()))?;
        frontend::execute("", 0, &mut out)?;
        frontend::sync(&mut out);
        self.send_ahead().await?;
        self.run_own(&out, None).await
    }

    /// Runs `sql` as one extended-protocol statement and Sync, for a connection that may be in the middle of a
    /// client's extended batch: if the server is skipping until Sync after an error, it ignores the statement and
    /// answers the Sync; either way exactly one ReadyForQuery ends it (a Query there would never be answered).
    pub async fn extended(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, BackendError> {
        let mut out = BytesMut::new();
        // Inside a batch: what goes ahead goes as extended messages too (their replies end nothing; only rows count).
        if std::mem::take(&mut self.discard_ahead) {
            out.extend_from_slice(DISCARD_SEQUENCES_EXTENDED);
        }
        frontend::parse("", sql, std::iter::empty(), &mut out)?;
        frontend::bind(
            "",
            "",
            std::iter::empty(),
            std::iter::empty(),
            |_: (), _| Ok(postgres_protocol::IsNull::Yes),
            Some(0),
            &mut out,
        )
        .map_err(|_| BackendError::Protocol("cannot encode Bind".into()))?;
        frontend::execute("", 0, &mut out)?;
        frontend::sync(&mut out);
        self.run_own(&out, None).await
    }

    /// Sends pgsplit's own request and reads until ReadyForQuery: rows, and the server's error if it failed.
    async fn run_own(
        &mut self,
        request: &[u8],
        mut notes: Option<&mut Vec<Vec<u8>>>,
    ) -> Result<Vec<Vec<Option<String>>>, BackendError> {
        let mut conn = super::relay::Exchange::start(self);
        conn.send(request).await?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            let f = conn.read_frame().await?;
            if conn.hidden_ready > 0 {
                conn.hidden_ready -= u8::from(f.tag == b'Z');
                continue;
            }
            match f.tag {
                b'D' => rows.push(data_row(f.body())),
                b'E' => error = Some(error_from_body(f.body())),
                b'Z' => {
                    conn.status = f.body().first().copied().unwrap_or(0);
                    // A ReadyForQuery ends whatever batch was in flight: no reply of it is due any more.
                    conn.expect.clear();
                    conn.skipping = false;
                    conn.done();
                    return match error {
                        Some(e) => Err(e),
                        None => Ok(rows),
                    };
                }
                b'G' | b'H' | b'W' => return Err(BackendError::Protocol("COPY is not supported in internal queries".into())),
                b'A' => {
                    if let Some(notes) = notes.as_mut() {
                        notes.push(f.body().to_vec());
                    }
                }
                _ => {}
            }
        }
    }

    /// Whether the connection has been marked broken (it will be closed, never reused).
    pub fn is_broken(&self) -> bool {
        self.broken
    }
}

pub fn data_row(body: &[u8]) -> Vec<Option<String>> {
    let mut b = body;
    let mut out = Vec::new();
    if b.len() < 2 {
        return out;
    }
    let n = b.get_i16();
    for _ in 0..n {
        if b.len() < 4 {
            break;
        }
        let len = b.get_i32();
        if len < 0 {
            out.push(None);
        } else {
            let len = (len as usize).min(b.len());
            out.push(Some(String::from_utf8_lossy(&b[..len]).into_owned()));
            b.advance(len);
        }
    }
    out
}

/// Turns an ErrorResponse body into a `BackendError::Server`.
pub fn error_from_body(body: &[u8]) -> BackendError {
    match crate::protocol::decode::error_fields(body) {
        Ok(fields) => {
            let get = |c: u8| fields.iter().find(|(k, _)| *k == c).map(|(_, v)| v.clone()).unwrap_or_default();
            BackendError::Server { code: get(b'C'), message: get(b'M') }
        }
        Err(_) => BackendError::Protocol("malformed ErrorResponse".into()),
    }
}

pub(super) fn server_error(mut fields: ErrorFields<'_>) -> Result<BackendError, BackendError> {
    let (mut code, mut message) = (String::new(), String::new());
    while let Some(f) = fallible_iterator::FallibleIterator::next(&mut fields)? {
        match f.type_() {
            b'C' => code = String::from_utf8_lossy(f.value_bytes()).into_owned(),
            b'M' => message = String::from_utf8_lossy(f.value_bytes()).into_owned(),
            _ => {}
        }
    }
    Ok(BackendError::Server { code, message })
}

/// Sends a CancelRequest for the server process `key` to the target (over TLS when the target uses it) and waits
/// until the server has taken it (it closes the connection once the cancel is signalled).
pub async fn send_cancel(spec: &TargetSpec, key: (i32, i32)) -> Result<(), BackendError> {
    let tcp = TcpStream::connect(spec.host.as_str(), spec.port).await?;
    tcp.set_nodelay(true)?;
    crate::net::keepalive(&tcp);
    let mut stream = match &spec.tls {
        None => Stream::Plain(tcp),
        Some((config, name)) => start_tls(tcp, config.clone(), name.clone(), spec.tls_required).await?,
    };
    let mut packet = [0u8; 16];
    packet[..4].copy_from_slice(&16u32.to_be_bytes());
    packet[4..8].copy_from_slice(&crate::protocol::decode::CANCEL_REQUEST.to_be_bytes());
    packet[8..12].copy_from_slice(&key.0.to_be_bytes());
    packet[12..].copy_from_slice(&key.1.to_be_bytes());
    stream.write_all(&packet).await?;
    stream.flush().await?;
    let mut rest = Vec::new();
    // The server sends nothing and closes; a TLS close without close_notify is fine here.
    let _ = stream.read_to_end(&mut rest).await;
    Ok(())
}

/// A TCP connection to the target, Nagle off and keepalive as configured.
async fn open_tcp(spec: &TargetSpec) -> Result<TcpStream, BackendError> {
    let tcp = TcpStream::connect(spec.host.as_str(), spec.port).await?;
    tcp.set_nodelay(true)?;
    crate::net::keepalive(&tcp);
    Ok(tcp)
}

/// SSLRequest, then exactly one reply byte (never more: CVE-2021-23222), then the TLS handshake; a refusal (`N`)
/// goes on in plain TCP unless TLS is `required`.
async fn start_tls(
    mut tcp: TcpStream,
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    required: bool,
) -> Result<Stream, BackendError> {
    tcp.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).await?;
    let mut reply = [0u8; 1];
    tcp.read_exact(&mut reply).await?;
    match reply[0] {
        b'S' => {
            let tls = TlsConnector::from(config).connect(name, tcp).await.map_err(BackendError::Tls)?;
            Ok(Stream::Tls(Box::new(tokio_rustls::TlsStream::Client(tls))))
        }
        b'N' if !required => Ok(Stream::Plain(tcp)),
        b'N' => Err(BackendError::Protocol("server refused TLS (SSLRequest answered N)".into())),
        other => Err(BackendError::Protocol(format!("unexpected reply {other:#x} to SSLRequest"))),
    }
}
