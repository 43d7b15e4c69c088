//! The stateful target: one real pgsplit (the App and `session::serve`) in front of the fake server, driven by a
//! client whose login and messages come from the fuzz input (`script`). It panics on a crash: a session that
//! panicked, hung or did not end after its client left; bytes to the client that do not frame as server messages,
//! or anything after a FATAL; a login that succeeded with a wrong password or failed with the right one; a session
//! that no longer answers the final probe query; pgsplit sending a server what it must not (`fake_server`); and
//! process-level state left behind (a fresh client must still log in and be answered on both targets, and no
//! client, pin or busy server connection may be left counted). The known bugs of fuzz/README.md are tolerated
//! (`Watch::tolerate_known`), except by `SessionHarness::strict`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::{Bytes, BytesMut};
use hmac::{Hmac, Mac};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::failure::Failure;
use super::fake_server::{self, Watch, PROBE};
use super::script::{self, Login, Op, Script};
use crate::app::App;
use crate::protocol::{decode, framing};

/// The password of the `app` user.
const PASSWORD: &str = "fuzz-password";
/// How long one input may take before the session counts as hung (the fake server answers at once; the longest
/// legitimate wait is a checkout timeout of 1 s).
const INPUT_TIMEOUT: Duration = Duration::from_secs(8);
/// How long a session may take to close the connection and end after its client closed its side.
const END_TIMEOUT: Duration = Duration::from_secs(3);
/// Message types a server sends (protocol 3.0).
const BACKEND_TAGS: &[u8] = b"RKSZTDCEINnt123sGHWdcAVv";

/// One pgsplit, its fake server and the runtime they run on, kept for the whole fuzzing process.
pub struct SessionHarness {
    /// Runs pgsplit, the fake server and the client; a current-thread runtime, so runs are reproducible.
    runtime: tokio::runtime::Runtime,
    /// pgsplit's shared state, for the counters checked after each input.
    app: Arc<App>,
    /// Where pgsplit listens.
    proxy: SocketAddr,
    /// Each accepted client's session task, in accept order.
    sessions: tokio::sync::Mutex<mpsc::UnboundedReceiver<JoinHandle<()>>>,
    /// What the fake server saw pgsplit do, and the state of its connections.
    watch: Arc<Watch>,
}

impl SessionHarness {
    /// Starts the fake server and pgsplit in front of it (two targets on the fake server, one SCRAM user).
    pub fn new() -> SessionHarness {
        Self::build(true)
    }

    /// `new` with a fake server that tolerates none of the known bugs (`Watch::tolerate_known`): the inputs kept in
    /// `fuzz/artifacts/session/pending/` crash it until those bugs are fixed.
    pub fn strict() -> SessionHarness {
        Self::build(false)
    }

