//! PgBouncer's limits under its names (issue 21, point 3): idle clients and idle transactions closed with
//! PostgreSQL's FATAL codes, long statements cancelled with 57014 while the session goes on, and client TLS
//! certificates re-read by a reload. TCP keepalive is `tests/keepalive.rs`' (a setting of the whole process).

mod common;

use std::time::Duration;

use common::*;

/// A client whose connection task's end (and its error) the test can await.
async fn client(proxy: &Proxy) -> (tokio_postgres::Client, tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>) {
    let (c, conn) = tokio_postgres::connect(&proxy.dsn(), tokio_postgres::NoTls).await.expect("connect");
    (c, tokio::spawn(conn))
}

/// The SQLSTATE the connection ended with (within 30 s).
async fn ended_with(conn: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>) -> String {
    let ended = tokio::time::timeout(Duration::from_secs(30), conn).await.expect("the session was ended").expect("join");
    let e = ended.expect_err("ended by an error");
    sqlstate(&e)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_clients_get_57p05_idle_transactions_25p03_and_roll_back_while_busy_clients_stay() {
    let c = clusters();
    direct(
        &c.data,
        "handled_data",
        "create table if not exists workspace.idle_tx (id int); alter table workspace.idle_tx owner to pgsplit",
    )
    .await;
    let proxy = Proxy::start(&config_yaml("verify-full", "client_idle_timeout: 1s\nidle_transaction_timeout: 1500ms\n")).await;

    let (idle, idle_conn) = client(&proxy).await;
    assert_eq!(scalar(&idle, "select 1").await, "1");
    let (in_tx, in_tx_conn) = client(&proxy).await;
    in_tx.batch_execute("begin; insert into workspace.idle_tx values (1)").await.expect("insert in a transaction");
    let (busy, _busy_conn) = client(&proxy).await;
    for _ in 0..8 {
        assert_eq!(scalar(&busy, "select 2").await, "2", "a client that keeps talking is not idle");
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert_eq!(ended_with(idle_conn).await, "57P05");
    assert_eq!(ended_with(in_tx_conn).await, "25P03");
    assert_eq!(scalar(&busy, "select 3").await, "3");

    // The transaction was rolled back with its server connection, which did not go back to the pool.
    assert_eq!(direct(&c.data, "handled_data", "select count(*) from workspace.idle_tx").await, "0");
    let stuck = "select count(*) from pg_stat_activity where datname = 'handled_data' and state like 'idle in transaction%'";
    let mut left = String::new();
    for _ in 0..100 {
        left = direct(&c.data, "handled_data", stuck).await;
        if left == "0" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, "0", "a server connection stayed idle in transaction");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_timeout_cancels_a_long_statement_with_57014_and_the_session_goes_on() {
    let proxy = Proxy::start(&config_yaml("verify-full", "query_timeout: 1s\n")).await;
    let c = proxy.connect().await;
    assert_eq!(scalar(&c, "select pg_sleep(0.1)::text from workspace.imports limit 1").await.len(), 0);
    // Under the limit, on fresh clients too (their first statements), nothing is cancelled.
    for _ in 0..3 {
        let fresh = proxy.connect().await;
        fresh.simple_query("select pg_sleep(0.6)").await.expect("a statement under query_timeout runs to its end");
        fresh.simple_query("select pg_sleep(0.6)").await.expect("and the next one too");
    }
    let started = std::time::Instant::now();
    let err = c.simple_query("select pg_sleep(60) from workspace.imports").await.expect_err("cancelled");
    assert_eq!(sqlstate(&err), "57014", "{err}");
    assert!(started.elapsed() < Duration::from_secs(50), "cancelled before the statement ended by itself");
    assert_eq!(scalar(&c, "select 4").await, "4", "the session goes on");
    let err = c.simple_query("select pg_sleep(60)").await.expect_err("on PRIMARY too");
    assert_eq!(sqlstate(&err), "57014");
}

/// A statement that ignores its cancels (PL/pgSQL trapping `query_canceled` in a loop) still ends: after
/// `CANCELS_BEFORE_CLOSE` cancels, a `query_timeout` later, pgsplit closes its server connection, as PgBouncer closes
/// it at the first limit. The client sees the connection lost and its session goes on with another one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_that_ignores_its_cancels_loses_its_server_connection_and_the_session_goes_on() {
    let c = clusters();
    let stubborn = "create or replace function workspace.stubborn() returns int language plpgsql as $$ begin loop begin \
                    perform pg_sleep(0.05); exception when query_canceled then null; end; end loop; end $$";
    direct(&c.data, "handled_data", stubborn).await;
    let proxy = Proxy::start(&config_yaml("verify-full", "query_timeout: 500ms\n")).await;
    let client = proxy.connect().await;
    let started = std::time::Instant::now();
    let err = client.simple_query("select workspace.stubborn()").await.expect_err("ended by pgsplit");
    let took = started.elapsed();
    // The server never stopped it (the cancels were trapped): only the closed connection ended it for the client.
    // (Ended here first, so that a failure below leaves no loop running.)
    let running = "select count(pg_terminate_backend(pid)) from pg_stat_activity where query like '%stubborn()%' \
                   and pid <> pg_backend_pid()";
    let terminated: u32 = direct(&c.data, "handled_data", running).await.parse().expect("a count");
    assert!(terminated >= 1, "the statement was still running on the server");
    assert_eq!(sqlstate(&err), "08006", "the server connection was closed: {err}");
    // Not at the first limit: two cancels (at about 500 ms and 1 s) came first, and the close a limit later.
    assert!(took >= std::time::Duration::from_millis(1000), "closed after {took:?}, before its two cancels");
    let on_data = "select (count(*) >= 0)::text from workspace.imports";
    assert_eq!(scalar(&client, on_data).await, "true", "the session goes on, on another server connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_re_reads_the_client_tls_certificate_for_new_clients() {
    use rustls_pki_types::pem::PemObject;
    let dir = clusters().dir.join("client-certs-reload");
    let first = pgsplit::certs::write_dev_certs(&dir, &["localhost", "127.0.0.1"]).expect("certs");
    let first_ca = std::fs::read(&first.ca_cert).expect("first CA");
    let extra = format!(
        "tls: {{ mode: optional, cert: \"{}\", key: \"{}\" }}\n",
        first.server_cert.display(),
        first.server_key.display()
    );
    let path = clusters().dir.join("tls-reload.yaml");
    std::fs::write(&path, config_yaml("verify-full", &extra)).expect("config");
    let proxy = Proxy::start_file(&path).await;
    let connector = |ca: &[u8]| {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca) {
            roots.add(c.expect("pem")).expect("root");
        }
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        tokio_postgres_rustls::MakeRustlsConnect::new(config)
    };
    let dsn = format!("host=localhost port={} user=app password={APP_PASSWORD} dbname=handled sslmode=require", proxy.port);
    let (c, conn) = tokio_postgres::connect(&dsn, connector(&first_ca)).await.expect("TLS with the first certificate");
    tokio::spawn(conn);
    assert_eq!(scalar(&c, "select 5").await, "5");

    // Renewed in place (same paths, a new CA and certificate), then RELOAD / SIGHUP.
    let renewed = pgsplit::certs::write_dev_certs(&dir, &["localhost", "127.0.0.1"]).expect("renewed certs");
    let renewed_ca = std::fs::read(&renewed.ca_cert).expect("renewed CA");
    assert_ne!(first_ca, renewed_ca);
    let done = proxy.app.reload().await.expect("reload");
    assert!(done.changes.iter().any(|c| c.contains("client TLS")), "{:?}", done.changes);
    let (fresh, conn) = tokio_postgres::connect(&dsn, connector(&renewed_ca)).await.expect("TLS with the renewed certificate");
    tokio::spawn(conn);
    assert_eq!(scalar(&fresh, "select 6").await, "6");
    assert!(tokio_postgres::connect(&dsn, connector(&first_ca)).await.is_err(), "the old certificate is no longer served");
    assert_eq!(scalar(&c, "select 7").await, "7", "a session already open goes on");

    // A key that cannot be read fails the reload and keeps the running certificate.
    std::fs::write(&renewed.server_key, "not a key").expect("break the key");
    assert!(proxy.app.reload().await.is_err());
    let (again, conn) = tokio_postgres::connect(&dsn, connector(&renewed_ca)).await.expect("the running certificate stays");
    tokio::spawn(conn);
    assert_eq!(scalar(&again, "select 8").await, "8");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_silent_after_flushing_a_batch_without_sync_gets_25p03() {
    use tokio::io::AsyncWriteExt;
    let proxy = Proxy::start(&config_yaml("verify-full", "idle_transaction_timeout: 1s\n")).await;
    let mut s = raw_login(proxy.port).await;
    let mut out = bytes::BytesMut::new();
    parse_bind_execute("", "select count(*) from workspace.imports", &mut out);
    out.extend_from_slice(&[b'H', 0, 0, 0, 4]);
    s.write_all(&out).await.expect("send a flushed batch");
    let mut tags = Vec::new();
    loop {
        let (tag, body) = read_message(&mut s).await;
        tags.push(tag);
        if tag == b'E' {
            let text = String::from_utf8_lossy(&body).into_owned();
            assert!(text.contains("FATAL") && text.contains("C25P03"), "{text}");
            break;
        }
        assert!(tags.len() < 10, "no FATAL after the replies: {tags:?}");
    }
    assert_eq!(&tags[..4], b"12DC", "the batch was answered before the silence counted");
}
