//! Hostile input ends one statement or one connection, never the proxy (SPEC §7, issue 14): statements deep enough
//! to overflow a parser's stack, and client-supplied names and values that would reach SQL pgsplit writes.

mod common;

use bytes::BytesMut;
use postgres_protocol::message::{backend::Message, frontend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{clusters, direct, scalar, sqlstate, Proxy, APP_PASSWORD};

/// One test at a time: some measure the whole process's memory (every other test's sockets and sessions would count)
/// or load the machine (others wait on evictions and timeouts within a second).
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
    let _heavy = HEAVY.lock().await;
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
    common::try_login_with(port, extra).await.map(|(s, _)| s)
}

async fn table_exists(name: &str) -> bool {
    let c = clusters();
    let sql = format!("select to_regclass('{name}') is not null");
    direct(&c.data, "handled_data", &sql).await == "t" || direct(&c.primary, "handled_primary", &sql).await == "t"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_startup_parameter_name_postgresql_refuses_ends_the_login_with_42602_and_reaches_no_server() {
    let _heavy = HEAVY.lock().await;
    let proxy = Proxy::split().await;
    let attack = "application_name to 'x'; create table workspace.injected_by_name(id int); set x.y";
    assert_eq!(login_with(proxy.port, &[(attack, "v")]).await.err().as_deref(), Some("42602"), "a startup key");
    // Without a dot, a name that is no identifier is no parameter PostgreSQL has.
    assert_eq!(login_with(proxy.port, &[("work mem", "1MB")]).await.err().as_deref(), Some("42704"), "an undotted key");
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
    let _heavy = HEAVY.lock().await;
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
    // The same through set_config, whose value pgsplit quotes from the plain string.
    client
        .simple_query("select set_config('app.x', E'b\\\\''; create table workspace.injected_by_config(id int); --', false)")
        .await
        .expect("set_config with a backslash and a quote");
    assert_eq!(scalar(&client, on_data).await, "b\\'; create table workspace.injected_by_config(id int); --");
    assert!(!table_exists("workspace.injected_by_config").await, "pgsplit ran SQL the client did not send");
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
    // Apart from the tests that measure the process's memory (its 200 sockets and sessions count there) or load
    // the machine (an eviction must land within a second).
    let _heavy = HEAVY.lock().await;
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
        // An SSLRequest, answered `N` (no client TLS here): pgsplit has read it, the connection is talking.
        s.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).await.expect("SSLRequest");
        let mut answer = [0u8; 1];
        s.read_exact(&mut answer).await.expect("answer");
        assert_eq!(&answer, b"N");
        talking.push(s);
    }
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
    let _heavy = HEAVY.lock().await;
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
    let _heavy = HEAVY.lock().await;
    let proxy = Proxy::start(&limits_config("client_first_packet_timeout: 1s\n")).await;
    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port)).await.expect("connect");
    assert!(closed_silently(&mut silent).await, "a silent connection is dropped");
    // An SSLRequest alone does not buy more time: the StartupMessage is due within the same limit.
    let mut ssl_only = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port)).await.expect("connect");
    ssl_only.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).await.expect("SSLRequest");
    let mut answer = [0u8; 1];
    ssl_only.read_exact(&mut answer).await.expect("answer");
    assert!(closed_silently(&mut ssl_only).await, "a connection silent after its SSLRequest is dropped");
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

/// This process's resident memory (pgsplit runs inside the test process).
fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: usize = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("resident pages");
    pages * 4096
}

