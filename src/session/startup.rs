//! The start of a client connection: TLS negotiation, the StartupMessage, SCRAM-SHA-256, and the greeting.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::worker::Socket as TcpStream;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::OwnedSemaphorePermit;

use crate::app::{App, ClientTlsMode};
use crate::auth::{Passthrough, ScramExchange};
use crate::cancel::{ClientInfo, ClientKey};
use crate::config::PoolMode;
use crate::server::Limits;

/// The database name of the admin console.
pub const ADMIN_DATABASE: &str = "pgsplit";
/// The admin console's other name: PgBouncer's, which tools written for PgBouncer hard-code (as PgCat answers it).
pub const PGBOUNCER_ADMIN_DATABASE: &str = "pgbouncer";
use crate::protocol::decode::{self, Startup};
use crate::protocol::encode::{self, PgError};
use crate::protocol::framing;
use crate::stream::Stream;

use super::SessionError;
use super::{errors, Session};
use crate::client::Client;

/// Reads startup packets until a StartupMessage (after an optional TLS upgrade), authenticates, and greets.
/// `Ok(None)` for connections that end normally during startup (cancel requests, probes). `unix`: the name of the
/// Unix-domain socket the client came in by.
pub async fn startup(
    tcp: TcpStream,
    unix: Option<Arc<str>>,
    app: &Arc<App>,
    limits: &Limits,
    login: &crate::server::LoginSlot,
) -> Result<Option<(Box<Session>, OwnedSemaphorePermit)>, SessionError> {
    let addrs = (tcp.peer_addr().ok(), tcp.local_addr().ok(), unix.map(|u| u.to_string()));
    let mut buf = BytesMut::with_capacity(1024);
    let Some((stream, params)) = startup_packets(Stream::Plain(tcp), &mut buf, app, limits, login).await? else {
        return Ok(None);
    };
    // A Unix-domain socket is local, and never offered TLS (as PostgreSQL's and PgBouncer's).
    if app.tls_mode() == ClientTlsMode::Required && !stream.is_tls() && !stream.tcp().is_unix() {
        return Err(refuse(stream, buf, errors::tls_required()).await);
    }
    let mut client = Client::new(stream, buf);
    let user = params.get("user").cloned().unwrap_or_default();
    if user.is_empty() {
        let e = errors::no_user();
        return Err(refuse(client.stream, client.rbuf, e).await);
    }
    let database = params.get("database").filter(|d| !d.is_empty()).cloned().unwrap_or_else(|| user.clone());
    let admin = database == ADMIN_DATABASE || database == PGBOUNCER_ADMIN_DATABASE;
    let (passthrough, any_database) = served(app, &database, admin);
    let info = client_info(&user, &database, addrs, &client.stream, &params);
    let result = async {
        let own_secret = authenticate(&mut client, app, &user).await?;
        let slot = admit(app, limits, &params, &user, &database, passthrough, admin)?;
        let pool = match any_database {
            Some(t) => Some(app.database_pool(t, &database).await.map_err(SessionError::Fatal)?),
            None => None,
        };
        // Session pooling: the client's own backend on its home target, from now until it leaves; its key is the
        // one the client gets.
        let session_mode = !admin && app.pool_mode(&user, passthrough) == PoolMode::Session;
        let home = match session_mode {
            true => {
                let target = app.home_target(passthrough);
                Some((target, own_backend(app, &user, target, pool.as_deref(), own_secret.as_ref()).await?))
            }
            false => None,
        };
        let real = home.as_ref().and_then(|(_, conn)| conn.key());
        let key =
            real.and_then(|(pid, secret)| app.cancels().register_as(pid, secret)).unwrap_or_else(|| app.cancels().register());
        let _ = key.slot.info.set(info);
        let greeter = passthrough.unwrap_or(app.table().default_target);
        let greeted =
            if admin { greet_admin(&mut client, &key).await } else { greet(&mut client, app, greeter, &params, &key).await };
        match greeted {
            Ok(()) => Ok((key, slot, home, pool, own_secret)),
            Err(e) => {
                app.cancels().unregister(&key);
                Err(e)
            }
        }
    }
    .await;
    if let Err(SessionError::Fatal(e)) = &result {
        client.fatal(e).await;
    }
    let (key, slot, home, pool, own_secret) = result?;
    if let Some(t) = passthrough {
        tracing::info!(%user, target = app.backend(t).name(), %database, "passthrough session");
    }
    let mut session = Session::new(client, app.clone(), user, &params, key);
    session.own_secret = own_secret;
    session.connected_to(passthrough, pool, admin);
    if let Some((target, conn)) = home {
        session.session_pooled(target, conn);
    }
    Ok(Some((Box::new(session), slot)))
}

