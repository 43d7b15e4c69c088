//! Operating pgsplit (SPEC §6): /api/health with each target down (and while one hangs), /metrics after real traffic,
//! connection alerts, JSON logs without passwords, and graceful shutdown of the real binary on SIGTERM.
//! The tests here stop the shared clusters: they run one at a time.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{clusters, config_yaml, sqlstate, Proxy, APP_PASSWORD};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// One test at a time: some stop clusters, others count connections.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A GET over a fresh connection: (status code, body).
async fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect to the http endpoint");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read response");
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("headers end");
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("status code");
    (status, body.to_owned())
}

/// GET /api/health, bounded: the handler reads cached state only, so even while a target hangs it answers at once.
/// The bound is far above the documented 50 ms so that a loaded machine does not fail it, and far below the probe
/// and checkout timeouts (3-10 s) that an answer waiting on a target would take.
async fn health(addr: &str) -> (u16, serde_json::Value) {
    let (code, body) = tokio::time::timeout(Duration::from_secs(1), get(addr, "/api/health"))
        .await
        .expect("/api/health answers within 1 s (it must never wait on a target)");
    (code, serde_json::from_str(&body).unwrap_or_else(|e| panic!("health body is JSON: {e}: {body}")))
}

/// Serves /api/health and /metrics for an in-process proxy on a free port; returns its address.
async fn http_for(proxy: &Proxy) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind http");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(pgsplit::http::serve(listener, Arc::downgrade(&proxy.app), CancellationToken::new()));
    addr
}

