//! Authentication against the databases' own roles (issue 20, point 2): `auth_query` looks the client's verifier
//! up on a target, the client proves its password to pgsplit with SCRAM-SHA-256 (or md5), and pgsplit logs in to
//! the servers as that client with the proof's keys, never a cleartext password. Against the real clusters.

mod common;

use common::{clusters, config_yaml, direct, scalar, sqlstate, Proxy};

/// `dave` (SCRAM, on PRIMARY and DATA with the same verifier), `erin` (md5, on DATA), and the lookup function
/// pgsplit's login may call (SECURITY DEFINER over pg_authid, as PgBouncer's documentation suggests).
async fn roles() {
    static DONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    DONE.get_or_init(|| async {
        let c = clusters();
        direct(&c.primary, "handled_primary", "create role dave login password 'dave-pw'").await;
        let verifier = direct(&c.primary, "handled_primary", "select rolpassword from pg_authid where rolname = 'dave'").await;
        let lookup = "create function public.pgsplit_lookup(u text, out usename text, out passwd text) returns record \
             language sql security definer set search_path = pg_catalog as \
             $$ select rolname::text, rolpassword from pg_authid where rolname = u and rolcanlogin $$; \
             revoke all on function public.pgsplit_lookup(text) from public; \
             grant execute on function public.pgsplit_lookup(text) to pgsplit";
        direct(&c.primary, "handled_primary", lookup).await;
        direct(&c.data, "handled_data", lookup).await;
        direct(&c.data, "handled_data", &format!("create role dave login password '{verifier}'")).await;
        direct(&c.data, "handled_data", "set password_encryption = md5; create role erin login password 'erin-pw'").await;
        for (cluster, db) in [(&c.primary, "handled_primary"), (&c.data, "handled_data")] {
            direct(cluster, db, "grant usage on schema public to public").await;
        }
        direct(
            &c.data,
            "handled_data",
            "grant usage on schema workspace to dave, erin; grant select on all tables in schema workspace to dave, erin",
        )
        .await;
        direct(
            &c.primary,
            "handled_primary",
            "grant usage on schema customer to dave; grant select on all tables in schema customer to dave",
        )
        .await;
    })
    .await;
}

async fn login(port: u16, user: &str, password: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let dsn = format!("host=127.0.0.1 port={port} user={user} password={password} dbname=handled sslmode=disable");
    let (client, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

fn yaml(target: &str, extra: &str) -> String {
    config_yaml(
        "verify-full",
        &format!("auth_query: \"select usename, passwd from public.pgsplit_lookup($1)\"\nauth_target: {target}\n{extra}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_found_by_auth_query_logs_in_as_itself_with_no_password_in_the_config() {
    roles().await;
    let proxy = Proxy::start(&yaml("primary", "")).await;
    let dave = login(proxy.port, "dave", "dave-pw").await.expect("dave logs in through auth_query");
    let on_primary = "select current_user::text from customer.accounts union all select current_user::text limit 1";
    let on_data = "select current_user::text from workspace.imports union all select current_user::text limit 1";
    assert_eq!(scalar(&dave, on_primary).await, "dave", "SCRAM pass-through on PRIMARY (TLS)");
    assert_eq!(scalar(&dave, on_data).await, "dave", "and on DATA, whose verifier for dave is the same");
    let Err(err) = login(proxy.port, "dave", "wrong").await else { panic!("a wrong password is refused") };
    assert_eq!(sqlstate(&err), "28P01");
    let Err(err) = login(proxy.port, "nobody", "x").await else { panic!("an unknown user is refused") };
    assert_eq!(sqlstate(&err), "28P01");
    // The configured users still log in as before.
    assert_eq!(scalar(&proxy.connect().await, "select 1::text").await, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_clients_and_md5_pass_through_with_auth_type_md5() {
    roles().await;
    let proxy = Proxy::start(&yaml("data", "auth_type: md5\n")).await;
    let erin = login(proxy.port, "erin", "erin-pw").await.expect("erin logs in with md5");
    let on_data = "select current_user::text from workspace.imports union all select current_user::text limit 1";
    assert_eq!(scalar(&erin, on_data).await, "erin", "md5 pass-through on DATA");
    let Err(err) = login(proxy.port, "erin", "wrong").await else { panic!("a wrong password is refused") };
    assert_eq!(sqlstate(&err), "28P01");
    // A configured user with a cleartext password answers md5 too.
    assert_eq!(scalar(&proxy.connect().await, "select 1::text").await, "1");
}

/// What pgsplit asks of a SCRAM login up to its verdict: the server-first-message's salt length and iteration
/// count, and the outcome (`ok`, or the SQLSTATE).
async fn scram_shape(port: u16, user: &str, password: &str) -> (usize, String, String) {
    use base64::Engine;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
    use postgres_protocol::message::{backend::Message, frontend};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut out = bytes::BytesMut::new();
    frontend::startup_message([("user", user), ("database", "handled")], &mut out).unwrap();
    s.write_all(&out).await.unwrap();
    let (mut buf, mut scram) = (bytes::BytesMut::new(), ScramSha256::new(password.as_bytes(), ChannelBinding::unrequested()));
    let (mut salt_len, mut iterations) = (0, String::new());
    loop {
        let msg = loop {
            if let Some(m) = Message::parse(&mut buf).unwrap() {
                break m;
            }
            assert!(s.read_buf(&mut buf).await.unwrap() > 0, "closed during login");
        };
        out.clear();
        match msg {
            Message::AuthenticationSasl(_) => {
                frontend::sasl_initial_response("SCRAM-SHA-256", scram.message(), &mut out).unwrap()
            }
            Message::AuthenticationSaslContinue(b) => {
                let text = String::from_utf8_lossy(b.data()).into_owned();
                for attr in text.split(',') {
                    if let Some(salt) = attr.strip_prefix("s=") {
                        salt_len = base64::engine::general_purpose::STANDARD.decode(salt).unwrap().len();
                    } else if let Some(i) = attr.strip_prefix("i=") {
                        iterations = i.to_owned();
                    }
                }
                scram.update(b.data()).unwrap();
                frontend::sasl_response(scram.message(), &mut out).unwrap();
            }
            Message::ReadyForQuery(_) => return (salt_len, iterations, "ok".into()),
            Message::ErrorResponse(e) => {
                use fallible_iterator::FallibleIterator;
                let code = e
                    .fields()
                    .find(|f| Ok(f.type_() == b'C'))
                    .unwrap()
                    .map(|f| String::from_utf8_lossy(f.value_bytes()).into_owned());
                return (salt_len, iterations, code.unwrap_or_default());
            }
            _ => {}
        }
        if !out.is_empty() {
            s.write_all(&out).await.unwrap();
        }
    }
}

/// A name nobody knows goes through the whole SCRAM exchange a known user with a wrong password goes through (a
/// salt of the same length, the same iteration count, the refusal only after the proof): the exchange tells
/// nothing about which names exist, and costs the same (a lookup, then no key derivation for either).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_user_is_refused_after_the_same_exchange_as_a_wrong_password() {
    roles().await;
    let proxy = Proxy::start(&yaml("primary", "")).await;
    let known = scram_shape(proxy.port, "dave", "wrong").await;
    let unknown = scram_shape(proxy.port, "nobody-at-all", "wrong").await;
    assert_eq!(known, (16, "4096".to_owned(), "28P01".to_owned()));
    assert_eq!(unknown, known);
    assert_eq!(scram_shape(proxy.port, "dave", "dave-pw").await.2, "ok");
}