/// A session-pooled client's own server connection on `target` (of its `any_database` pool, if it has one), with
/// the user's login there.
async fn own_backend(
    app: &App,
    user: &str,
    target: crate::router::TargetId,
    pool: Option<&crate::backend::Backend>,
    own_secret: Option<&Passthrough>,
) -> Result<crate::backend::PooledConn, SessionError> {
    let login = match pool {
        Some(_) => 0,
        None => app.login_for(user, target, own_secret).await.map_err(|e| SessionError::Fatal(e.into_fatal()))?,
    };
    let backend = pool.unwrap_or_else(|| app.backend(target));
    let conn = backend.checkout_or_cancel(login, None).await;
    conn.map_err(|e| SessionError::Fatal(errors::no_own_backend(&e)))
}

/// What SHOW CLIENTS shows of a client that logs in: its names, addresses (peer, ours; or the Unix-domain socket it
/// came in by), TLS and application.
fn client_info(
    user: &str,
    database: &str,
    (peer_addr, local_addr, unix_socket): (Option<std::net::SocketAddr>, Option<std::net::SocketAddr>, Option<String>),
    stream: &Stream,
    params: &BTreeMap<String, String>,
) -> ClientInfo {
    ClientInfo {
        user: user.to_owned(),
        database: database.to_owned(),
        peer: peer_addr.map(|a| a.to_string()).or_else(|| unix_socket.as_ref().map(|_| "unix".to_owned())).unwrap_or_default(),
        tls: stream.is_tls(),
        since: std::time::SystemTime::now(),
        peer_addr,
        local_addr,
        unix_socket,
        tls_version: stream.tls_version(),
        application_name: params.get("application_name").cloned().unwrap_or_default(),
    }
}

/// The target a database name reaches unsplit (`None`: the logical database, the admin console, or a name pgsplit
/// does not serve), and whether it does so through `any_database`. The logical database is split; a target's own
/// name is that target (passthrough: pg_dump, migrations); any other name reaches a database of that name on
/// `any_database`'s server (PgBouncer's `*`), when set.
fn served(app: &App, database: &str, admin: bool) -> (Option<crate::router::TargetId>, Option<crate::router::TargetId>) {
    if database == app.database() || admin {
        return (None, None);
    }
    match app.table().target_id(database) {
        Some(t) => (Some(t), None),
        None => {
            let any = app.any_database_target();
            (any, any)
        }
    }
}

/// What PostgreSQL checks once a client has authenticated, in its order: the database exists (only now: before
/// authentication nothing is said about what pgsplit serves), a client slot is free (anonymous connections cannot
/// fill that budget), every startup setting has a name a server accepts, and the admin console is for admin_users.
fn admit(
    app: &App,
    limits: &Limits,
    params: &BTreeMap<String, String>,
    user: &str,
    database: &str,
    passthrough: Option<crate::router::TargetId>,
    admin: bool,
) -> Result<OwnedSemaphorePermit, SessionError> {
    if database != app.database() && passthrough.is_none() && !admin {
        return Err(SessionError::Fatal(errors::unknown_database(app, database)));
    }
    let Some(slot) = limits.client_slot() else {
        return Err(SessionError::Fatal(errors::too_many_clients()));
    };
    if let Some(name) = super::params::Params::invalid_startup_name(params) {
        return Err(SessionError::Fatal(errors::bad_startup_parameter(&name)));
    }
    if let Some(value) = super::params::Params::unknown_startup_encoding(params) {
        return Err(SessionError::Fatal(errors::unknown_encoding(&value)));
    }
    if admin && !app.config().admin_users.iter().any(|u| u == user) {
        tracing::warn!(%user, "admin console refused: not in admin_users");
        return Err(SessionError::Fatal(errors::not_admin(user)));
    }
    Ok(slot)
}