/// Bind of the unnamed statement with one text parameter `param`, then Execute.
fn bind_execute_with(param: &[u8], out: &mut BytesMut) {
    let params = [Some(param)];
    frontend::bind(
        "",
        "",
        std::iter::empty(),
        params.iter(),
        |p: &Option<&[u8]>, buf: &mut BytesMut| {
            buf.extend_from_slice(p.unwrap_or_default());
            Ok(postgres_protocol::IsNull::No)
        },
        std::iter::empty(),
        out,
    )
    .map_err(|_| "bind")
    .expect("bind");
    frontend::execute("", 0, out).expect("execute");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_to_a_client_that_does_not_read_are_not_buffered_without_bound() {
    let _heavy = HEAVY.lock().await;
    let proxy = Proxy::split().await;
    let mut s = common::raw_login(proxy.port).await;
    // A 24 MB pipeline of 100,000 Bind/Execute, each answered with 32 KB (3.2 GB of replies in all), and a client
    // that never reads: pgsplit must stop reading the server rather than hold the replies.
    let mut batch = BytesMut::new();
    frontend::parse("", "select repeat('x', 32768) where $1::text is not null", std::iter::empty(), &mut batch).expect("parse");
    let param = vec![b'p'; 200];
    for _ in 0..100_000 {
        bind_execute_with(&param, &mut batch);
    }
    frontend::sync(&mut batch);
    let batch = batch.freeze();
    let before = rss_bytes();
    let (mut reader, mut writer) = s.into_split();
    let writing = tokio::spawn(async move { writer.write_all(&batch).await });
    let mut peak = before;
    for _ in 0..30 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        peak = peak.max(rss_bytes());
    }
    assert!(peak - before < 128 << 20, "memory grew by {} MB while the client did not read", (peak - before) >> 20);
    writing.abort();
    let _ = reader.read(&mut [0u8; 1]).await;
    drop(reader);
    s = common::raw_login(proxy.port).await;
    drop(s);
    let other = proxy.connect().await;
    assert_eq!(scalar(&other, "select count(*) >= 0 from workspace.imports").await, "t");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extended_batch_without_sync_past_its_cap_gets_54000_and_the_session_goes_on() {
    let _heavy = HEAVY.lock().await;
    let proxy = Proxy::split().await;
    let mut s = common::raw_login(proxy.port).await;
    let mut batch = BytesMut::new();
    frontend::parse("", "select $1::text", std::iter::empty(), &mut batch).expect("parse");
    let param = vec![b'p'; 1024];
    while batch.len() < 90 << 20 {
        bind_execute_with(&param, &mut batch);
    }
    frontend::sync(&mut batch);
    frontend::query("select 42", &mut batch).expect("query");
    let (mut reader, mut writer) = s.into_split();
    let writing = tokio::spawn(async move { writer.write_all(&batch).await.map(|_| writer) });
    s = {
        let mut buf = BytesMut::new();
        let mut codes = Vec::new();
        let mut readies = 0;
        while readies < 2 {
            while let Some(m) = Message::parse(&mut buf).expect("message") {
                match m {
                    Message::ErrorResponse(e) => {
                        use fallible_iterator::FallibleIterator;
                        let mut fields = e.fields();
                        while let Some(f) = fields.next().expect("fields") {
                            if f.type_() == b'C' {
                                codes.push(String::from_utf8_lossy(f.value_bytes()).into_owned());
                            }
                        }
                    }
                    Message::DataRow(_) => codes.push("row".into()),
                    Message::ReadyForQuery(_) => readies += 1,
                    _ => {}
                }
            }
            if readies == 2 {
                break;
            }
            let n = tokio::time::timeout(std::time::Duration::from_secs(30), reader.read_buf(&mut buf)).await.expect("no hang");
            assert!(n.expect("read") > 0, "closed");
        }
        assert_eq!(codes, ["54000", "row"], "the batch refused, the next statement answered");
        let writer = writing.await.expect("writer").expect("written");
        reader.reunite(writer).expect("same socket")
    };
    drop(s);
}

/// Sends a StartupMessage of protocol 3.`minor` with `params` and returns the socket.
async fn send_startup(port: u16, minor: u32, params: &[(&str, &str)]) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let mut body = (196_608u32 + minor).to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    s.write_all(&packet).await.expect("startup");
    s
}

/// The next whole server message on `s`: its tag and body.
async fn next_message(s: &mut tokio::net::TcpStream) -> (u8, Vec<u8>) {
    let mut header = [0u8; 5];
    tokio::time::timeout(std::time::Duration::from_secs(20), s.read_exact(&mut header)).await.expect("no hang").expect("header");
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let mut body = vec![0u8; len - 4];
    s.read_exact(&mut body).await.expect("body");
    (header[0], body)
}