    fn build(tolerate_known: bool) -> SessionHarness {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(r) => r,
            Err(e) => panic!("cannot build a runtime: {e}"),
        };
        let watch = Arc::new(Watch::new(tolerate_known));
        let (app, proxy, sessions) = runtime.block_on(start(watch.clone()));
        SessionHarness { runtime, app, proxy, sessions: tokio::sync::Mutex::new(sessions), watch }
    }

    /// Runs one input: a client session from `data`, then the checks of the module doc. Panics on a crash.
    pub fn run(&self, data: &[u8]) {
        let script = script::decode(data);
        tracing::debug!(?script, "session target input");
        self.runtime.block_on(async {
            let mut sessions = self.sessions.lock().await;
            match tokio::time::timeout(INPUT_TIMEOUT, self.client(&script, &mut sessions)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => panic!("session target: {e}"),
                Err(_) => panic!("session target: no answer within {INPUT_TIMEOUT:?} (pgsplit hung)"),
            }
            match tokio::time::timeout(INPUT_TIMEOUT, self.fresh_client(&mut sessions)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => panic!("session target: after the input, a well-behaved client fails: {e}"),
                Err(_) => panic!("session target: after the input, a well-behaved client gets no answer"),
            }
        });
        // Every session has ended: the server connections left are pgsplit's idle ones. They are checked, then
        // closed, so the next input starts from fresh ones.
        self.runtime.block_on(settle());
        self.watch.audit_and_close();
        let violations = self.watch.take_violations();
        assert!(violations.is_empty(), "session target: pgsplit broke the protocol towards the server: {violations:?}");
        let metrics = self.app.metrics();
        assert_eq!(metrics.clients(), 0, "session target: clients still counted after every session ended");
        let pinned = self.app.pinned_sessions().load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(pinned, 0, "session target: pinned sessions still counted after every session ended");
        for b in self.app.backends() {
            let (open, idle) = b.pool_state();
            assert_eq!(open, idle, "session target: server connections of {} still in use", b.name());
        }
    }

    /// The fuzzed client: login, the script's messages, the probe, the end.
    async fn client(&self, script: &Script, sessions: &mut mpsc::UnboundedReceiver<JoinHandle<()>>) -> Result<(), Failure> {
        let tcp = connect(self.proxy).await?;
        let session = sessions.recv().await.ok_or(Failure::AcceptLoopEnded)?;
        let (mut rd, mut wr) = tcp.into_split();
        negotiate(&mut rd, &mut wr, &script.login).await?;
        let (events, reader) = spawn_reader(rd);
        let mut client = Client { wr, events, reader: Some(reader), fatal: false, closed: false, reset: false };
        let expect_login = script.login.good_password && script.login.user == "app" && script.login.database != "nosuchdb";
        let logged_in = client.login(&script.login).await?;
        if logged_in != expect_login {
            let outcome = if logged_in { "succeeded" } else { "refused" };
            return Err(Failure::LoginOutcome { outcome, login: script.login.clone() });
        }
        if logged_in {
            client.drive(&script.ops).await?;
        }
        client.finish().await?;
        await_session(session).await
    }

    /// A client that logs in as it should and reads from both targets.
    async fn fresh_client(&self, sessions: &mut mpsc::UnboundedReceiver<JoinHandle<()>>) -> Result<(), Failure> {
        let tcp = connect(self.proxy).await?;
        let session = sessions.recv().await.ok_or(Failure::AcceptLoopEnded)?;
        let (rd, wr) = tcp.into_split();
        let (events, reader) = spawn_reader(rd);
        let mut client = Client { wr, events, reader: Some(reader), fatal: false, closed: false, reset: false };
        let login = Login {
            database: "handled",
            user: "app",
            good_password: true,
            params: Vec::new(),
            ssl_request: false,
            gss_request: false,
        };
        if !client.login(&login).await? {
            return Err(Failure::LoginRefused);
        }
        for sql in ["select 1", "select * from workspace.imports"] {
            let mut out = Vec::new();
            script::query(&mut out, &format!("{sql} -- {PROBE}"));
            client.send(&out).await;
            if !client.probe_answered().await? {
                return Err(Failure::NotAnswered(sql));
            }
        }
        let mut out = Vec::new();
        script::message(&mut out, b'X', &[]);
        client.send(&out).await;
        client.finish().await?;
        await_session(session).await
    }
}

impl Default for SessionHarness {
    fn default() -> Self {
        Self::new()
    }
}