/// Reads startup packets until a StartupMessage, answering SSLRequest (with the TLS upgrade) and GSSENCRequest on
/// the way; `Ok(None)` for a connection that ends here normally (a CancelRequest, a probe, an evicted silent one).
/// Until its first bytes the connection may be evicted by a newer one (`Limits`); its StartupMessage (after any
/// SSLRequest and TLS handshake) must come within `client_first_packet_timeout`.
async fn startup_packets(
    mut stream: Stream,
    buf: &mut BytesMut,
    app: &App,
    limits: &Limits,
    login: &crate::server::LoginSlot,
) -> Result<Option<(Stream, BTreeMap<String, String>)>, SessionError> {
    let first_packet_timeout = app.config().client_first_packet_timeout;
    let first_deadline = tokio::time::Instant::now() + first_packet_timeout;
    let mut silent = Some(limits.silent(login));
    let params = loop {
        let payload = match next_packet(&mut stream, buf, &mut silent, first_deadline, first_packet_timeout).await? {
            Ok(Some(payload)) => payload,
            Ok(None) => return Ok(None),
            Err(e) => return Err(refuse(stream, std::mem::take(buf), errors::protocol_violation(e)).await),
        };
        let packet = match decode::startup(&payload) {
            Ok(p) => p,
            Err(e) => return Err(refuse(stream, std::mem::take(buf), errors::bad_startup_packet(&e)).await),
        };
        match packet {
            Startup::SslRequest => {
                // Bytes sent after SSLRequest but before the handshake would be plaintext injection (CVE-2021-23214).
                if !buf.is_empty() {
                    return Err(refuse(stream, std::mem::take(buf), errors::data_before_tls()).await);
                }
                stream = upgrade(stream, buf, app, first_deadline, first_packet_timeout).await?;
            }
            Startup::GssEncRequest => {
                stream.write_all(b"N").await?;
            }
            Startup::Cancel { pid, secret } => {
                app.cancel(pid, secret).await;
                return Ok(None);
            }
            Startup::Params { params, minor } => break negotiate(&mut stream, params, minor).await?,
        }
    };
    Ok(Some((stream, params)))
}

/// The next whole startup packet's payload (`Ok(None)` when the connection ended, or was evicted while silent), or
/// why its framing is refused.
async fn next_packet(
    stream: &mut Stream,
    buf: &mut BytesMut,
    silent: &mut Option<crate::server::Silent<'_>>,
    deadline: tokio::time::Instant,
    timeout: std::time::Duration,
) -> Result<Result<Option<bytes::Bytes>, framing::FrameError>, SessionError> {
    loop {
        match framing::next_startup(buf) {
            Ok(Some(p)) => return Ok(Ok(Some(p))),
            Ok(None) => {}
            Err(e) => return Ok(Err(e)),
        }
        if read_first(stream, buf, silent.as_ref(), deadline, timeout).await? == 0 {
            return Ok(Ok(None));
        }
        *silent = None;
    }
}

/// Answers an SSLRequest: `S` and the TLS handshake (within the first-packet deadline) when TLS is configured,
/// else `N`, and always `N` on a Unix-domain socket (as PostgreSQL answers there); an SSLRequest inside TLS is
/// refused.
async fn upgrade(
    stream: Stream,
    buf: &mut BytesMut,
    app: &App,
    deadline: tokio::time::Instant,
    timeout: std::time::Duration,
) -> Result<Stream, SessionError> {
    match (stream, app.tls()) {
        (Stream::Plain(mut tcp), Some(acceptor)) if !tcp.is_unix() => {
            tcp.write_all(b"S").await?;
            let Ok(tls) = tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await else {
                return Err(SessionError::FirstPacketTimeout(timeout));
            };
            Ok(Stream::Tls(Box::new(tokio_rustls::TlsStream::Server(tls?))))
        }
        (Stream::Plain(mut tcp), _) => {
            tcp.write_all(b"N").await?;
            Ok(Stream::Plain(tcp))
        }
        (tls, _) => Err(refuse(tls, std::mem::take(buf), errors::ssl_inside_tls()).await),
    }
}

