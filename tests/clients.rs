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

/// Runs a psql script given as bytes (in the client's encoding) at `url`; returns stdout, or panics with stderr.
async fn psql_bytes(url: String, script: Vec<u8>) -> Vec<u8> {
    let run = tokio::task::spawn_blocking(move || common::psql_script(&url, script));
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), run).await.expect("psql finishes").unwrap();
    assert!(out.status.success(), "psql failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// A client in LATIN1 (startup `client_encoding`, as libpq sends it) is routed on the text its bytes carry in
/// LATIN1: a non-ASCII table name is found in the catalog of the target that has it, a non-ASCII search_path is
/// replayed on every pooled connection, and the client's bytes reach the server unchanged, which converts them as on
/// a direct connection (issue 16, point 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latin1_client_is_routed_on_its_text_and_its_bytes_reach_the_server_unchanged() {
    let proxy = Proxy::split().await;
    let id = std::process::id();
    let url = format!("{} client_encoding=LATIN1", proxy.dsn());
    // café_N in workspace (DATA), règle_N in config (PRIMARY); the search_path names config first, so only the DATA
    // catalog, read with the right name, sends the unqualified café_N to DATA.
    let script = format!(
        "create table workspace.caf\u{e9}_{id} (v text);\n\
         insert into workspace.caf\u{e9}_{id} values ('\u{e9}t\u{e9}');\n\
         create table config.r\u{e8}gle_{id} (v text);\n\
         insert into config.r\u{e8}gle_{id} values ('\u{e0} jour');\n\
         set search_path to config, workspace, caf\u{e9}s;\n\
         select v || '|' || length(v) from caf\u{e9}_{id};\n\
         select v from r\u{e8}gle_{id};\n\
         begin; select count(*) from caf\u{e9}_{id}; commit;\n\
         show search_path;\n\
         show client_encoding;\n"
    );
    let latin1: Vec<u8> = script.chars().map(|c| u8::try_from(u32::from(c)).expect("a LATIN1 character")).collect();
    let out = psql_bytes(url, latin1).await;
    let want: Vec<u8> = b"\xe9t\xe9|3\n\xe0 jour\n1\nconfig, workspace, \"caf\xe9s\"\nLATIN1\n".to_vec();
    assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&want));
    assert_eq!(out, want, "psql's output, in LATIN1");
    // On the servers, in UTF8: the text the client meant, where it belongs.
    let c = clusters();
    assert_eq!(common::direct(&c.data, "handled_data", &format!("select v from workspace.\"café_{id}\"")).await, "été");
    assert_eq!(common::direct(&c.primary, "handled_primary", &format!("select v from config.\"règle_{id}\"")).await, "à jour");
}

/// `SET NAMES` (and `SET client_encoding`) in the middle of a session changes how pgsplit reads the client's text,
/// on every pooled connection after it; `RESET client_encoding` goes back to the startup value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_names_changes_how_the_session_is_read_until_it_is_reset() {
    let proxy = Proxy::split().await;
    let id = std::process::id();
    let url = format!("{} client_encoding=UTF8", proxy.dsn());
    let mut script = b"set names 'KOI8R';\n".to_vec();
    // "таблица" in KOI8-R, in reference (DATA), with the search_path on config first again.
    let koi8 = b"\xd4\xc1\xc2\xcc\xc9\xc3\xc1";
    for line in [
        &b"create table reference."[..],
        koi8,
        format!("_{id} (v text);\ninsert into reference.").as_bytes(),
        koi8,
        format!("_{id} values ('").as_bytes(),
        koi8,
        b"');\nset search_path to config, reference;\nselect v, length(v) from ",
        koi8,
        format!("_{id};\nshow client_encoding;\nreset client_encoding;\nshow client_encoding;\n").as_bytes(),
        "select 'ünïcode';\n".as_bytes(),
    ] {
        script.extend_from_slice(line);
    }
    let out = psql_bytes(url, script).await;
    let mut want = koi8.to_vec();
    want.extend_from_slice(b"|7\nKOI8R\nUTF8\n\xc3\xbcn\xc3\xafcode\n");
    assert_eq!(out, want, "{}", String::from_utf8_lossy(&out));
    let direct = common::direct(&clusters().data, "handled_data", &format!("select v from reference.\"таблица_{id}\"")).await;
    assert_eq!(direct, "таблица");
}

/// Bytes that are not text in the client's encoding get PostgreSQL's 22021 as an ERROR, and the session goes on,
/// as on a direct connection; an unknown client_encoding at startup is refused with 22023; an encoding pgsplit cannot
/// read (JOHAB) works for ASCII text and refuses anything else with 0A000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_invalid_in_the_clients_encoding_fails_the_statement_not_the_session() {
    use tokio::io::AsyncWriteExt;
    let proxy = Proxy::split().await;
    let query = |sql: &[u8]| {
        let mut m = bytes::BytesMut::new();
        common::encode_query_bytes(sql, &mut m);
        m
    };
    let (mut s, _) = common::raw_login_with(proxy.port, &[("client_encoding", "UTF8")]).await;
    s.write_all(&query(b"select 'caf\xe9'")).await.unwrap();
    let (body, status) = common::read_until_ready(&mut s).await;
    assert_eq!((body.as_slice(), status), (&b"EZ"[..], b'I'));
    // Inside a transaction block it fails the transaction, as PostgreSQL's error does.
    s.write_all(&query(b"begin; select 1")).await.unwrap();
    assert_eq!(common::read_until_ready(&mut s).await.1, b'T');
    s.write_all(&query(b"select 'caf\xe9'")).await.unwrap();
    assert_eq!(common::read_until_ready(&mut s).await, (b"EZ".to_vec(), b'E'));
    s.write_all(&query(b"rollback")).await.unwrap();
    assert_eq!(common::read_until_ready(&mut s).await, (b"CZ".to_vec(), b'I'));
    s.write_all(&query(b"select 1")).await.unwrap();
    assert_eq!(common::read_until_ready(&mut s).await, (b"TDCZ".to_vec(), b'I'));
    let e = common::query_error(proxy.port, &[("client_encoding", "UTF8")], b"select 'caf\xe9'").await;
    assert_eq!(e.0, "22021", "{}", e.1);
    assert!(e.1.contains("invalid byte sequence for encoding \"UTF8\": 0xe9"), "{}", e.1);

    assert_eq!(common::try_login_with(proxy.port, &[("client_encoding", "klingon")]).await.err().as_deref(), Some("22023"));

    let (mut s, _) = common::raw_login_with(proxy.port, &[("client_encoding", "JOHAB")]).await;
    s.write_all(&query(b"select 1")).await.unwrap();
    assert_eq!(common::read_until_ready(&mut s).await, (b"TDCZ".to_vec(), b'I'));
    let e = common::query_error(proxy.port, &[("client_encoding", "JOHAB")], b"select '\x88\x61'").await;
    assert_eq!(e.0, "0A000", "{}", e.1);
}