/// The salt and iteration count a SCRAM server-first-message offers `user` (the client first sends `client_first`).
async fn server_first(port: u16, user: &str) -> String {
    let mut s = send_startup(port, 0, &[("user", user), ("database", "handled")]).await;
    assert_eq!(next_message(&mut s).await.0, b'R', "SASL");
    let mut out = BytesMut::new();
    frontend::sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=fixedclientnonce", &mut out).expect("sasl");
    s.write_all(&out).await.expect("client-first");
    let (tag, body) = next_message(&mut s).await;
    assert_eq!(tag, b'R');
    let text = String::from_utf8_lossy(&body[4..]).into_owned();
    // r=<nonce>,s=<salt>,i=<iterations>: the nonce is fresh each time.
    text.split(',').skip(1).collect::<Vec<_>>().join(",")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_users_see_a_stable_salt_of_their_own_and_nothing_about_targets_before_authentication() {
    let _heavy = HEAVY.lock().await;
    let proxy = Proxy::split().await;
    let known = server_first(proxy.port, "app").await;
    let ghost = server_first(proxy.port, "ghost").await;
    assert_eq!(server_first(proxy.port, "ghost").await, ghost, "the mock salt of a name is stable");
    assert_ne!(server_first(proxy.port, "phantom").await, ghost, "each name has its own");
    assert!(!ghost.contains("AAAAAAAA"), "not a constant salt: {ghost}");
    let shape = |sf: &str| sf.split(',').map(|a| (a.get(..2).unwrap_or("").to_owned(), a.len())).collect::<Vec<_>>();
    assert_eq!(shape(&ghost), shape(&known), "an unknown user's challenge looks like a known user's");
    // A database pgsplit does not serve is reported only to a client that authenticated.
    let wrong = format!("host=127.0.0.1 port={} user=app password=wrong dbname=nowhere sslmode=disable", proxy.port);
    let err = tokio_postgres::connect(&wrong, tokio_postgres::NoTls).await.err().expect("refused");
    assert_eq!(sqlstate(&err), "28P01");
    assert!(!err.to_string().contains("primary"), "{err}");
    let right = format!("host=127.0.0.1 port={} user=app password={APP_PASSWORD} dbname=nowhere sslmode=disable", proxy.port);
    let err = tokio_postgres::connect(&right, tokio_postgres::NoTls).await.err().expect("refused");
    assert_eq!(sqlstate(&err), "3D000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_oddities_get_what_postgresql_gives() {
    let _heavy = HEAVY.lock().await;
    let proxy = Proxy::split().await;
    // No user: 28000, before any authentication request.
    let mut s = send_startup(proxy.port, 0, &[("database", "handled")]).await;
    assert_eq!(error_code(&mut s).await, "28000");
    // An authorization identity in SCRAM: 0A000, as PostgreSQL does not support one either.
    let mut s = send_startup(proxy.port, 0, &[("user", "app"), ("database", "handled")]).await;
    assert_eq!(next_message(&mut s).await.0, b'R');
    let mut out = BytesMut::new();
    frontend::sasl_initial_response("SCRAM-SHA-256", b"n,a=admin,n=,r=fixedclientnonce", &mut out).expect("sasl");
    s.write_all(&out).await.expect("client-first");
    assert_eq!(error_code(&mut s).await, "0A000");
    // Protocol 3.2 with a protocol option: NegotiateProtocolVersion (3.0, the option not recognized), then the
    // login goes on in 3.0.
    let mut s = send_startup(proxy.port, 2, &[("user", "app"), ("database", "handled"), ("_pq_.compression", "on")]).await;
    let (tag, body) = next_message(&mut s).await;
    assert_eq!(tag, b'v', "NegotiateProtocolVersion first");
    assert_eq!(&body[..8], &[0, 3, 0, 0, 0, 0, 0, 1]);
    assert_eq!(&body[8..], b"_pq_.compression\0");
    assert_eq!(next_message(&mut s).await.0, b'R', "then authentication as usual");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http_connections_cannot_keep_a_health_check_out() {
    let _heavy = HEAVY.lock().await;
    let proxy = Proxy::split().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(pgsplit::http::serve(listener, std::sync::Arc::downgrade(&proxy.app), stop.clone()));
    // Three times the connection limit, connected and silent (the header timeout is 5 s).
    let mut idle = Vec::new();
    for _ in 0..192 {
        idle.push(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect"));
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // Answered while they are all still within their header timeout: before, it waited for them to expire.
    let health = tokio::time::timeout(std::time::Duration::from_secs(4), async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        s.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.expect("request");
        let mut reply = String::new();
        s.read_to_string(&mut reply).await.expect("reply");
        reply
    })
    .await
    .expect("the health check is answered before idle connections time out");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    stop.cancel();
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_target_down_since_start_holds_up_no_login_and_no_server_parameter_is_invented() {
    let _heavy = HEAVY.lock().await;
    let c = clusters();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    // PRIMARY (the default target) refuses connections from the start, with a long checkout timeout: a login that
    // waited for it would wait a minute.
    let yaml = common::config_yaml("verify-full", "")
        .replace(&format!("localhost:{}", c.primary.port()), &format!("localhost:{dead}"))
        .replace("max: 5, checkout_timeout: 3s", "max: 5, checkout_timeout: 60s");
    let proxy = tokio::time::timeout(std::time::Duration::from_secs(20), Proxy::start(&yaml)).await.expect("starts");
    let (s, reported) = tokio::time::timeout(std::time::Duration::from_secs(20), common::raw_login_with(proxy.port, &[]))
        .await
        .expect("greeted without waiting for PRIMARY");
    drop(s);
    let version = reported.iter().find(|(k, _)| k == "server_version").map(|(_, v)| v.clone());
    assert_eq!(version, Some(direct(&c.data, "handled_data", "show server_version").await), "DATA's real parameters");
    let client = proxy.connect().await;
    assert_eq!(scalar(&client, "select count(*) >= 0 from workspace.imports").await, "t");
    let err = client.simple_query("select * from config.users").await.expect_err("PRIMARY is down");
    assert_eq!(sqlstate(&err), "08006");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleartext_password_request_from_an_unverified_server_is_never_answered() {
    let _heavy = HEAVY.lock().await;
    // A fake server that asks for a cleartext password and records whether a PasswordMessage ever comes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.expect("startup length");
        let mut startup = vec![0u8; u32::from_be_bytes(len) as usize - 4];
        s.read_exact(&mut startup).await.expect("startup");
        s.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]).await.expect("AuthenticationCleartextPassword");
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut rest)).await;
        rest
    });
    let spec = pgsplit::backend::TargetSpec {
        name: "fake".into(),
        host: "127.0.0.1".into(),
        port,
        user: "pgsplit".into(),
        password: Some("the-secret".into()),
        dbname: "x".into(),
        tls: None,
        tls_required: false,
        verified: false,
        upstream_pooler: false,
        servers: Default::default(),
    };
    let err = pgsplit::backend::ServerConn::connect(&spec).await.err().expect("refused");
    assert!(err.to_string().contains("cleartext password"), "{err}");
    let sent = server.await.expect("server");
    assert!(!String::from_utf8_lossy(&sent).contains("the-secret"), "the password was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sslmode_prefer_a_failed_tls_handshake_is_tried_again_in_plain_tcp_and_with_require_it_is_an_error() {
    // In front of DATA (plain): the first connection answers the SSLRequest with `S`, then sends what no TLS
    // handshake accepts; every later one is passed to DATA as it is.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let data = clusters().data.port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            if counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst).is_multiple_of(3) {
                let mut request = [0u8; 8];
                if s.read_exact(&mut request).await.is_ok() {
                    let _ = s.write_all(b"Snot a TLS handshake at all\n").await;
                }
                continue;
            }
            tokio::spawn(async move {
                let Ok(mut upstream) = tokio::net::TcpStream::connect(("127.0.0.1", data)).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut s, &mut upstream).await;
            });
        }
    });
    let spec = |required: bool| pgsplit::backend::TargetSpec {
        name: "flaky".into(),
        host: "127.0.0.1".into(),
        port,
        user: "pgsplit".into(),
        password: Some(clusters().server_password.clone()),
        dbname: "handled_data".into(),
        tls: Some((
            pgsplit::backend::tls::client_config(pgsplit::backend::tls::Verify::None, None).expect("tls config"),
            pgsplit::backend::tls::server_name("127.0.0.1").expect("name"),
        )),
        tls_required: required,
        verified: false,
        upstream_pooler: false,
        servers: Default::default(),
    };
    let mut conn = pgsplit::backend::ServerConn::connect(&spec(false)).await.expect("prefer: plain after the failed handshake");
    assert!(!conn.is_tls());
    let rows = conn.simple("select current_database()").await.expect("query");
    assert_eq!(rows[0][0].as_deref(), Some("handled_data"));
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2, "one failed handshake, one plain connection");
    // The next first-of-three connection fails its handshake again: with `require` that is the error.
    accepted.store(3, std::sync::atomic::Ordering::SeqCst);
    let err = pgsplit::backend::ServerConn::connect(&spec(true)).await.err().expect("require: no plain fallback");
    assert!(err.to_string().to_lowercase().contains("tls"), "{err}");
}