/// Reads more of the startup packets: ends with 0 bytes if the connection is evicted while silent (`silent`), with
/// `FirstPacketTimeout` at `deadline`.
async fn read_first(
    stream: &mut Stream,
    buf: &mut BytesMut,
    silent: Option<&crate::server::Silent<'_>>,
    deadline: tokio::time::Instant,
    timeout: std::time::Duration,
) -> Result<usize, SessionError> {
    let read = async {
        match silent {
            Some(s) => tokio::select! {
                _ = s.evicted.cancelled() => Ok(0),
                r = stream.read_buf(buf) => r,
            },
            None => stream.read_buf(buf).await,
        }
    };
    match tokio::time::timeout_at(deadline, read).await {
        Ok(n) => Ok(n?),
        Err(_) => Err(SessionError::FirstPacketTimeout(timeout)),
    }
}

async fn refuse(stream: Stream, buf: BytesMut, e: PgError) -> SessionError {
    let mut client = Client::new(stream, buf);
    client.fatal(&e).await;
    SessionError::Fatal(e)
}

/// Authenticates the client: md5 when `auth_type: md5` and its secret has an md5 verifier, else SCRAM-SHA-256 (a
/// mock exchange for a name nobody knows, at the same cost). A login that
/// fails is 28P01 either way. Returns what pgsplit may log in with in the client's name (`auth::Passthrough`).
async fn authenticate(client: &mut Client, app: &App, user: &str) -> Result<Option<Passthrough>, SessionError> {
    let (secret, _) = app.client_secret(user).await;
    let md5 = secret.as_ref().and_then(|s| s.md5.clone());
    let scram = secret.and_then(|s| s.scram);
    // A name nobody knows gets a mock SCRAM exchange even under md5, as PostgreSQL's default password_encryption.
    if app.config().auth_type == crate::config::AuthType::Md5 && md5.is_some() {
        return md5_exchange(client, user, md5).await.map(|hash| Some(Passthrough::Md5(hash)));
    }
    let known = scram.is_some();
    let verifier = scram.unwrap_or_else(|| app.users().mock(user));
    encode::auth_sasl(&mut client.wbuf, &["SCRAM-SHA-256"]);
    client.flush().await?;
    let first = expect_password_message(client).await?;
    let (mech, data) = decode::sasl_initial(first.body()).map_err(|e| SessionError::Fatal(errors::protocol_violation(e)))?;
    if mech != "SCRAM-SHA-256" {
        return Err(SessionError::Fatal(errors::sasl_mechanism()));
    }
    let (exchange, server_first) = ScramExchange::start(&verifier, data).map_err(|e| SessionError::Fatal(errors::scram(&e)))?;
    encode::auth_sasl_data(&mut client.wbuf, 11, server_first.as_bytes());
    client.flush().await?;
    let fin = expect_password_message(client).await?;
    match exchange.finish_with_keys(fin.body()) {
        Ok((server_final, keys)) if known => {
            encode::auth_sasl_data(&mut client.wbuf, 12, server_final.as_bytes());
            encode::auth_ok(&mut client.wbuf);
            Ok(Some(Passthrough::Scram(keys)))
        }
        _ => {
            tracing::warn!(%user, "client authentication failed");
            Err(SessionError::Fatal(errors::password_failed(user)))
        }
    }
}

