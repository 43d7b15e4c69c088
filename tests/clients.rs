//! Client-facing security and robustness: SCRAM, client TLS modes, server TLS verification, hostile input.

mod common;

use std::io::{Read, Write};
use std::sync::Arc;

use common::{clusters, config_yaml, scalar, sqlstate, Proxy, APP_PASSWORD};

fn dsn(port: u16, user: &str, password: &str, sslmode: &str) -> String {
    format!("host=127.0.0.1 port={port} user={user} password={password} dbname=handled sslmode={sslmode}")
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_28p01() {
    let proxy = Proxy::split().await;
    for (user, pw) in [("app", "wrong"), ("nobody", APP_PASSWORD)] {
        let err =
            tokio_postgres::connect(&dsn(proxy.port, user, pw, "disable"), tokio_postgres::NoTls).await.err().expect("refused");
        assert_eq!(sqlstate(&err), "28P01", "{user}");
    }
}

#[tokio::test]
async fn unknown_database_gets_3d000() {
    let proxy = Proxy::split().await;
    let d = format!("host=127.0.0.1 port={} user=app password={APP_PASSWORD} dbname=elsewhere sslmode=disable", proxy.port);
    let err = tokio_postgres::connect(&d, tokio_postgres::NoTls).await.err().expect("refused");
    assert_eq!(sqlstate(&err), "3D000");
}

fn tls_connector(ca: &std::path::Path) -> tokio_postgres_rustls::MakeRustlsConnect {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_postgres_rustls::MakeRustlsConnect::new(config)
}

async fn tls_proxy(mode: &str) -> (Proxy, std::path::PathBuf) {
    let dir = clusters().dir.join(format!("client-certs-{mode}"));
    let files = pgsplit::certs::write_dev_certs(&dir, &["localhost", "127.0.0.1"]).unwrap();
    let extra =
        format!("tls: {{ mode: {mode}, cert: \"{}\", key: \"{}\" }}\n", files.server_cert.display(), files.server_key.display());
    (Proxy::start(&config_yaml("verify-full", &extra)).await, files.ca_cert)
}

#[tokio::test]
async fn client_tls_required_refuses_plain_and_accepts_verified_tls() {
    let (proxy, ca) = tls_proxy("required").await;
    let err = tokio_postgres::connect(&dsn(proxy.port, "app", APP_PASSWORD, "disable"), tokio_postgres::NoTls)
        .await
        .err()
        .expect("plain refused");
    assert_eq!(sqlstate(&err), "28000");
    let (c, conn) = tokio_postgres::connect(&dsn(proxy.port, "app", APP_PASSWORD, "require"), tls_connector(&ca)).await.unwrap();
    tokio::spawn(conn);
    assert_eq!(scalar(&c, "select current_database() from workspace.imports limit 1").await, "handled_data");
}

#[tokio::test]
async fn client_tls_optional_accepts_both() {
    let (proxy, ca) = tls_proxy("optional").await;
    let (c, conn) =
        tokio_postgres::connect(&dsn(proxy.port, "app", APP_PASSWORD, "disable"), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    assert_eq!(scalar(&c, "select 1").await, "1");
    let (c, conn) = tokio_postgres::connect(&dsn(proxy.port, "app", APP_PASSWORD, "require"), tls_connector(&ca)).await.unwrap();
    tokio::spawn(conn);
    assert_eq!(scalar(&c, "select 2").await, "2");
}

#[tokio::test]
async fn client_tls_disabled_answers_sslrequest_with_n() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let proxy = Proxy::split().await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    s.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).await.unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.unwrap();
    assert_eq!(b[0], b'N');
}

#[tokio::test]
async fn wrong_ca_for_primary_is_a_clear_error_and_data_is_unaffected() {
    let other = pgsplit::certs::write_dev_certs(&clusters().dir.join("other-ca"), &["localhost"]).unwrap();
    let yaml = config_yaml("verify-full", "").replace(
        &format!("ca: \"{}\"", clusters().primary.ca_cert().unwrap().display()),
        &format!("ca: \"{}\"", other.ca_cert.display()),
    );
    let proxy = Proxy::start(&yaml).await;
    let c = proxy.connect().await;
    let err = c.simple_query("select * from config.users").await.unwrap_err();
    assert_eq!(sqlstate(&err), "08006");
    let msg = err.as_db_error().unwrap().message().to_owned();
    assert!(msg.contains("primary") && msg.to_lowercase().contains("certificate"), "{msg}");
    assert_eq!(scalar(&c, "select count(*) > 0 from reference.countries").await, "t");
}

#[tokio::test]
async fn verify_full_rejects_a_host_name_not_in_the_certificate_but_verify_ca_accepts_it() {
    // 127.0.0.2 reaches the same loopback server but is not among the certificate's names.
    let port = clusters().primary.port();
    let yaml = config_yaml("verify-full", "").replace(&format!("@localhost:{port}"), &format!("@127.0.0.2:{port}"));
    let c_full = Proxy::start(&yaml).await;
    let c = c_full.connect().await;
    let err = c.simple_query("select * from config.users").await;
    // The server listens on 127.0.0.1 only, so 127.0.0.2 may be refused before TLS: either way an 08006 naming primary.
    assert_eq!(sqlstate(&err.unwrap_err()), "08006");
    let yaml = config_yaml("verify-ca", "");
    let ca = Proxy::start(&yaml).await;
    let c = ca.connect().await;
    assert_eq!(scalar(&c, "select count(*) > 0 from config.users").await, "t");
}

