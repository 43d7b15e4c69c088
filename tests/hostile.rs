//! Hostile input ends one statement or one connection, never the proxy (SPEC §7, issue 14): statements deep enough
//! to overflow a parser's stack, and client-supplied names and values that would reach SQL pgsplit writes.

mod common;

use bytes::BytesMut;
use postgres_protocol::message::{backend::Message, frontend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{clusters, direct, scalar, sqlstate, Proxy, APP_PASSWORD};

fn chain(first: &str, sep: &str, term: &str, n: usize) -> String {
    let mut s = String::from(first);
    for i in 0..n {
        if i > 0 {
            s.push_str(sep);
        }
        s.push_str(term);
    }
    s
}

/// The texts that aborted the whole process before the depth guard (issue 14, point 1).
fn deep_statements() -> Vec<(&'static str, String)> {
    vec![
        ("35k additions", chain("select ", "+", "1", 35_000)),
        ("50k ORs", chain("select count(*) from workspace.imports where ", " OR ", "id=1", 50_000)),
        ("50k concatenations", chain("select ", "||", "'a'", 50_000)),
        ("100k UNION ALLs", chain("", " UNION ALL ", "SELECT 1", 100_000)),
    ]
}

/// What a statement's outcome looks like to a client: `ok` or the SQLSTATE.
fn outcome<T>(r: Result<T, tokio_postgres::Error>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => sqlstate(&e),
    }
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(conn);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_too_deep_for_a_parser_are_answered_as_by_postgresql_and_every_session_goes_on() {
    let proxy = Proxy::split().await;
    let c = clusters();
    let direct_data = connect(&c.data.url("pgsplit", &c.server_password, "handled_data")).await;
    let bystander = proxy.connect().await;
    let split = proxy.connect().await;
    let passthrough = connect(&format!("postgresql://app:{APP_PASSWORD}@127.0.0.1:{}/data?sslmode=disable", proxy.port)).await;
    for (what, sql) in deep_statements() {
        let expected = outcome(direct_data.simple_query(&sql).await);
        // Simple protocol, extended protocol (Parse/Bind/Execute), and a passthrough database.
        assert_eq!(outcome(split.simple_query(&sql).await), expected, "{what}, simple protocol");
        assert_eq!(outcome(split.query(sql.as_str(), &[]).await), expected, "{what}, extended protocol");
        assert_eq!(outcome(passthrough.simple_query(&sql).await), expected, "{what}, passthrough");
        for client in [&split, &passthrough, &bystander] {
            assert_eq!(scalar(client, "select 1").await, "1", "{what}: the session goes on");
        }
    }
    // The pools are intact: a new client logs in and reaches both targets.
    let late = proxy.connect().await;
    assert_eq!(scalar(&late, "select count(*) >= 0 from workspace.imports").await, "t");
    assert_eq!(scalar(&late, "select count(*) > 0 from config.users").await, "t");
}

/// Logs in as `app` with extra startup parameters; `Err(sqlstate)` when pgsplit ends the login with an error.
async fn login_with(port: u16, extra: &[(&str, &str)]) -> Result<tokio::net::TcpStream, String> {
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let mut out = BytesMut::new();
    let params = [("user", "app"), ("database", "handled")].into_iter().chain(extra.iter().copied());
    frontend::startup_message(params, &mut out).expect("startup");
    s.write_all(&out).await.expect("write startup");
    let mut buf = BytesMut::new();
    let mut scram = ScramSha256::new(APP_PASSWORD.as_bytes(), ChannelBinding::unrequested());
    loop {
        let msg = loop {
            if let Some(m) = Message::parse(&mut buf).expect("server message") {
                break m;
            }
            assert!(s.read_buf(&mut buf).await.expect("read") > 0, "closed during login without an error");
        };
        out.clear();
        match msg {
            Message::AuthenticationSasl(_) => {
                frontend::sasl_initial_response("SCRAM-SHA-256", scram.message(), &mut out).expect("sasl")
            }
            Message::AuthenticationSaslContinue(b) => {
                scram.update(b.data()).expect("scram");
                frontend::sasl_response(scram.message(), &mut out).expect("sasl");
            }
            Message::ReadyForQuery(_) => return Ok(s),
            Message::ErrorResponse(e) => {
                use fallible_iterator::FallibleIterator;
                let mut fields = e.fields();
                while let Some(f) = fields.next().expect("fields") {
                    if f.type_() == b'C' {
                        return Err(String::from_utf8_lossy(f.value_bytes()).into_owned());
                    }
                }
                return Err("no SQLSTATE".into());
            }
            _ => {}
        }
        if !out.is_empty() {
            s.write_all(&out).await.expect("write");
        }
    }
}

async fn table_exists(name: &str) -> bool {
    let c = clusters();
    let sql = format!("select to_regclass('{name}') is not null");
    direct(&c.data, "handled_data", &sql).await == "t" || direct(&c.primary, "handled_primary", &sql).await == "t"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_startup_parameter_name_postgresql_refuses_ends_the_login_with_42602_and_reaches_no_server() {
    let proxy = Proxy::split().await;
    let attack = "application_name to 'x'; create table workspace.injected_by_name(id int); set x.y";
    assert_eq!(login_with(proxy.port, &[(attack, "v")]).await.err().as_deref(), Some("42602"), "a startup key");
    let option = "-c application_name\\ to\\ 'x';\\ create\\ table\\ workspace.injected_by_option(id\\ int);\\ set\\ x.y=v";
    assert_eq!(login_with(proxy.port, &[("options", option)]).await.err().as_deref(), Some("42602"), "an options name");
    // Valid names still work, custom ones included, and values are only ever values.
    let value = "x'; create table workspace.injected_by_value(id int); --\\";
    let mut s = login_with(proxy.port, &[("application_name", value), ("options", "-c app.tenant=7")]).await.expect("login");
    let mut out = BytesMut::new();
    frontend::query("select current_setting('application_name'), current_setting('app.tenant')", &mut out).expect("query");
    s.write_all(&out).await.expect("write");
    let mut buf = BytesMut::new();
    let row = loop {
        match Message::parse(&mut buf).expect("message") {
            Some(Message::DataRow(r)) => {
                use fallible_iterator::FallibleIterator;
                let data = r.buffer();
                let cols: Vec<String> = r
                    .ranges()
                    .map(|range| {
                        Ok(range.and_then(|r| data.get(r)).map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default())
                    })
                    .collect()
                    .expect("columns");
                break cols;
            }
            Some(Message::ErrorResponse(_)) => panic!("the settings were not applied"),
            Some(_) => {}
            None => assert!(s.read_buf(&mut buf).await.expect("read") > 0, "closed"),
        }
    };
    assert_eq!(row, [value, "7"]);
    for t in ["workspace.injected_by_name", "workspace.injected_by_option", "workspace.injected_by_value"] {
        assert!(!table_exists(t).await, "{t} was created by pgsplit from client input");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_replayed_on_another_connection_are_quoted_even_with_standard_conforming_strings_off() {
    // One DATA connection: the client's settings made on PRIMARY are replayed on it with SQL pgsplit writes.
    let proxy = Proxy::start(&common::config_yaml("verify-full", "").replace("max: 10,", "max: 1,")).await;
    let client = proxy.connect().await;
    let on_data =
        "select current_setting('app.x', true) from (select 1) s where not exists (select from workspace.imports where false)";
    client.simple_query("set standard_conforming_strings = off").await.expect("scs off");
    client.simple_query(on_data).await.expect("the DATA connection now has standard_conforming_strings off");
    // A value with a backslash before a quote: in a plain literal with that setting off, the quote would end it.
    client
        .simple_query("set app.x = E'a\\\\''; create table workspace.injected_by_set(id int); --'")
        .await
        .expect("set with a backslash and a quote");
    assert_eq!(scalar(&client, on_data).await, "a\\'; create table workspace.injected_by_set(id int); --");
    assert!(!table_exists("workspace.injected_by_set").await, "pgsplit ran SQL the client did not send");
}

/// The SQLSTATE of the ErrorResponse pgsplit sends on `s` (skipping anything before it); panics if it closes first.
async fn error_code(s: &mut tokio::net::TcpStream) -> String {
    use fallible_iterator::FallibleIterator;
    let mut buf = BytesMut::new();
    loop {
        while let Some(m) = Message::parse(&mut buf).expect("server message") {
            if let Message::ErrorResponse(e) = m {
                let mut fields = e.fields();
                while let Some(f) = fields.next().expect("fields") {
                    if f.type_() == b'C' {
                        return String::from_utf8_lossy(f.value_bytes()).into_owned();
                    }
                }
            }
        }
        let n = tokio::time::timeout(std::time::Duration::from_secs(20), s.read_buf(&mut buf)).await.expect("no hang");
        assert!(n.expect("read") > 0, "closed without an error");
    }
}

/// Whether pgsplit closes `s` (within the hang guard) without sending anything.
async fn closed_silently(s: &mut tokio::net::TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(tokio::time::timeout(std::time::Duration::from_secs(20), s.read(&mut byte)).await, Ok(Ok(0)) | Ok(Err(_)))
}

/// Logs in through `proxy`, retrying while a slot that was just freed is not yet back (hang guard 20 s).
async fn connect_eventually(proxy: &Proxy) -> tokio_postgres::Client {
    tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            match tokio_postgres::connect(&proxy.dsn(), tokio_postgres::NoTls).await {
                Ok((c, conn)) => {
                    tokio::spawn(conn);
                    return c;
                }
                Err(e) => {
                    assert_eq!(sqlstate(&e), "53300");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await
                }
            }
        }
    })
    .await
    .expect("a freed slot is reused")
}

fn limits_config(extra: &str) -> String {
    common::config_yaml("verify-full", extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_cannot_lock_real_clients_out_and_talking_ones_over_the_budget_get_53300() {
    // A long first-packet timeout: only the login budget and its eviction of silent connections are at work.
    let proxy = Proxy::start(&limits_config("max_login_conn: 20\nclient_first_packet_timeout: 60s\n")).await;
    let mut silent = Vec::new();
    for _ in 0..200 {
        silent.push(tokio::net::TcpStream::connect(("127.0.0.1", proxy.port)).await.expect("connect"));
    }
    // Ten times the login budget is silent: a real client still logs in and is served.
    let client = tokio::time::timeout(std::time::Duration::from_secs(20), proxy.connect()).await.expect("logs in");
    assert_eq!(scalar(&client, "select 1").await, "1");
    drop(silent);
    // Connections that have started talking are never evicted: past the budget a new one is told 53300 at once.
    let mut talking = Vec::new();
    for _ in 0..20 {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port)).await.expect("connect");
        s.write_all(&[0, 0]).await.expect("half a length");
        talking.push(s);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut over = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port)).await.expect("connect");
    assert_eq!(error_code(&mut over).await, "53300");
    drop(talking);
    // Their slots come back (once pgsplit has seen them close): logging in works again, and logged-in clients were
    // never touched.
    let again = connect_eventually(&proxy).await;
    assert_eq!(scalar(&again, "select 1").await, "1");
    assert_eq!(scalar(&client, "select 2").await, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_max_client_conn_gets_53300_after_authenticating_and_a_freed_slot_is_reused() {
    let proxy = Proxy::start(&limits_config("max_client_conn: 2\n")).await;
    let (a, b) = (proxy.connect().await, proxy.connect().await);
    let err = tokio_postgres::connect(&proxy.dsn(), tokio_postgres::NoTls).await.err().expect("refused");
    assert_eq!(sqlstate(&err), "53300");
    assert_eq!(scalar(&a, "select 1").await, "1");
    drop(b);
    let c = connect_eventually(&proxy).await;
    assert_eq!(scalar(&c, "select 3").await, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_closed_after_the_first_packet_timeout_and_pre_auth_messages_are_capped() {
    let proxy = Proxy::start(&limits_config("client_first_packet_timeout: 1s\n")).await;
    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port)).await.expect("connect");
    assert!(closed_silently(&mut silent).await, "a silent connection is dropped");
    // Before authentication a message may not announce more than a few KiB: refused before its body is read.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port)).await.expect("connect");
    let mut out = BytesMut::new();
    frontend::startup_message([("user", "app"), ("database", "handled")], &mut out).expect("startup");
    s.write_all(&out).await.expect("startup");
    let mut huge = vec![b'p'];
    huge.extend_from_slice(&(1u32 << 20).to_be_bytes());
    s.write_all(&huge).await.expect("header of a 1 MiB password message");
    assert_eq!(error_code(&mut s).await, "08P01");
}