/// Starts the fake server, builds the App from a configuration pointing both targets at it, reads the catalogs,
/// and starts an accept loop that hands each session's task to the harness.
async fn start(watch: Arc<Watch>) -> (Arc<App>, SocketAddr, mpsc::UnboundedReceiver<JoinHandle<()>>) {
    let bind = |what: &str, r: std::io::Result<TcpListener>| match r {
        Ok(l) => l,
        Err(e) => panic!("cannot bind the {what}: {e}"),
    };
    let fake = bind("fake server", TcpListener::bind("127.0.0.1:0").await);
    let port = fake.local_addr().map(|a| a.port()).unwrap_or_default();
    tokio::spawn(fake_server::serve(fake, watch));
    let text = format!(
        "listen: 127.0.0.1:0
database: handled
default_target: primary
targets:
  primary:
    url: postgresql://fake@127.0.0.1:{port}/primary_db?sslmode=disable
    pool: {{ max: 3, checkout_timeout: 1s }}
    schemas: [config, customer]
  data:
    url: postgresql://fake@127.0.0.1:{port}/data_db?sslmode=disable
    pool: {{ max: 3, checkout_timeout: 1s }}
    schemas: [workspace, reference]
users:
  - {{ name: app, password: \"{verifier}\" }}
client_login_timeout: 5s
",
        verifier = cheap_verifier(PASSWORD)
    );
    let config = match crate::config::load_str(&text, Path::new("."), &|_| None) {
        Ok(c) => c,
        Err(e) => panic!("the session target's configuration does not load: {e}"),
    };
    let app = match App::build(config) {
        Ok(a) => Arc::new(a),
        Err(e) => panic!("the session target's App does not build: {e}"),
    };
    app.refresh_catalogs().await;
    let listener = bind("proxy", TcpListener::bind("127.0.0.1:0").await);
    let proxy = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => panic!("no proxy address: {e}"),
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let served = app.clone();
    let limits = Arc::new(crate::server::Limits::new(64, 1024));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (app, limits) = (served.clone(), limits.clone());
            let session = tokio::spawn(async move {
                if let Some(login) = limits.login_slot().await {
                    crate::session::serve(tcp.into(), None, app, &limits, login).await;
                }
            });
            if tx.send(session).is_err() {
                return;
            }
        }
    });
    (app, proxy, rx)
}

/// A stored SCRAM verifier of `password` with one iteration: logging in costs the harness almost nothing.
fn cheap_verifier(password: &str) -> String {
    let salt = b"pgsplit-fuzzsalt";
    let hmac = |key: &[u8], data: &[u8]| -> [u8; 32] {
        match Hmac::<Sha256>::new_from_slice(key) {
            Ok(mut m) => {
                m.update(data);
                m.finalize().into_bytes().into()
            }
            Err(_) => [0; 32],
        }
    };
    let mut block = salt.to_vec();
    block.extend_from_slice(&1u32.to_be_bytes());
    let salted = hmac(password.as_bytes(), &block);
    let stored: [u8; 32] = Sha256::digest(hmac(&salted, b"Client Key")).into();
    let server = hmac(&salted, b"Server Key");
    format!("SCRAM-SHA-256$1:{}${}:{}", B64.encode(salt), B64.encode(stored), B64.encode(server))
}

/// Lets pgsplit and the fake server run until they have handled what was sent (each yield polls the sockets on
/// the current-thread runtime), so that what a run does depends on the input, not on timing.
async fn settle() {
    for _ in 0..32 {
        tokio::task::yield_now().await;
    }
}

/// A client connection to pgsplit (no Nagle delay: the client writes small messages and waits for answers).
async fn connect(proxy: SocketAddr) -> Result<TcpStream, Failure> {
    let tcp = TcpStream::connect(proxy).await.map_err(Failure::io("connect"))?;
    tcp.set_nodelay(true).map_err(Failure::io("nodelay"))?;
    Ok(tcp)
}

/// Waits for a session task to end; a panic in it is re-raised here.
async fn await_session(session: JoinHandle<()>) -> Result<(), Failure> {
    match tokio::time::timeout(END_TIMEOUT, session).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => Err(Failure::SessionTask(e)),
        },
        Err(_) => Err(Failure::SessionNotEnded),
    }
}

/// SSLRequest and GSSENCRequest before the StartupMessage: each is answered with one byte, `N`.
async fn negotiate(rd: &mut OwnedReadHalf, wr: &mut OwnedWriteHalf, login: &Login) -> Result<(), Failure> {
    for (asked, code) in [(login.ssl_request, decode::SSL_REQUEST), (login.gss_request, decode::GSSENC_REQUEST)] {
        if !asked {
            continue;
        }
        let mut packet = 8u32.to_be_bytes().to_vec();
        packet.extend_from_slice(&code.to_be_bytes());
        wr.write_all(&packet).await.map_err(Failure::io("write"))?;
        let mut answer = [0u8];
        rd.read_exact(&mut answer).await.map_err(Failure::io("no answer to a TLS or GSS request"))?;
        if answer[0] != b'N' {
            return Err(Failure::EncryptionAnswer(answer[0] as char));
        }
    }
    Ok(())
}