/// An md5 exchange: a random salt, the client's `md5` answer compared with the one `hash` (the md5 verifier; none
/// for a name nobody knows) gives, in constant time. Returns the verifier on success.
async fn md5_exchange(client: &mut Client, user: &str, hash: Option<String>) -> Result<String, SessionError> {
    let mut salt = [0u8; 4];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut salt);
    encode::auth_md5(&mut client.wbuf, salt);
    client.flush().await?;
    let answer = expect_password_message(client).await?;
    let got = decode::query(answer.body()).map_err(|e| SessionError::Fatal(errors::protocol_violation(e)))?;
    let wanted = hash.as_deref().and_then(|h| crate::auth::passthrough::md5_answer(h, salt)).unwrap_or_default();
    let same = got.len() == wanted.len() && got.iter().zip(wanted.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    match hash {
        Some(hash) if same && !wanted.is_empty() => {
            encode::auth_ok(&mut client.wbuf);
            Ok(hash)
        }
        _ => {
            tracing::warn!(%user, "client authentication failed");
            Err(SessionError::Fatal(errors::password_failed(user)))
        }
    }
}

/// After a StartupMessage: a newer minor of protocol 3, or `_pq_.` protocol options, are answered with
/// NegotiateProtocolVersion (3.0, and the options not recognized — all of them), as PostgreSQL 15 answers; the
/// session then goes on in 3.0. The options are not session parameters.
async fn negotiate(
    stream: &mut Stream,
    mut params: BTreeMap<String, String>,
    minor: u16,
) -> Result<BTreeMap<String, String>, SessionError> {
    let options: Vec<String> = params.keys().filter(|k| k.starts_with("_pq_.")).cloned().collect();
    if minor == 0 && options.is_empty() {
        return Ok(params);
    }
    for o in &options {
        params.remove(o);
    }
    let mut out = BytesMut::new();
    encode::negotiate_protocol_version(&mut out, decode::PROTOCOL_3_0, &options);
    stream.write_all(&out).await?;
    Ok(params)
}

async fn expect_password_message(client: &mut Client) -> Result<crate::protocol::Frame, SessionError> {
    match client.read_frame_within(framing::MAX_AUTH_MESSAGE_LEN).await? {
        Some(f) if f.tag == b'p' => Ok(f),
        Some(f) => Err(SessionError::Fatal(errors::expected_password(f.tag))),
        None => Err(SessionError::ClientGone),
    }
}

/// The admin console's greeting: neutral server parameters (no target is asked), BackendKeyData, ReadyForQuery.
async fn greet_admin(client: &mut Client, key: &ClientKey) -> Result<(), SessionError> {
    for (k, v) in [
        ("server_version", "15.0 (pgsplit admin console)"),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
    ] {
        encode::parameter_status(&mut client.wbuf, k, v);
    }
    encode::backend_key_data(&mut client.wbuf, key.pid, key.secret);
    encode::ready_for_query(&mut client.wbuf, b'I');
    Ok(client.flush().await?)
}

/// ParameterStatus as `target` reports it (with the client's own settings), BackendKeyData, ReadyForQuery.
async fn greet(
    client: &mut Client,
    app: &App,
    target: crate::router::TargetId,
    startup: &BTreeMap<String, String>,
    key: &ClientKey,
) -> Result<(), SessionError> {
    let mut params = app.server_params(target).await;
    if params.is_empty() {
        // No target could be reached: pgsplit does not make values up, it says what it does not know.
        errors::server_params_unknown().encode(&mut client.wbuf);
    }
    // The client's own settings (startup parameters, `options=-c ...`) are what its session will have: report
    // those for the parameters the server reports.
    let options = startup.get("options").map(|o| super::params::options_settings(o)).unwrap_or_default();
    let own = startup.iter().map(|(k, v)| (k.as_str(), v.as_str())).chain(options.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    for (key, value) in own {
        if let Some(p) = params.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(key)) {
            p.1 = if key.eq_ignore_ascii_case("client_encoding") {
                // PostgreSQL's name for it (`UTF8` for `utf-8`), or the name as given when it knows none.
                crate::protocol::encoding::ClientEncoding::from_name(value)
                    .map_or_else(|| value.to_owned(), |e| e.name().to_owned())
            } else {
                value.to_owned()
            };
        } else if key == "application_name" {
            params.push(("application_name".into(), value.to_owned()));
        }
    }
    for (k, v) in &params {
        encode::parameter_status(&mut client.wbuf, k, v);
    }
    encode::backend_key_data(&mut client.wbuf, key.pid, key.secret);
    encode::ready_for_query(&mut client.wbuf, b'I');
    Ok(client.flush().await?)
}