/// Polls health until `done` holds, for at most `limit`.
async fn health_until(addr: &str, limit: Duration, done: impl Fn(u16, &serde_json::Value) -> bool) -> (u16, serde_json::Value) {
    let started = Instant::now();
    loop {
        let (code, v) = health(addr).await;
        if done(code, &v) {
            return (code, v);
        }
        assert!(started.elapsed() < limit, "health still {code} {v} after {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `name{labels} value` lines of a Prometheus text page.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.to_owned(), v.parse().unwrap_or_else(|_| panic!("not a number in {k} {v}"))))
        .collect()
}

fn sample(m: &HashMap<String, f64>, key: &str) -> f64 {
    *m.get(key).unwrap_or_else(|| panic!("no sample {key}; have {:?}", m.keys().collect::<Vec<_>>()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_degraded_without_data_unhealthy_without_primary_and_single_mode_ignores_data() {
    let _serial = SERIAL.lock().await;
    let proxy = Proxy::split().await;
    let http = http_for(&proxy).await;
    let (code, v) = health(&http).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], "healthy");
    assert_eq!(v["mode"], "split");
    assert_eq!(v["databases"], serde_json::json!({"primary": "connected", "data": "connected"}));
    let ts = v["timestamp"].as_str().expect("timestamp");
    assert!(ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "RFC 3339 UTC: {ts}");

    let cl = clusters();
    let c = proxy.connect().await;
    cl.data.stop().await.expect("stop DATA");
    // A statement for DATA finds it down at once; the background probe would within one interval.
    c.simple_query("select 1 from reference.countries").await.expect_err("DATA is down");
    let (code, v) = health_until(&http, Duration::from_secs(15), |_, v| v["status"] != "healthy").await;
    assert_eq!((code, v["status"].as_str()), (200, Some("degraded")), "{v}");
    assert_eq!(v["databases"], serde_json::json!({"primary": "connected", "data": "disconnected"}));

    // Single mode on PRIMARY: DATA is unused, and its outage does not count.
    let single = Proxy::start(&config_yaml("verify-full", "mode: single\nsingle_target: primary\n")).await;
    let single_http = http_for(&single).await;
    single.connect().await.simple_query("select 1").await.expect("single mode serves from PRIMARY");
    let (code, v) = health(&single_http).await;
    assert_eq!((code, v["status"].as_str(), v["mode"].as_str()), (200, Some("healthy"), Some("single")), "{v}");
    assert_eq!(v["databases"], serde_json::json!({"primary": "connected", "data": "unused"}));
    cl.data.start().await.expect("start DATA");
    health_until(&http, Duration::from_secs(20), |code, v| code == 200 && v["status"] == "healthy").await;

    cl.primary.stop().await.expect("stop PRIMARY");
    c.simple_query("select 1 from config.users").await.expect_err("PRIMARY is down");
    let (_, v) = health_until(&http, Duration::from_secs(15), |code, _| code == 503).await;
    assert_eq!(v["status"], "unhealthy", "{v}");
    assert_eq!(v["databases"], serde_json::json!({"primary": "disconnected", "data": "connected"}));
    // Single mode on PRIMARY is unhealthy too.
    single.connect().await.simple_query("select 1").await.expect_err("PRIMARY is down");
    let (_, v) = health_until(&single_http, Duration::from_secs(15), |code, _| code == 503).await;
    assert_eq!(v["databases"], serde_json::json!({"primary": "disconnected", "data": "unused"}));
    cl.primary.start().await.expect("start PRIMARY");
    health_until(&http, Duration::from_secs(20), |code, v| code == 200 && v["status"] == "healthy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_at_once_while_a_target_accepts_connections_but_never_answers() {
    let _serial = SERIAL.lock().await;
    // A "server" that accepts TCP connections and then says nothing, ever.
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hang_port = hang.local_addr().expect("addr").port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = hang.accept().await {
            keep.lock().expect("sockets").push(s);
        }
    });
    let yaml = config_yaml("verify-full", "")
        .replace(&format!("127.0.0.1:{}/handled_data", clusters().data.port()), &format!("127.0.0.1:{hang_port}/handled_data"));
    let proxy = Proxy::start(&yaml).await;
    let http = http_for(&proxy).await;
    // Every answer is bounded by `health`; meanwhile the catalog read and the probes of DATA hang until their
    // timeouts, and the probe's timeout finally marks DATA down.
    let (code, v) = health_until(&http, Duration::from_secs(45), |_, v| v["databases"]["data"] == "disconnected").await;
    assert_eq!((code, v["status"].as_str()), (200, Some("degraded")), "{v}");
    assert!(!held.lock().expect("sockets").is_empty(), "pgsplit did connect to the hanging target");
    // PRIMARY still serves.
    let c = proxy.connect().await;
    c.simple_query("select 1 from config.users").await.expect("PRIMARY unaffected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_clients_queries_errors_refusals_routes_and_cache_hits() {
    let _serial = SERIAL.lock().await;
    let proxy = Proxy::split().await;
    let http = http_for(&proxy).await;
    let c = proxy.connect().await;
    for id in 1..=3 {
        c.simple_query(&format!("select * from config.users where id = {id}")).await.expect("PRIMARY query");
    }
    c.simple_query("select count(*) from reference.countries").await.expect("DATA query");
    let err = c.simple_query("select 1 / 0 from reference.countries").await.expect_err("division by zero");
    assert_eq!(sqlstate(&err), "22012");
    let err = c.simple_query("select * from config.users u join workspace.imports i on true").await.expect_err("cross");
    assert_eq!(sqlstate(&err), "0A000");
    let err = c.simple_query("/* pgsplit: target=nowhere */ select 1").await.expect_err("unknown hint");
    assert_eq!(sqlstate(&err), "22023");
    // A transaction held open on DATA: one active connection there.
    let held = proxy.connect().await;
    held.simple_query("begin; select 1 from reference.countries limit 1").await.expect("open transaction");

    // A statement is counted once its reply is on its way to the client, on the session's thread: a scrape right
    // after the client has its answer may come first, so the counters are read until the last one is in (as a
    // Prometheus scrape a moment later would), within 10 s.
    let started = std::time::Instant::now();
    let (code, text) = loop {
        let (code, text) = get(&http, "/metrics").await;
        let counted = sample(&samples(&text), "pgsplit_queries_total{target=\"data\"}");
        if code != 200 || counted >= 3.0 || started.elapsed() > Duration::from_secs(10) {
            break (code, text);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(code, 200);
    let m = samples(&text);
    assert_eq!(sample(&m, "pgsplit_clients"), 2.0);
    assert_eq!(sample(&m, "pgsplit_mode{mode=\"split\"}"), 1.0);
    assert_eq!(sample(&m, "pgsplit_mode{mode=\"single\"}"), 0.0);
    assert_eq!(sample(&m, "pgsplit_target_up{target=\"data\"}"), 1.0);
    assert_eq!(sample(&m, "pgsplit_queries_total{target=\"primary\"}"), 3.0);
    assert_eq!(sample(&m, "pgsplit_queries_total{target=\"data\"}"), 3.0, "two statements and the open transaction");
    assert_eq!(sample(&m, "pgsplit_query_errors_total{target=\"data\"}"), 1.0);
    assert_eq!(sample(&m, "pgsplit_query_errors_total{target=\"primary\"}"), 0.0);
    assert_eq!(sample(&m, "pgsplit_refusals_total{reason=\"cross_target\",sqlstate=\"0A000\"}"), 1.0);
    assert_eq!(sample(&m, "pgsplit_refusals_total{reason=\"unknown_target\",sqlstate=\"22023\"}"), 1.0);
    assert_eq!(sample(&m, "pgsplit_route_decisions_total{target=\"primary\",reason=\"relations\"}"), 3.0);
    assert_eq!(sample(&m, "pgsplit_route_decisions_total{target=\"data\",reason=\"relations\"}"), 3.0);
    // The three PRIMARY texts differ only in a literal: one analysis, two hits.
    assert!(sample(&m, "pgsplit_route_cache_hits_total") >= 2.0, "{text}");
    assert!(sample(&m, "pgsplit_route_cache_misses_total") >= 4.0, "{text}");
    assert!(sample(&m, "pgsplit_route_cache_entries") >= 4.0);
    assert!(sample(&m, "pgsplit_route_cache_bytes") > 0.0);
    assert_eq!(sample(&m, "pgsplit_server_connections{target=\"data\",state=\"active\"}"), 1.0);
    assert_eq!(sample(&m, "pgsplit_waiting_clients{target=\"data\"}"), 0.0);
    assert_eq!(sample(&m, "pgsplit_query_duration_seconds_count{target=\"primary\"}"), 3.0);
    assert_eq!(sample(&m, "pgsplit_query_duration_seconds_bucket{target=\"primary\",le=\"+Inf\"}"), 3.0);
    assert!(sample(&m, "pgsplit_checkout_wait_seconds_count{target=\"data\"}") >= 3.0);
    assert_eq!(sample(&m, "pgsplit_pinned_sessions"), 0.0);
    assert!(text.contains("# TYPE pgsplit_query_duration_seconds histogram"), "{text}");
    // PgBouncer's SHOW STATS totals, transactions apart from statements: on PRIMARY, three autocommit statements.
    assert_eq!(sample(&m, "pgsplit_stats_sql_transactions_pooled_total{target=\"primary\"}"), 3.0);
    assert_eq!(sample(&m, "pgsplit_stats_queries_pooled_total{target=\"primary\"}"), 3.0);
    assert!(sample(&m, "pgsplit_stats_received_bytes_total{target=\"primary\"}") > 3.0 * 30.0, "three Query messages");
    assert!(sample(&m, "pgsplit_stats_sent_bytes_total{target=\"primary\"}") > 0.0);
    assert!(sample(&m, "pgsplit_stats_queries_duration_seconds_total{target=\"primary\"}") > 0.0);
    assert_eq!(sample(&m, "pgsplit_databases_pool_size{target=\"primary\"}"), 5.0);
    assert_eq!(sample(&m, "pgsplit_databases_pool_size{target=\"data\"}"), 10.0);
    assert_eq!(sample(&m, "pgsplit_config_max_client_connections"), proxy.app.config().max_client_conn as f64);
    assert_eq!(sample(&m, &format!("pgsplit_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"))), 1.0);
    assert!(sample(&m, "process_resident_memory_bytes") > 0.0 && sample(&m, "process_open_fds") > 0.0);
    assert!(sample(&m, "process_max_fds") >= sample(&m, "process_open_fds"));
    assert!(sample(&m, "process_start_time_seconds") > 1.7e9 && sample(&m, "process_cpu_seconds_total") >= 0.0);
    assert!(text.contains("# TYPE process_cpu_seconds_total counter"), "{text}");

    // A pinned session and a closed client show up at the next scrape.
    held.simple_query("commit").await.expect("commit");
    held.simple_query("select pg_advisory_lock(4242)").await.expect("session advisory lock pins");
    drop(c);
    let started = Instant::now();
    loop {
        let m = samples(&get(&http, "/metrics").await.1);
        if sample(&m, "pgsplit_clients") == 1.0 && sample(&m, "pgsplit_pinned_sessions") == 1.0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "clients/pins not updated: {m:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A pgsplit binary with JSON logs (RUST_LOG=debug) whose stderr lines are collected as they come.
struct Binary {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

/// The test configuration with an http endpoint on a free port, plus `extra` top-level keys.
fn binary_yaml(extra: &str) -> String {
    config_yaml("verify-full", &format!("http: 127.0.0.1:0\n{extra}"))
}

impl Binary {
    /// Starts the binary on configuration `yaml` (written to a file of its own).
    fn start(yaml: &str) -> Binary {
        let dir = clusters().dir.join(format!("ops-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).expect("config dir");
        let path = dir.join("routing.yaml");
        std::fs::write(&path, yaml).expect("config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_pgsplit"))
            .args(["--config", path.to_str().expect("utf-8 path"), "--log-format", "json"])
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pgsplit binary starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("lines").push(line);
            }
        });
        Binary { child, lines }
    }

    /// The first log line (parsed) whose message is `message`, waiting up to `limit` for it.
    fn wait_for(&self, message: &str, limit: Duration) -> serde_json::Value {
        let started = Instant::now();
        loop {
            if let Some(v) = self.logs().into_iter().find(|v| v["fields"]["message"] == message) {
                return v;
            }
            assert!(started.elapsed() < limit, "no log line {message:?} after {limit:?}:\n{}", self.text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every line so far, each parsed as JSON (a line that is not JSON fails the test).
    fn logs(&self) -> Vec<serde_json::Value> {
        let lines = self.lines.lock().expect("lines").clone();
        lines.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}"))).collect()
    }

    fn text(&self) -> String {
        self.lines.lock().expect("lines").join("\n")
    }

    /// The proxy's and the http endpoint's addresses, from the start-up log lines.
    fn addrs(&self) -> (u16, String) {
        let listen = self.wait_for("pgsplit listening", Duration::from_secs(30));
        let port = listen["fields"]["listen"].as_str().and_then(|a| a.rsplit_once(':')).and_then(|(_, p)| p.parse().ok());
        let http = self.logs().into_iter().find_map(|v| v["fields"]["http"].as_str().map(str::to_owned));
        (port.expect("listen port in the log"), http.expect("http address in the log"))
    }

    fn sigterm(&self) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "SIGTERM sent");
    }

    /// Waits for the process to exit; its exit code.
    fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                panic!("pgsplit did not exit within {limit:?}:\n{}", self.text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dsn(port: u16, password: &str) -> String {
    format!("host=127.0.0.1 port={port} user=app password={password} dbname=handled sslmode=disable")
}

async fn connect(port: u16) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(&dsn(port, APP_PASSWORD), tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_have_one_line_per_connection_refusal_and_disconnect_and_never_a_password() {
    let _serial = SERIAL.lock().await;
    let mut bin = Binary::start(&binary_yaml(""));
    let (port, _) = bin.addrs();
    let c = connect(port).await.expect("connect through the binary");
    let err = c.simple_query("select * from config.users u join workspace.imports i on true").await.expect_err("cross");
    assert_eq!(sqlstate(&err), "0A000");
    c.simple_query("select count(*) from config.sessions").await.expect("query");
    drop(c);
    let wrong = "wrong-password-7f3a";
    let refused = tokio_postgres::connect(&dsn(port, wrong), tokio_postgres::NoTls).await.err().expect("wrong password refused");
    assert_eq!(sqlstate(&refused), "28P01");
    bin.wait_for("client disconnected", Duration::from_secs(10));
    bin.wait_for("client refused at startup", Duration::from_secs(10));
    bin.sigterm();
    assert_eq!(bin.wait_exit(Duration::from_secs(30)), Some(0));

    let logs = bin.logs();
    let with = |msg: &str| logs.iter().filter(|v| v["fields"]["message"] == msg).cloned().collect::<Vec<_>>();
    let connected = with("client connected");
    assert_eq!(connected.len(), 1, "one line per connection");
    let f = &connected[0]["fields"];
    assert_eq!(
        (f["user"].as_str(), f["database"].as_str(), f["tls"].as_bool()),
        (Some("app"), Some("handled"), Some(false)),
        "{f}"
    );
    assert!(f["peer"].as_str().is_some_and(|p| p.starts_with("127.0.0.1:")), "{f}");
    let refused = with("statement refused");
    assert_eq!(refused.len(), 1, "one line per refusal");
    let f = &refused[0]["fields"];
    assert_eq!((f["reason"].as_str(), f["sqlstate"].as_str()), (Some("cross_target"), Some("0A000")), "{f}");
    assert_eq!(with("client disconnected").len(), 1, "one line per disconnect");
    let startup = with("client refused at startup");
    assert_eq!(startup[0]["fields"]["sqlstate"], "28P01");
    let text = bin.text();
    for secret in [APP_PASSWORD, wrong, clusters().server_password.as_str()] {
        assert!(!text.contains(secret), "a password ({secret}) appears in the logs:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_open_transaction_commit_refuses_new_clients_ends_idle_ones_and_exits_0() {
    let _serial = SERIAL.lock().await;
    // One worker (`workers: 1`, a single event loop for every session): the drain reaches each session on it.
    let mut bin = Binary::start(&binary_yaml("shutdown_timeout: 120s\nworkers: 1\n"));
    let (port, http) = bin.addrs();
    assert_eq!(bin.wait_for("threads running the proxy", Duration::from_secs(1))["fields"]["workers"], 1);
    let table = format!("workspace.shutdown_{}", std::process::id());
    let busy = connect(port).await.expect("connect");
    let idle = connect(port).await.expect("connect");
    idle.simple_query("select 1").await.expect("idle client works before shutdown");
    // Sends nothing after shutdown starts: only the session's drain wake-up can end it.
    let silent = connect(port).await.expect("connect");
    silent.simple_query("select 1").await.expect("silent client works before shutdown");
    // Pinned to its server connection by LISTEN, and silent too.
    let listening = connect(port).await.expect("connect");
    listening.simple_query("listen pgsplit_shutdown").await.expect("LISTEN pins the session");
    busy.simple_query(&format!("begin; create table {table} (x int)")).await.expect("open transaction");
    bin.sigterm();
    bin.wait_for("shutting down: waiting for open transactions", Duration::from_secs(10));
    let closed_by_pgsplit = async {
        while !silent.is_closed() || !listening.is_closed() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(10), closed_by_pgsplit).await.is_ok(),
        "sessions waiting for their clients (one pinned) are ended at shutdown without a message from the client"
    );

    // The transaction goes on and commits; health still answers meanwhile.
    busy.simple_query(&format!("insert into {table} values (1), (2)")).await.expect("statement after SIGTERM");
    assert_eq!(health(&http).await.0, 200);
    assert!(connect(port).await.is_err(), "new connections are refused once shutting down");
    let err = idle.simple_query("select 1").await.expect_err("an idle session is closed at shutdown");
    assert!(err.is_closed() || sqlstate(&err) == "57P01", "{err:?}");
    busy.simple_query("commit").await.expect("COMMIT after SIGTERM succeeds");
    let rows = common::direct(&clusters().data, "handled_data", &format!("select count(*) from {table}")).await;
    assert_eq!(rows, "2", "the transaction committed on DATA");
    common::direct(&clusters().data, "handled_data", &format!("drop table {table}")).await;

    // At rest after COMMIT, the last session is ended and the process exits 0 without waiting out the 120 s.
    assert!(busy.simple_query("select 1").await.is_err(), "the session ends once its transaction has");
    assert_eq!(bin.wait_exit(Duration::from_secs(60)), Some(0));
    assert!(!bin.text().contains("shutdown timeout reached"), "exited because the last session ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_transaction_that_never_ends_exits_0_after_shutdown_timeout() {
    let _serial = SERIAL.lock().await;
    let mut bin = Binary::start(&binary_yaml("shutdown_timeout: 2s\n"));
    let (port, _) = bin.addrs();
    let stuck = connect(port).await.expect("connect");
    stuck.simple_query("begin; select 1 from reference.countries limit 1").await.expect("open transaction");
    bin.sigterm();
    assert_eq!(bin.wait_exit(Duration::from_secs(30)), Some(0));
    bin.wait_for("shutdown timeout reached: closing the sessions still open", Duration::from_secs(1));
    assert!(stuck.simple_query("commit").await.is_err(), "the session was closed with the process");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_alert_is_logged_with_target_count_and_threshold_and_exported() {
    let _serial = SERIAL.lock().await;
    // DATA with a threshold of 2, raised at the first probe tick above it: three transactions held open there
    // keep three server connections open.
    let yaml = binary_yaml("alert_sustain: 0s\n")
        .replace("    schemas: [workspace, reference]\n", "    schemas: [workspace, reference]\n    alert_connections: 2\n");
    let bin = Binary::start(&yaml);
    let (port, http) = bin.addrs();
    let mut held = Vec::new();
    for _ in 0..3 {
        let c = connect(port).await.expect("connect");
        c.simple_query("begin; select 1 from reference.countries limit 1").await.expect("open transaction");
        held.push(c);
    }
    let line = bin.wait_for("connection alert: target has more server connections than its threshold", Duration::from_secs(30));
    assert_eq!(line["level"], "WARN");
    let f = &line["fields"];
    assert_eq!((f["target"].as_str(), f["threshold"].as_u64()), (Some("data"), Some(2)), "{f}");
    assert!(f["connections"].as_u64().is_some_and(|n| n >= 3), "{f}");
    let m = samples(&get(&http, "/metrics").await.1);
    assert_eq!(sample(&m, "pgsplit_connection_alert{target=\"data\"}"), 1.0);
    assert_eq!(sample(&m, "pgsplit_connection_alert_threshold{target=\"data\"}"), 2.0);
    assert!(!m.contains_key("pgsplit_connection_alert{target=\"primary\"}"), "PRIMARY has no threshold");
    for c in &held {
        c.simple_query("commit").await.expect("commit");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_cache_logs_its_line_exports_its_metrics_and_answers_show_cache() {
    let _serial = SERIAL.lock().await;
    let yaml = binary_yaml("cache: { stats_period: 1s, tables: [ { name: config.users, ttl: 10m } ] }\n")
        .replace("admin_users: []", "admin_users: [admin]")
        .replace("users:\n", "users:\n  - { name: admin, password: \"admin-secret\" }\n");
    let bin = Binary::start(&yaml);
    let (port, http) = bin.addrs();
    let c = connect(port).await.expect("login");
    for _ in 0..3 {
        c.simple_query("select email from config.users where id = 1").await.expect("cached read");
    }
    // The runbook's line: logged every stats_period with the figures.
    let started = Instant::now();
    let line = loop {
        let found = bin.logs().into_iter().rfind(|v| v["fields"]["message"] == "SessionCache");
        if let Some(v) = found.filter(|v| v["fields"]["hits"].as_u64() == Some(2)) {
            break v;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no SessionCache line with 2 hits:\n{}", bin.text());
        std::thread::sleep(Duration::from_millis(100));
    };
    let f = &line["fields"];
    assert_eq!((f["misses"].as_u64(), f["entries"].as_u64()), (Some(1), Some(1)), "{line}");
    assert_eq!(f["hit_rate"], "66.7%", "{line}");
    assert!(f["bytes"].as_u64().is_some_and(|b| b > 0), "{line}");
    for key in ["evictions", "invalidations"] {
        assert_eq!(f[key].as_u64(), Some(0), "{key}: {line}");
    }
    let m = samples(&get(&http, "/metrics").await.1);
    assert_eq!(sample(&m, "pgsplit_session_cache_hits_total"), 2.0);
    assert_eq!(sample(&m, "pgsplit_session_cache_misses_total"), 1.0);
    assert_eq!(sample(&m, "pgsplit_session_cache_entries"), 1.0);
    assert_eq!(sample(&m, "pgsplit_session_cache_max_bytes"), f64::from(64u32 << 20));
    let dsn = format!("host=127.0.0.1 port={port} user=admin password=admin-secret dbname=pgsplit sslmode=disable");
    let (admin, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await.expect("admin login");
    tokio::spawn(conn);
    let rows = admin.simple_query("SHOW CACHE").await.expect("SHOW CACHE");
    let row = rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .expect("a row");
    assert_eq!((row.get("hits"), row.get("misses"), row.get("entries")), (Some("2"), Some("1"), Some("1")));
    let tables = row.get("tables").unwrap_or_default();
    assert!(tables.starts_with("config.users (primary, ttl 600s, "), "{tables}");
}