/// What the reader saw: a whole server message, or the end of the connection.
enum Event {
    /// A message: type and body.
    Message(u8, Bytes),
    /// The connection ended (after a whole message).
    End,
    /// The connection was reset.
    Reset,
}

/// Reads the client's side of the connection, checking that it frames as server messages and that nothing
/// follows a FATAL; the task's result is the first desync found.
fn spawn_reader(mut rd: OwnedReadHalf) -> (mpsc::UnboundedReceiver<Event>, JoinHandle<Result<(), Failure>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut buf = BytesMut::new();
        let mut fatal = false;
        loop {
            let n = match rd.read_buf(&mut buf).await {
                Ok(n) => n,
                // pgsplit closed with client bytes unread (after a FATAL error): TCP resets the connection, and
                // what was in flight, the FATAL error included, may be lost.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    let _ = tx.send(Event::Reset);
                    return Ok(());
                }
                Err(e) => return Err(Failure::Io { what: "client read failed", source: e }),
            };
            while let Some(frame) = framing::next_backend(&mut buf).map_err(Failure::Framing)? {
                if !BACKEND_TAGS.contains(&frame.tag) {
                    return Err(Failure::NotServerMessage(frame.tag as char));
                }
                if fatal {
                    return Err(Failure::AfterFatal(frame.tag as char));
                }
                let body = Bytes::copy_from_slice(frame.body());
                tracing::trace!(tag = %(frame.tag as char), body = %String::from_utf8_lossy(&body), "client received");
                match frame.tag {
                    b'Z' if !matches!(&body[..], b"I" | b"T" | b"E") => return Err(Failure::ReadyStatus(body)),
                    b'E' | b'N' => {
                        let fields = decode::error_fields(&body).map_err(Failure::ErrorFields)?;
                        fatal |= frame.tag == b'E' && fields.iter().any(|(c, v)| *c == b'S' && v == "FATAL");
                    }
                    _ => {}
                }
                let _ = tx.send(Event::Message(frame.tag, body));
            }
            if n == 0 {
                if !buf.is_empty() {
                    return Err(Failure::EndedInsideMessage(buf.len()));
                }
                let _ = tx.send(Event::End);
                return Ok(());
            }
        }
    });
    (rx, task)
}

/// The fuzzed client's connection.
struct Client {
    /// The write side.
    wr: OwnedWriteHalf,
    /// What the reader saw.
    events: mpsc::UnboundedReceiver<Event>,
    /// The reader, joined at the end for its verdict.
    reader: Option<JoinHandle<Result<(), Failure>>>,
    /// A FATAL error arrived: the connection ends.
    fatal: bool,
    /// The connection ended.
    closed: bool,
    /// The connection ended with a reset: whether a FATAL error came before cannot be told.
    reset: bool,
}

impl Client {
    /// Writes bytes; a connection pgsplit closed is not an error here (the reader tells what happened).
    async fn send(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() && self.wr.write_all(bytes).await.is_err() {
            self.closed = true;
        }
    }

    /// The next message, `None` at the end of the connection.
    async fn next(&mut self) -> Option<(u8, Bytes)> {
        match self.events.recv().await {
            Some(Event::Message(tag, body)) => {
                if tag == b'E' {
                    let fields = decode::error_fields(&body).unwrap_or_default();
                    self.fatal |= fields.iter().any(|(c, v)| *c == b'S' && v == "FATAL");
                }
                Some((tag, body))
            }
            Some(Event::End) | None => {
                self.closed = true;
                None
            }
            Some(Event::Reset) => {
                self.closed = true;
                self.reset = true;
                None
            }
        }
    }

