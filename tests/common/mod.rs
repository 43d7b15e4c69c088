//! The integration-test harness: two real PostgreSQL clusters per test binary (PRIMARY: TLS-only, SCRAM; DATA:
//! plain, md5), created with initdb on free loopback ports and removed when the binary exits, and a pgsplit
//! instance per test on a free port.
#![allow(dead_code)]

pub mod logins;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use pgsplit::cluster::Cluster;
use tokio_util::sync::CancellationToken;

/// The clusters shared by every test in a binary.
pub struct Clusters {
    /// PRIMARY: config, customer.
    pub primary: Cluster,
    /// DATA: workspace, reference.
    pub data: Cluster,
    /// Password of the `pgsplit` role on both.
    pub server_password: String,
    /// The folder holding both (removed at exit).
    pub dir: PathBuf,
}

static CLUSTERS: OnceLock<Clusters> = OnceLock::new();
static CLEANUP: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

extern "C" fn remove_clusters() {
    if let Some(c) = CLUSTERS.get() {
        c.primary.stop_now();
        c.data.stop_now();
    }
    if let Ok(dirs) = CLEANUP.lock() {
        for d in dirs.iter() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// The shared clusters, created on first use (the demo's own set-up: roles, databases, sample schemas).
pub fn clusters() -> &'static Clusters {
    CLUSTERS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("pgsplit-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create test dir");
        CLEANUP.lock().expect("cleanup list").push(dir.clone());
        // SAFETY: registering a plain extern "C" function with atexit has no preconditions.
        unsafe { libc::atexit(remove_clusters) };
        // Tests run inside their own runtimes; the clusters are made on a thread of their own.
        let setup_dir = dir.clone();
        let (primary, data, _) = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(pgsplit::demo::set_up(&setup_dir))
        })
        .join()
        .expect("cluster set-up thread")
        .expect("create clusters");
        let server_password = std::fs::read_to_string(dir.join("server-password")).expect("server password");
        Clusters { primary, data, server_password, dir }
    })
}

/// Password of the `app` user in test configurations.
pub const APP_PASSWORD: &str = "app-secret";