/// Reads until the server closes; returns everything it sent.
fn read_to_close(s: &mut std::net::TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_before_startup_and_oversized_lengths_end_only_that_client() {
    let proxy = Proxy::split().await;
    let good = proxy.connect().await;
    let port = proxy.port;
    let replies = tokio::task::spawn_blocking(move || {
        let mut replies = Vec::new();
        for junk in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            &[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0],
            &[0, 0, 0, 2],
            &[0, 0, 0, 12, 0, 9, 0, 0, 1, 2, 3, 4],
        ] {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(junk).unwrap();
            replies.push(read_to_close(&mut s));
        }
        replies
    })
    .await
    .unwrap();
    for (r, code) in replies.iter().zip([b"C08P01", b"C08P01", b"C08P01", b"C0A000"]) {
        assert_eq!(r.first(), Some(&b'E'), "an ErrorResponse before closing: {r:?}");
        assert!(r.windows(6).any(|w| w == code), "{}: {r:?}", String::from_utf8_lossy(code));
    }
    assert_eq!(scalar(&good, "select 'still here'").await, "still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_message_type_after_login_is_a_fatal_protocol_error() {
    let proxy = Proxy::split().await;
    // Log in with tokio-postgres' protocol pieces over a raw socket, then send a bogus message.
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
    use postgres_protocol::message::{backend::Message, frontend};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    let mut out = bytes::BytesMut::new();
    frontend::startup_message([("user", "app"), ("database", "handled")].into_iter(), &mut out).unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(&out).await.unwrap();
    let mut buf = bytes::BytesMut::new();
    let mut scram = ScramSha256::new(APP_PASSWORD.as_bytes(), ChannelBinding::unrequested());
    loop {
        let msg = loop {
            if let Some(m) = Message::parse(&mut buf).unwrap() {
                break m;
            }
            assert!(s.read_buf(&mut buf).await.unwrap() > 0);
        };
        out.clear();
        match msg {
            Message::AuthenticationSasl(_) => {
                frontend::sasl_initial_response("SCRAM-SHA-256", scram.message(), &mut out).unwrap()
            }
            Message::AuthenticationSaslContinue(b) => {
                scram.update(b.data()).unwrap();
                frontend::sasl_response(scram.message(), &mut out).unwrap();
            }
            Message::ReadyForQuery(_) => break,
            _ => {}
        }
        if !out.is_empty() {
            s.write_all(&out).await.unwrap();
        }
    }
    s.write_all(&[b'z', 0, 0, 0, 4]).await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert_eq!(rest.first(), Some(&b'E'));
    assert!(rest.windows(6).any(|w| w == b"C08P01"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_with_trust_authentication_needs_no_password() {
    use pgsplit::cluster::{Cluster, ClusterSpec, ServerAuth};
    let spec = ClusterSpec { name: "trust".into(), tls: false, auth: ServerAuth::Trust, superuser_password: "unused".into() };
    let trust = Cluster::create(&clusters().dir, spec).await.unwrap();
    trust.create_role("pgsplit", "irrelevant").await.unwrap();
    trust.create_database("handled_trust", "pgsplit").await.unwrap();
    let yaml = config_yaml("verify-full", "").replace(
        &format!("postgresql://pgsplit:{}@127.0.0.1:{}/handled_data", clusters().server_password, clusters().data.port()),
        &format!("postgresql://pgsplit@127.0.0.1:{}/handled_trust", trust.port()),
    );
    assert!(yaml.contains("handled_trust"));
    let proxy = Proxy::start(&yaml).await;
    let c = proxy.connect().await;
    assert_eq!(scalar(&c, "/* pgsplit: target=data */ select current_database()").await, "handled_trust");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_logs_in_is_disconnected_after_client_login_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let proxy = Proxy::start(&config_yaml("verify-full", "client_login_timeout: 1s\n")).await;
    let started = std::time::Instant::now();
    // Silent, and a startup packet that announces 40 bytes and sends 4: both would hold a task forever.
    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    let mut dripping = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    dripping.write_all(&[0, 0, 0, 40]).await.unwrap();
    let good = proxy.connect().await;
    for s in [&mut silent, &mut dripping] {
        let mut b = [0u8; 64];
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut b)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "closed by pgsplit: {read:?}");
    }
    let took = started.elapsed();
    assert!(took >= std::time::Duration::from_millis(900), "not before the timeout: {took:?}");
    // A client that logged in is not subject to it.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(scalar(&good, "select 'logged in'").await, "logged in");
}

/// A client that asks for `client_encoding=utf-8` (or `unicode`) is told `UTF8`, PostgreSQL's own name, as a direct
/// connection tells it: drivers compare the reported name with the one they expect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_encoding_is_reported_by_its_canonical_name() {
    let proxy = Proxy::split().await;
    for (asked, reported) in [("utf-8", "UTF8"), ("Unicode", "UTF8"), ("UTF8", "UTF8")] {
        let (mut s, params) = common::raw_login_with(proxy.port, &[("client_encoding", asked)]).await;
        let got = params.iter().find(|(k, _)| k == "client_encoding").map(|(_, v)| v.as_str());
        assert_eq!(got, Some(reported), "client_encoding={asked}");
        let mut msg = bytes::BytesMut::new();
        postgres_protocol::message::frontend::query("show client_encoding", &mut msg).unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut s, &msg).await.unwrap();
        let (tags, status) = common::read_until_ready(&mut s).await;
        assert_eq!((tags.as_slice(), status), (&b"TDCZ"[..], b'I'), "the session works with {asked}");
    }
    let direct = clusters().data.psql("handled_data", "show client_encoding").await.unwrap();
    assert_eq!(direct.trim(), "UTF8", "PostgreSQL's own name");
}