    /// StartupMessage and SCRAM-SHA-256; true when pgsplit greeted the client with ReadyForQuery, false after a
    /// FATAL error.
    async fn login(&mut self, login: &Login) -> Result<bool, Failure> {
        let mut body = decode::PROTOCOL_3_0.to_be_bytes().to_vec();
        for (k, v) in [("user", login.user), ("database", login.database)].iter().chain(&login.params) {
            for s in [k, v] {
                body.extend_from_slice(s.as_bytes());
                body.push(0);
            }
        }
        body.push(0);
        let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        packet.extend(body);
        self.send(&packet).await;
        let password = if login.good_password { PASSWORD } else { "wrong" };
        let mut scram = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
        loop {
            let Some((tag, body)) = self.next().await else {
                return Err(Failure::LoginEnded);
            };
            let mut out = Vec::new();
            match (tag, body.get(..4).map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]))) {
                (b'R', Some(10)) => {
                    let mut p = b"SCRAM-SHA-256\0".to_vec();
                    p.extend_from_slice(&(scram.message().len() as i32).to_be_bytes());
                    p.extend_from_slice(scram.message());
                    script::message(&mut out, b'p', &p);
                }
                (b'R', Some(11)) => {
                    scram.update(&body[4..]).map_err(Failure::scram("bad server-first-message"))?;
                    script::message(&mut out, b'p', scram.message());
                }
                (b'R', Some(12)) => scram.finish(&body[4..]).map_err(Failure::scram("bad server signature"))?,
                (b'R', Some(0)) | (b'S' | b'K' | b'N', _) => {}
                (b'Z', _) => return Ok(true),
                (b'E', _) if self.fatal => return Ok(false),
                _ => return Err(Failure::UnexpectedDuringLogin(tag as char)),
            }
            self.send(&out).await;
        }
    }

    /// Sends the script's messages, then the probe (Sync, ROLLBACK, the probe query) unless the client terminated,
    /// sent raw bytes, or pgsplit ended the connection, and checks that the probe is answered or a FATAL error came.
    ///
    async fn drive(&mut self, ops: &[Op]) -> Result<(), Failure> {
        let mut out = Vec::new();
        for op in ops {
            match op {
                Op::Split => {
                    self.send(&std::mem::take(&mut out)).await;
                    settle().await;
                }
                // Raw bytes end the script: they may end inside a message (pgsplit rightly waits for the rest),
                // so nothing after them can expect an answer. The session must end when the client closes.
                Op::Raw(bytes) => {
                    out.extend_from_slice(bytes);
                    self.send(&out).await;
                    return Ok(());
                }
                Op::Message(tag, body) => {
                    script::message(&mut out, *tag, body);
                    match tag {
                        b'X' => {
                            self.send(&out).await;
                            return Ok(());
                        }
                        // A client that flushes waits for the answers so far.
                        b'H' => {
                            self.send(&std::mem::take(&mut out)).await;
                            settle().await;
                        }
                        _ => {}
                    }
                }
            }
            if self.closed {
                break;
            }
        }
        self.send(&out).await;
        let mut probe = Vec::new();
        script::message(&mut probe, b'S', &[]);
        script::query(&mut probe, "ROLLBACK");
        script::query(&mut probe, &format!("select '{PROBE}'"));
        self.send(&probe).await;
        if self.probe_answered().await? || self.fatal || self.reset {
            return Ok(());
        }
        Err(Failure::EndedWithoutFatal)
    }

    /// Reads until a row with the probe's text followed by ReadyForQuery (true), or the end of the connection
    /// (false).
    async fn probe_answered(&mut self) -> Result<bool, Failure> {
        let mut seen = false;
        while let Some((tag, body)) = self.next().await {
            match tag {
                b'D' if body.windows(PROBE.len()).any(|w| w == PROBE.as_bytes()) => seen = true,
                b'Z' if seen => return Ok(true),
                _ => {}
            }
        }
        Ok(false)
    }

    /// Closes the client's side and reads to the end; returns the reader's verdict.
    async fn finish(mut self) -> Result<(), Failure> {
        let _ = self.wr.shutdown().await;
        let drained = tokio::time::timeout(END_TIMEOUT, async {
            while !self.closed {
                self.next().await;
            }
        });
        if drained.await.is_err() {
            return Err(Failure::NotClosed);
        }
        match self.reader.take() {
            Some(reader) => match reader.await {
                Ok(verdict) => verdict,
                Err(e) => Err(Failure::Reader(e)),
            },
            None => Ok(()),
        }
    }
}