/// A routing.yaml for the shared clusters; `extra` is appended at the top level. Its Unix-domain socket is in the
/// test's directory, unless `extra` sets `unix_socket_dir`.
pub fn config_yaml(primary_tls: &str, extra: &str) -> String {
    let c = clusters();
    let ca = c.primary.ca_cert().map(|p| p.display().to_string()).unwrap_or_default();
    format!(
        "listen: 127.0.0.1:0
database: handled
default_target: primary
targets:
  primary:
    url: postgresql://pgsplit:{pw}@localhost:{pport}/handled_primary
    tls: {{ mode: {primary_tls}, ca: \"{ca}\" }}
    pool: {{ max: 5, checkout_timeout: 3s }}
    schemas: [config, customer]
  data:
    url: postgresql://pgsplit:{pw}@127.0.0.1:{dport}/handled_data
    pool: {{ max: 10, checkout_timeout: 3s }}
    schemas: [workspace, reference]
users:
  - {{ name: app, password: \"{APP_PASSWORD}\" }}
admin_users: []
{unix}{extra}",
        // A pgsplit binary a test kills leaves its Unix-domain socket file: in the test's directory, removed at exit,
        // rather than in /tmp (the default).
        unix = if extra.contains("unix_socket_dir") { String::new() } else { format!("unix_socket_dir: {}\n", c.dir.display()) },
        pw = c.server_password,
        pport = c.primary.port(),
        dport = c.data.port(),
    )
}

/// A running pgsplit; stops when dropped.
pub struct Proxy {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The App it serves, for inspecting pools and the cache.
    pub app: Arc<pgsplit::App>,
    /// Stops the accept loop.
    shutdown: CancellationToken,
    /// Ends the test's watchdog when the test is over (`test_time_limit`).
    _watchdog: std::sync::mpsc::Sender<()>,
}

/// How long a test that starts pgsplit may run (`PGSPLIT_TEST_TIME_LIMIT` seconds, 300 by default): past it the
/// test hangs, and the test binary exits with the test's name, so a hang fails the run instead of stalling it.
/// A test takes seconds: this is no timing assertion.
fn test_time_limit() -> Duration {
    let secs = std::env::var("PGSPLIT_TEST_TIME_LIMIT").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    Duration::from_secs(secs)
}

/// Ends the process if the returned sender is not dropped within `test_time_limit`.
fn watchdog() -> std::sync::mpsc::Sender<()> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    let limit = test_time_limit();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            // Straight to the file descriptor: the test harness captures `eprintln!`, and would never print it.
            let say = format!("\n{test} still runs after {limit:?}: it hangs; the test binary exits\n");
            let _ = std::io::Write::write_all(&mut std::io::stderr(), say.as_bytes());
            // `exit`, not `abort`: the clusters are removed at exit (`remove_clusters`).
            std::process::exit(101);
        }
    });
    tx
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Proxy {
    /// Starts pgsplit from configuration text on a free port.
    pub async fn start(yaml: &str) -> Proxy {
        let config = pgsplit::config::load_str(yaml, &clusters().dir, &|k| std::env::var(k).ok()).expect("test config loads");
        Proxy::serve(Arc::new(pgsplit::App::build(config).expect("app builds"))).await
    }

    /// Starts pgsplit from a configuration file (so RELOAD re-reads it) on a free port.
    pub async fn start_file(path: &std::path::Path) -> Proxy {
        let config = pgsplit::config::load_file(path).expect("test config loads");
        Proxy::serve(Arc::new(pgsplit::App::build(config).expect("app builds").with_source(path))).await
    }

    /// Serves `app` on a free port, under the test's watchdog.
    async fn serve(app: Arc<pgsplit::App>) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let shutdown = CancellationToken::new();
        tokio::spawn(pgsplit::run(listener, app.clone(), shutdown.clone(), Duration::from_secs(1)));
        Proxy { port, app, shutdown, _watchdog: watchdog() }
    }

    /// The default split configuration.
    pub async fn split() -> Proxy {
        Proxy::start(&config_yaml("verify-full", "")).await
    }

    /// A libpq-style connection string for user `app`.
    pub fn dsn(&self) -> String {
        format!("host=127.0.0.1 port={} user=app password={APP_PASSWORD} dbname=handled sslmode=disable", self.port)
    }

    /// A tokio-postgres client through pgsplit.
    pub async fn connect(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.dsn(), tokio_postgres::NoTls).await.expect("connect through pgsplit");
        tokio::spawn(conn);
        client
    }
}

/// First column of the first row of a simple query, as text.
pub async fn scalar(client: &tokio_postgres::Client, sql: &str) -> String {
    for m in client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}: {:?}", e.as_db_error())) {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            return r.get(0).unwrap_or("NULL").to_owned();
        }
    }
    panic!("{sql}: no row")
}

/// The SQLSTATE of a failed query.
pub fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_owned()).unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

/// Runs SQL directly on a cluster (superuser, unix socket) and returns psql's unaligned output.
pub async fn direct(cluster: &Cluster, db: &str, sql: &str) -> String {
    cluster.psql(db, sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")).trim().to_owned()
}

/// Terminates the process of the DATA connection `c` reaches (through `table`, a table of DATA), so that pgsplit
/// opens another, lacking whatever was prepared there: with a DATA pool of one, the next statement meets a new one.
pub async fn replace_the_data_connection(c: &tokio_postgres::Client, table: &str) {
    let pid = scalar(c, &format!("select pg_backend_pid() from {table} limit 1")).await;
    direct(&clusters().data, "handled_data", &format!("select pg_terminate_backend({pid})")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// A raw protocol connection through pgsplit, logged in as `app` and past the first ReadyForQuery, for tests that
/// must send exactly the bytes they choose (or stop half-way).
pub async fn raw_login(port: u16) -> tokio::net::TcpStream {
    raw_login_with(port, &[]).await.0
}

/// `raw_login` with extra startup parameters; also returns the ParameterStatus values pgsplit greeted with, and
/// BackendKeyData's process id as `("BackendKeyData.pid", pid)`.
pub async fn raw_login_with(port: u16, extra: &[(&str, &str)]) -> (tokio::net::TcpStream, Vec<(String, String)>) {
    match try_login_with(port, extra).await {
        Ok(logged_in) => logged_in,
        Err(sqlstate) => panic!("login refused: {sqlstate}"),
    }
}

/// `raw_login_with`, or the SQLSTATE of the error that ended the login.
pub async fn try_login_with(port: u16, extra: &[(&str, &str)]) -> Result<(tokio::net::TcpStream, Vec<(String, String)>), String> {
    try_login_as(port, "app", APP_PASSWORD, "handled", extra).await
}

/// A raw protocol login as `user` (SCRAM with `password` if asked, or none: trust) to `database`.
pub async fn try_login_as(
    port: u16,
    user: &str,
    password: &str,
    database: &str,
    extra: &[(&str, &str)],
) -> Result<(tokio::net::TcpStream, Vec<(String, String)>), String> {
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
    use postgres_protocol::message::{backend::Message, frontend};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let mut out = bytes::BytesMut::new();
    let params = [("user", user), ("database", database)].into_iter().chain(extra.iter().copied());
    frontend::startup_message(params, &mut out).expect("startup");
    let mut reported = Vec::new();
    s.write_all(&out).await.expect("write startup");
    let mut buf = bytes::BytesMut::new();
    let mut scram = ScramSha256::new(password.as_bytes(), ChannelBinding::unrequested());
    loop {
        let msg = loop {
            if let Some(m) = Message::parse(&mut buf).expect("server message") {
                break m;
            }
            assert!(s.read_buf(&mut buf).await.expect("read") > 0, "server closed during login");
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
            Message::ParameterStatus(p) => {
                reported.push((p.name().expect("name").to_owned(), p.value().expect("value").to_owned()))
            }
            Message::BackendKeyData(k) => reported.push(("BackendKeyData.pid".to_owned(), k.process_id().to_string())),
            Message::ReadyForQuery(_) => return Ok((s, reported)),
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

/// A PostgreSQL client program from the server's bin folder (`psql`, `pgbench`, `pg_dump`).
pub fn pg_tool(name: &str) -> std::path::PathBuf {
    pgsplit::cluster::find_bindir().map(|b| b.join(name)).unwrap_or_else(|_| name.into())
}

/// Runs `script` through psql at `url` (`-X -q -At`, stopping at the first error); blocking.
pub fn psql_script(url: &str, script: impl AsRef<[u8]>) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(pg_tool("psql"))
        .args([url, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("psql runs");
    child.stdin.take().expect("stdin").write_all(script.as_ref()).expect("script");
    child.wait_with_output().expect("psql output")
}

/// Reads server messages until ReadyForQuery; returns their tags and the ReadyForQuery status.
pub async fn read_until_ready(s: &mut tokio::net::TcpStream) -> (Vec<u8>, u8) {
    let mut tags = Vec::new();
    loop {
        let (tag, body) = read_message(s).await;
        tags.push(tag);
        if tag == b'Z' {
            return (tags, body.first().copied().unwrap_or(0));
        }
    }
}

/// Reads exactly `n` server messages; returns their tags.
pub async fn read_messages(s: &mut tokio::net::TcpStream, n: usize) -> Vec<u8> {
    let mut tags = Vec::new();
    while tags.len() < n {
        tags.push(read_message(s).await.0);
    }
    tags
}

/// Reads one server message, exactly its bytes (never a byte of the next one): its tag and body.
pub async fn read_message(s: &mut tokio::net::TcpStream) -> (u8, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let mut header = [0u8; 5];
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_exact(&mut header)).await.unwrap().unwrap();
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let mut body = vec![0u8; len.saturating_sub(4)];
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_exact(&mut body)).await.unwrap().unwrap();
    (header[0], body)
}

/// Parse (named), Bind and Execute of `sql` with no parameters.
pub fn parse_bind_execute(name: &str, sql: &str, out: &mut bytes::BytesMut) {
    use postgres_protocol::message::frontend;
    frontend::parse(name, sql, std::iter::empty(), out).unwrap();
    bind_execute(name, out);
}

/// Bind of the statement `name` (no parameters) and Execute of the portal.
pub fn bind_execute(name: &str, out: &mut bytes::BytesMut) {
    use postgres_protocol::message::frontend;
    let no_params: [Option<&[u8]>; 0] = [];
    frontend::bind(
        "",
        name,
        std::iter::empty(),
        no_params.iter(),
        |_: &Option<&[u8]>, _: &mut bytes::BytesMut| Ok(postgres_protocol::IsNull::Yes),
        std::iter::empty(),
        out,
    )
    .map_err(|_| "bind")
    .unwrap();
    frontend::execute("", 0, out).unwrap();
}

/// Runs `flushed` (Parse/Bind/Execute, Flush) and then `refused` (Parse/Bind/Execute, Sync) on `s`, outside any
/// transaction, and checks what PostgreSQL would answer when the second part fails: the first part's replies at the
/// Flush, then the error and ReadyForQuery idle (the implicit transaction rolled back); then `after` (a simple query
/// returning one row) runs, idle. The caller checks that `flushed` left nothing behind.
pub async fn assert_refusal_after_flush_ends_idle(s: &mut tokio::net::TcpStream, flushed: &str, refused: &str, after: &str) {
    use postgres_protocol::message::frontend;
    use tokio::io::AsyncWriteExt;
    let mut out = bytes::BytesMut::new();
    parse_bind_execute("", flushed, &mut out);
    frontend::flush(&mut out);
    s.write_all(&out).await.unwrap();
    assert_eq!(read_messages(s, 3).await, b"12C", "{flushed}");
    out.clear();
    parse_bind_execute("", refused, &mut out);
    frontend::sync(&mut out);
    s.write_all(&out).await.unwrap();
    let (tags, status) = read_until_ready(s).await;
    assert_eq!((tags.as_slice(), status), (&b"EZ"[..], b'I'), "{refused}: {:?}", String::from_utf8_lossy(&tags));
    out.clear();
    frontend::query(after, &mut out).unwrap();
    s.write_all(&out).await.unwrap();
    let (tags, status) = read_until_ready(s).await;
    assert_eq!((tags.as_slice(), status), (&b"TDCZ"[..], b'I'), "{after}: {:?}", String::from_utf8_lossy(&tags));
}

/// A Query message carrying `sql` exactly as given (any bytes, in whatever encoding the test chose).
pub fn encode_query_bytes(sql: &[u8], out: &mut bytes::BytesMut) {
    use bytes::BufMut;
    out.put_u8(b'Q');
    out.put_u32(u32::try_from(sql.len() + 5).expect("a short query"));
    out.put_slice(sql);
    out.put_u8(0);
}

/// Logs in through pgsplit with `extra` startup parameters, sends `sql` as one Query and returns the SQLSTATE and
/// message of the ErrorResponse it gets (panics if there is none before ReadyForQuery).
pub async fn query_error(port: u16, extra: &[(&str, &str)], sql: &[u8]) -> (String, String) {
    use fallible_iterator::FallibleIterator;
    use postgres_protocol::message::backend::Message;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut s, _) = raw_login_with(port, extra).await;
    let mut out = bytes::BytesMut::new();
    encode_query_bytes(sql, &mut out);
    s.write_all(&out).await.expect("write");
    let mut buf = bytes::BytesMut::new();
    let mut error = None;
    loop {
        match Message::parse(&mut buf).expect("server message") {
            Some(Message::ErrorResponse(e)) => {
                let (mut code, mut message) = (String::new(), String::new());
                let mut fields = e.fields();
                while let Some(f) = fields.next().expect("fields") {
                    match f.type_() {
                        b'C' => code = String::from_utf8_lossy(f.value_bytes()).into_owned(),
                        b'M' => message = String::from_utf8_lossy(f.value_bytes()).into_owned(),
                        _ => {}
                    }
                }
                error = Some((code, message));
            }
            Some(Message::ReadyForQuery(_)) => return error.expect("an ErrorResponse before ReadyForQuery"),
            Some(_) => {}
            None => {
                let read = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_buf(&mut buf));
                assert!(read.await.expect("an answer within 10 s").expect("read") > 0, "server closed");
            }
        }
    }
}

/// A real PgBouncer process (`/usr/sbin/pgbouncer`, run as `postgres` when root) on a free port; killed when
/// dropped. Without PgBouncer installed, tests that need it fail with a message saying so, unless
/// `PGSPLIT_SKIP_PGBOUNCER=1`.
pub struct Bouncer {
    /// The PgBouncer process (exec'd directly, no wrapper, so killing it kills PgBouncer).
    child: std::process::Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its config and log folder.
    pub dir: PathBuf,
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where Debian installs PgBouncer, else PATH.
fn pgbouncer_binary() -> Option<PathBuf> {
    let sbin = PathBuf::from("/usr/sbin/pgbouncer");
    if sbin.exists() {
        return Some(sbin);
    }
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("pgbouncer")).find(|p| p.exists()))
}

impl Bouncer {
    /// Starts PgBouncer with the `pgbouncer.ini` `ini` writes for its port and folder, or returns `None` when it is
    /// missing and `PGSPLIT_SKIP_PGBOUNCER=1` allows skipping.
    pub async fn start(ini: impl FnOnce(u16, &std::path::Path) -> String) -> Option<Bouncer> {
        let Some(binary) = pgbouncer_binary() else {
            if std::env::var("PGSPLIT_SKIP_PGBOUNCER").is_ok_and(|v| v == "1") {
                eprintln!("pgbouncer not installed: skipped (PGSPLIT_SKIP_PGBOUNCER=1)");
                return None;
            }
            panic!("pgbouncer is not installed (apt-get install pgbouncer; .ci/run installs it); set PGSPLIT_SKIP_PGBOUNCER=1 to skip these tests");
        };
        let c = clusters();
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let dir = c.dir.join(format!("pgbouncer-{port}"));
        std::fs::create_dir_all(&dir).expect("pgbouncer dir");
        let ini = ini(port, &dir);
        let ini_path = dir.join("pgbouncer.ini");
        std::fs::write(&ini_path, ini).expect("pgbouncer.ini");
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let mut cmd = if root {
            // PgBouncer refuses to run as root; setpriv execs it as `postgres` (no extra process to kill).
            let status = std::process::Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status();
            assert!(status.is_ok_and(|s| s.success()), "chown the pgbouncer folder");
            let mut cmd = std::process::Command::new("setpriv");
            cmd.args(["--reuid=postgres", "--regid=postgres", "--init-groups"]).arg(&binary);
            cmd
        } else {
            std::process::Command::new(&binary)
        };
        let child = cmd
            .arg(&ini_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("pgbouncer starts");
        let bouncer = Bouncer { child, port, dir };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Some(bouncer);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "pgbouncer did not listen on {port}: {}",
            std::fs::read_to_string(bouncer.dir.join("pgbouncer.log")).unwrap_or_default()
        );
    }
}

/// What a simple Query answers, in raw protocol terms: the RowDescription's columns as (name, type OID), if one
/// came, the tags of the messages up to ReadyForQuery (DataRows left out), and the CommandComplete tag or the
/// error's SQLSTATE.
#[derive(Debug, PartialEq, Eq)]
pub struct Described {
    /// (name, type OID) of each column.
    pub columns: Option<Vec<(String, u32)>>,
    /// The message types, DataRows left out.
    pub messages: Vec<u8>,
    /// The CommandComplete tags, and `E:` + SQLSTATE for an error.
    pub outcome: Vec<String>,
}

/// Sends `sql` as a simple Query on a raw connection and reads its answer (`Described`).
pub async fn describe_query(s: &mut tokio::net::TcpStream, sql: &str) -> Described {
    use fallible_iterator::FallibleIterator;
    use postgres_protocol::message::backend::Message;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut out = bytes::BytesMut::new();
    postgres_protocol::message::frontend::query(sql, &mut out).expect("query");
    s.write_all(&out).await.expect("write");
    let mut buf = bytes::BytesMut::new();
    let mut d = Described { columns: None, messages: Vec::new(), outcome: Vec::new() };
    loop {
        let msg = loop {
            if let Some(m) = Message::parse(&mut buf).expect("server message") {
                break m;
            }
            assert!(s.read_buf(&mut buf).await.expect("read") > 0, "closed during {sql}");
        };
        let tag = match msg {
            Message::RowDescription(r) => {
                let fields: Vec<_> = r.fields().map(|f| Ok((f.name().to_owned(), f.type_oid()))).collect().expect("fields");
                d.columns = Some(fields);
                b'T'
            }
            Message::DataRow(_) => continue,
            Message::CommandComplete(c) => {
                d.outcome.push(c.tag().expect("tag").to_owned());
                b'C'
            }
            Message::ErrorResponse(e) => {
                let mut fields = e.fields();
                while let Some(f) = fields.next().expect("fields") {
                    if f.type_() == b'C' {
                        d.outcome.push(format!("E:{}", String::from_utf8_lossy(f.value_bytes())));
                    }
                }
                b'E'
            }
            Message::NoticeResponse(_) => b'N',
            Message::EmptyQueryResponse => b'I',
            Message::ReadyForQuery(_) => {
                d.messages.push(b'Z');
                return d;
            }
            _ => b'?',
        };
        d.messages.push(tag);
    }
}
