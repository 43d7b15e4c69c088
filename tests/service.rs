//! pgsplit as a service: the Debian package installed with `dpkg -i` (its user, files, unit, and a `pgsplit check`
//! run from it), and the sd_notify messages it sends on a NOTIFY_SOCKET this test makes, through a reload and a stop,
//! with a second SIGTERM cutting the drain short; a restart with `so_reuseport` that refuses no client, over TCP
//! or the Unix-domain socket; and `unix_socket_dir`: psql and a driver on the socket file, SHOW CLIENTS, a stale
//! file replaced, a live one or a regular file left alone, the abstract namespace.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

fn scratch(name: &str) -> PathBuf {
    let dir = clusters().dir.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Runs a command, failing the test with its output unless it succeeds; its stdout.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `cargo deb` on the binary this test run built (its profile's folder), into `dir`.
fn build_package(dir: &Path) -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_pgsplit"));
    let profile = match bin.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_owned(),
        Some(other) => other.to_owned(),
        None => panic!("cannot tell the profile of {}", bin.display()),
    };
    let deb = dir.join("pgsplit.deb");
    run(Command::new("cargo")
        .args(["deb", "--no-build", "--profile", &profile, "--output"])
        .arg(&deb)
        .current_dir(env!("CARGO_MANIFEST_DIR")));
    deb
}

/// `dpkg` as root (the test runs as root, or with password-less sudo).
fn dpkg(args: &[&str]) -> Command {
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = Command::new(if root { "dpkg" } else { "sudo" });
    if !root {
        cmd.args(["-n", "dpkg"]);
    }
    cmd.args(args);
    cmd
}

/// Purges the package when the test ends, passed or not.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = dpkg(&["--purge", "pgsplit"]).output();
    }
}

#[test]
fn the_debian_package_installs_a_user_a_private_config_a_notify_unit_and_a_pgsplit_that_checks_the_targets() {
    let dir = scratch("deb");
    let deb = build_package(&dir);
    let fields = run(Command::new("dpkg-deb").arg("--field").arg(&deb));
    assert!(fields.contains("Package: pgsplit") && fields.contains("adduser"), "{fields}");
    let _installed = Installed;
    run(&mut dpkg(&["-i", deb.to_str().expect("path")]));

    let user = run(Command::new("getent").args(["passwd", "pgsplit"]));
    assert!(user.starts_with("pgsplit:"), "{user}");
    for file in ["/etc/pgsplit/routing.yaml", "/etc/pgsplit/environment"] {
        let owner = run(Command::new("stat").args(["-c", "%U:%G %a", file]));
        assert_eq!(owner.trim(), "root:pgsplit 640", "{file}");
    }
    let conffiles = run(Command::new("dpkg-query").args(["--control-show", "pgsplit", "conffiles"]));
    assert!(conffiles.contains("/etc/pgsplit/routing.yaml"), "{conffiles}");
    let unit_path = ["/lib/systemd/system/pgsplit.service", "/usr/lib/systemd/system/pgsplit.service"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("the unit is installed");
    let unit = std::fs::read_to_string(unit_path).expect("unit");
    for line in [
        "Type=notify",
        "User=pgsplit",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProcSubset=pid",
        "Environment=PGSPLIT_UNIX_SOCKET_DIR=/run/pgsplit",
        "RuntimeDirectory=pgsplit",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} missing from the unit");
    }
    let verify = Command::new("systemd-analyze").args(["verify", unit_path]).output().expect("systemd-analyze");
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "systemd-analyze verify: {said}");

    // The installed binary, as the installed user, on the installed configuration: reaches both targets.
    let c = clusters();
    let ca = dir.join("ca.crt");
    std::fs::copy(c.primary.ca_cert().expect("PRIMARY has TLS"), &ca).expect("copy the CA");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = Command::new("runuser")
        .args(["-u", "pgsplit", "--", "/usr/bin/pgsplit", "check"])
        .env("PGSPLIT_CONFIG", "/etc/pgsplit/routing.yaml")
        .env(
            "PRIMARY_DATABASE_URL",
            format!("postgresql://pgsplit:{}@localhost:{}/handled_primary", c.server_password, c.primary.port()),
        )
        .env("DATA_DATABASE_URL", format!("postgresql://pgsplit:{}@127.0.0.1:{}/handled_data", c.server_password, c.data.port()))
        .env("PRIMARY_CA", &ca)
        .env("APP_PASSWORD", "x")
        .output()
        .expect("pgsplit check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("primary: ok") && stdout.contains("data: ok"), "{stdout}");
}

/// A `pgsplit serve` child with a NOTIFY_SOCKET, its stderr collected.
struct Served {
    child: Child,
    socket: UnixDatagram,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Served {
    fn start(name: &str, extra: &str) -> Served {
        Served::start_yaml(name, &config_yaml("verify-full", extra))
    }

    fn start_yaml(name: &str, yaml: &str) -> Served {
        let dir = scratch(name);
        let config = dir.join("routing.yaml");
        std::fs::write(&config, yaml).expect("config");
        let notify = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&notify).expect("NOTIFY_SOCKET");
        socket.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
        let mut child = Command::new(env!("CARGO_BIN_EXE_pgsplit"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("NOTIFY_SOCKET", &notify)
            .env("RUST_LOG", "info")
            .env_remove("NO_COLOR")
            .stderr(Stdio::piped())
            .spawn()
            .expect("pgsplit serve");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("log").push_str(&(line + "\n"));
            }
        });
        Served { child, socket, log }
    }

    /// The next notification, split into its `KEY=value` lines.
    fn next(&self) -> Vec<String> {
        let mut buf = vec![0u8; 4096];
        let n = self.socket.recv(&mut buf).expect("a notification within 60 s");
        String::from_utf8_lossy(&buf[..n]).lines().map(str::to_owned).collect()
    }

    fn signal(&self, sig: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill");
    }

    fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().expect("wait")
    }

    /// The exit status, which must come within 30 s (a pgsplit that should not have started fails the test).
    fn exit_within_30s(&mut self) -> std::process::ExitStatus {
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("still running after 30 s: {}", self.log.lock().expect("log"));
    }

    /// The log once it holds `needle` (its reader may lag behind the process's end); fails the test after 10 s.
    fn log_with(&self, needle: &str) -> String {
        for _ in 0..100 {
            let log = self.log.lock().expect("log").clone();
            if log.contains(needle) {
                return log;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{needle:?} not in the log: {}", self.log.lock().expect("log"));
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn notify_socket_hears_ready_reloading_and_stopping_and_the_log_has_no_colour() {
    let mut served = Served::start("notify", "");
    let ready = served.next();
    assert!(ready.contains(&"READY=1".to_owned()), "{ready:?}");
    let status = ready.iter().find(|l| l.starts_with("STATUS=")).expect("a status line");
    assert!(status.contains("serving on 127.0.0.1:") && status.contains("mode split"), "{status}");

    served.signal(libc::SIGHUP);
    let reloading = served.next();
    assert!(reloading.contains(&"RELOADING=1".to_owned()), "{reloading:?}");
    assert!(reloading.iter().any(|l| l.starts_with("MONOTONIC_USEC=")), "{reloading:?}");
    let again = served.next();
    assert!(again.contains(&"READY=1".to_owned()), "{again:?}");

    served.signal(libc::SIGTERM);
    let stopping = served.next();
    assert!(stopping.contains(&"STOPPING=1".to_owned()), "{stopping:?}");
    assert!(served.wait().success());
    let log = served.log.lock().expect("log").clone();
    assert!(log.contains("pgsplit listening"), "{log}");
    assert!(!log.contains('\u{1b}'), "ANSI codes in a log that is not a terminal:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_closes_the_sessions_a_first_one_waits_for() {
    let mut served = Served::start("second-sigterm", "shutdown_timeout: 10m\n");
    let ready = served.next();
    let status = ready.iter().find(|l| l.starts_with("STATUS=")).expect("status");
    let addr = status.split("serving on ").nth(1).and_then(|s| s.split(',').next()).expect("address");
    let port: u16 = addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
    let (client, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=app password={APP_PASSWORD} dbname=handled"),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect");
    let conn = tokio::spawn(conn);
    client.batch_execute("begin; select count(*) from pg_catalog.pg_class").await.expect("begin");

    served.signal(libc::SIGTERM);
    assert!(served.next().contains(&"STOPPING=1".to_owned()));
    // The first signal waits for the open transaction: it still answers.
    let one: i32 = client.query_one("select 1", &[]).await.expect("the transaction goes on").get(0);
    assert_eq!(one, 1);
    assert!(served.child.try_wait().expect("try_wait").is_none(), "pgsplit left during the grace");

    served.signal(libc::SIGTERM);
    // Well inside the 10-minute grace: only the second signal can end it this soon.
    let status = tokio::time::timeout(Duration::from_secs(20), tokio::task::spawn_blocking(move || served.wait()))
        .await
        .expect("the second SIGTERM ends pgsplit at once")
        .expect("join");
    assert!(status.success() || status.code().is_some(), "{status:?}");
    assert!(client.query_one("select 1", &[]).await.is_err(), "the session was closed");
    let _ = conn.await;
}

/// Sets a sysctl for the test's duration, restoring it after.
struct Sysctl {
    key: &'static str,
    old: String,
}

impl Sysctl {
    fn set(key: &'static str, value: &str) -> Sysctl {
        let old = run(Command::new("sysctl").args(["-n", key])).trim().to_owned();
        run(Command::new("sysctl").args(["-w", &format!("{key}={value}")]));
        Sysctl { key, old }
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = Command::new("sysctl").args(["-w", &format!("{}={}", self.key, self.old)]).output();
    }
}

/// What the clients of the restart test met.
#[derive(Default, Debug)]
struct Outcomes {
    /// Sessions that logged in and ran their statement.
    served: u64,
    /// Connections refused or reset before logging in: what a restart must never cause.
    refused: Vec<String>,
    /// Sessions the old instance ended as it drained (57P01, "pgsplit is shutting down").
    drained: u64,
    /// Queries answered over the Unix-domain socket (counted in `served` too).
    unix_served: u64,
    /// Anything else.
    other: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_so_reuseport_a_new_pgsplit_takes_over_the_port_while_the_old_drains_and_no_client_is_refused() {
    // The kernel hands the connections queued on the old listener to the new one when the old closes (Linux 5.14+);
    // the README's restart recipe sets it the same way.
    let _migrate = Sysctl::set("net.ipv4.tcp_migrate_req", "1");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port();
    // The Unix-domain socket too: the new instance renames its own over the old one's name.
    let sockets = scratch("restart-sockets");
    let extra =
        format!("so_reuseport: true\nlisten_backlog: 512\nshutdown_timeout: 5s\nunix_socket_dir: {}\n", sockets.display());
    let yaml = config_yaml("verify-full", &extra)
        .replace("listen: 127.0.0.1:0", &format!("listen: 127.0.0.1:{port}"))
        .replace("admin_users: []", "admin_users: [admin]")
        .replace("users:\n", "users:\n  - { name: admin, password: \"admin-secret\" }\n");
    let socket_file = sockets.join(format!(".s.PGSQL.{port}"));
    let mut old = Served::start_yaml("restart-old", &yaml);
    assert!(old.next().contains(&"READY=1".to_owned()));

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let outcomes = std::sync::Arc::new(std::sync::Mutex::new(Outcomes::default()));
    let mut clients = Vec::new();
    for i in 0..6 {
        let (stop, outcomes) = (stop.clone(), outcomes.clone());
        // Four over TCP, two over the Unix-domain socket.
        let host = if i < 4 { "127.0.0.1".to_owned() } else { sockets.display().to_string() };
        clients.push(tokio::spawn(async move {
            let dsn = format!("host={host} port={port} user=app password={APP_PASSWORD} dbname=handled connect_timeout=10");
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let outcome = match tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await {
                    Err(e) if e.code().is_none() => Err((true, e.to_string())),
                    Err(e) => Err((false, format!("{}: {e}", sqlstate(&e)))),
                    Ok((c, conn)) => {
                        let conn = tokio::spawn(conn);
                        match c.simple_query("select 1").await {
                            Ok(_) => Ok(()),
                            // A FATAL the server sends while the client is idle ends the connection task, not the
                            // query: the query sees the connection closed, the task has the SQLSTATE.
                            Err(e) if e.code().is_none() => match conn.await {
                                Ok(Err(fatal)) => Err((false, format!("{}: {fatal}", sqlstate(&fatal)))),
                                _ => Err((false, format!("no SQLSTATE: {e}"))),
                            },
                            Err(e) => Err((false, format!("{}: {e}", sqlstate(&e)))),
                        }
                    }
                };
                let mut o = outcomes.lock().expect("outcomes");
                match outcome {
                    Ok(()) => {
                        o.served += 1;
                        o.unix_served += u64::from(i >= 4);
                    }
                    Err((true, e)) => o.refused.push(e),
                    Err((false, e)) if e.starts_with("57P01") => o.drained += 1,
                    Err((false, e)) => o.other.push(e),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut new = Served::start_yaml("restart-new", &yaml);
    assert!(new.next().contains(&"READY=1".to_owned()), "the new instance listens on the same port");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (before, unix_before) = {
        let o = outcomes.lock().expect("outcomes");
        (o.served, o.unix_served)
    };
    old.signal(libc::SIGTERM);
    let exited = tokio::task::spawn_blocking(move || old.wait()).await.expect("join");
    assert!(exited.success(), "{exited:?}");
    assert!(socket_file.exists(), "the old instance leaves the socket file the new one took over");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.await.expect("client task");
    }
    let o = outcomes.lock().expect("outcomes");
    assert!(o.refused.is_empty(), "connections refused during the restart: {:?}", o.refused);
    assert!(o.other.is_empty(), "unexpected errors: {:?}", o.other);
    assert!(o.served > before + 20, "the new instance served after the old one left: {o:?}");
    assert!(o.unix_served > unix_before + 5, "and over the Unix-domain socket: {o:?}");
    // Its clients are shown under the socket's name, not the one the new instance made it under before renaming it.
    let clients = psql_over(&sockets.display().to_string(), port, "admin", "show clients", "disable").expect("console");
    assert!(clients.lines().any(|l| l.starts_with("C|admin|pgsplit|") && l.contains(&format!("|unix|{port}|"))), "{clients}");
    new.signal(libc::SIGTERM);
    assert!(new.wait().success());
    assert!(!socket_file.exists(), "the new instance removes its socket file at exit");
}

/// A free TCP port on 127.0.0.1, and the test configuration listening on it, with `extra`.
fn on_a_free_port(extra: &str) -> (u16, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port();
    let yaml = config_yaml("verify-full", extra)
        .replace("listen: 127.0.0.1:0", &format!("listen: 127.0.0.1:{port}"))
        .replace("admin_users: []", "admin_users: [admin]")
        .replace("users:\n", "users:\n  - { name: admin, password: \"admin-secret\" }\n");
    (port, yaml)
}

/// psql's output for `sql` as `user` on `host` (a socket directory, or `@name`) and `port`, or its error.
fn psql_over(host: &str, port: u16, user: &str, sql: &str, sslmode: &str) -> Result<String, String> {
    let password = if user == "admin" { "admin-secret" } else { APP_PASSWORD };
    let dbname = if user == "admin" { "pgsplit" } else { "handled" };
    let url = format!("host={host} port={port} user={user} password={password} dbname={dbname} sslmode={sslmode}");
    let out = psql_script(&url, sql);
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_dir_serves_psql_and_drivers_on_a_socket_file_made_at_start_and_removed_at_exit() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let dir = scratch("unix-socket");
    let run = dir.join("run");
    std::fs::create_dir_all(&run).expect("socket dir");
    let certs = pgsplit::certs::write_dev_certs(&dir.join("certs"), &["localhost", "127.0.0.1"]).expect("certs");
    let tls = format!(
        "tls: {{ mode: required, cert: \"{}\", key: \"{}\" }}\n",
        certs.server_cert.display(),
        certs.server_key.display()
    );
    let (port, yaml) = on_a_free_port(&format!("unix_socket_dir: {}\nunix_socket_mode: 0770\n{tls}", run.display()));
    let path = run.join(format!(".s.PGSQL.{port}"));
    // Left by a pgsplit killed earlier: a socket file nothing listens on, replaced at start.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("a stale socket file"));
    assert!(path.exists());

    let mut served = Served::start_yaml("unix-socket-serve", &yaml);
    assert!(served.next().contains(&"READY=1".to_owned()), "{}", served.log.lock().expect("log"));
    let meta = std::fs::symlink_metadata(&path).expect("the socket file");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o770, "unix_socket_mode");

    // psql, routed to both targets; TLS is required of TCP clients, not of the local socket (as PostgreSQL's
    // `local` lines and PgBouncer's unix socket), where an SSLRequest is answered N.
    let host = run.display().to_string();
    let both = "select count(*) > 0 from customer.accounts; select count(*) >= 0 from workspace.imports;";
    assert_eq!(psql_over(&host, port, "app", both, "prefer").expect("psql over the socket"), "t\nt\n");
    // (libpq never asks for TLS on a Unix-domain socket; a client that does is told N.)
    let mut raw = std::os::unix::net::UnixStream::connect(&path).expect("connect");
    std::io::Write::write_all(&mut raw, &[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).expect("SSLRequest");
    let mut answer = [0u8; 1];
    std::io::Read::read_exact(&mut raw, &mut answer).expect("an answer");
    assert_eq!(&answer, b"N", "no TLS on a Unix-domain socket");
    let refused = psql_over("127.0.0.1", port, "app", "select 1", "disable").expect_err("TLS is required over TCP");
    assert!(refused.contains("requires TLS"), "{refused}");

    // A driver (tokio-postgres takes a directory as its host), seen by SHOW CLIENTS as PgBouncer shows such a client.
    let dsn = format!("host={host} port={port} user=app password={APP_PASSWORD} dbname=handled application_name=on-unix");
    let (c, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await.expect("tokio-postgres over the socket");
    tokio::spawn(conn);
    assert_eq!(scalar(&c, "select (count(*) > 0)::text from customer.accounts").await, "true");
    assert_eq!(scalar(&c, "select (count(*) >= 0)::text from workspace.imports").await, "true");
    let clients = psql_over(&host, port, "admin", "show clients", "disable").expect("the console over the socket");
    let on_unix = format!("|unix|{port}|unix|{port}|");
    let row = |starts: &str, ends: &str| clients.lines().find(|l| l.starts_with(starts) && l.ends_with(ends)).map(str::to_owned);
    let driver = row("C|app|handled|", "|on-unix").unwrap_or_else(|| panic!("the driver's row: {clients}"));
    assert!(driver.contains(&on_unix), "addr unix with the port, as PgBouncer shows it: {driver}");
    let console = row("C|admin|pgsplit|", "|psql").unwrap_or_else(|| panic!("the console's row: {clients}"));
    assert!(console.contains(&on_unix), "{console}");

    served.signal(libc::SIGTERM);
    assert!(served.wait().success());
    assert!(!path.exists(), "the socket file is removed at exit");
}

#[test]
fn a_socket_another_server_listens_on_or_a_file_at_its_name_stops_the_start_and_is_left_alone() {
    let dir = scratch("unix-socket-taken");
    let (port, yaml) = on_a_free_port(&format!("unix_socket_dir: {}\n", dir.display()));
    let path = dir.join(format!(".s.PGSQL.{port}"));
    let other = std::os::unix::net::UnixListener::bind(&path).expect("another server's socket");
    let mut served = Served::start_yaml("unix-socket-taken-serve", &yaml);
    let status = served.exit_within_30s();
    assert!(!status.success(), "pgsplit must not start on a socket another server listens on");
    let log = served.log_with("another server listens");
    assert!(log.contains(&path.display().to_string()), "{log}");
    std::os::unix::net::UnixStream::connect(&path).expect("the other server's socket is untouched");

    // With so_reuseport, a live socket is taken over only from this user (a pgsplit being restarted).
    run(Command::new("chown").arg("postgres").arg(&path));
    let reuse = yaml.replace("listen: 127.0.0.1", "so_reuseport: true\nlisten: 127.0.0.1");
    let mut served = Served::start_yaml("unix-socket-theirs-serve", &reuse);
    assert!(!served.exit_within_30s().success(), "another user's socket is never taken over");
    served.log_with("a server of another user listens on it");
    std::os::unix::net::UnixStream::connect(&path).expect("the other user's socket is untouched");
    drop(other);

    std::fs::remove_file(&path).expect("rm");
    std::fs::write(&path, "not a socket").expect("a regular file");
    let mut served = Served::start_yaml("unix-socket-file-serve", &yaml);
    assert!(!served.exit_within_30s().success());
    served.log_with("not a socket");
    assert_eq!(std::fs::read_to_string(&path).expect("the file is kept"), "not a socket");
}

#[test]
fn unix_socket_dir_starting_with_at_listens_in_the_abstract_namespace() {
    let name = format!("@pgsplit-test-{}", std::process::id());
    let (port, yaml) = on_a_free_port(&format!("unix_socket_dir: \"{name}\"\n"));
    let mut served = Served::start_yaml("unix-socket-abstract", &yaml);
    assert!(served.next().contains(&"READY=1".to_owned()), "{}", served.log.lock().expect("log"));
    assert_eq!(psql_over(&name, port, "app", "select 41 + 1", "disable").expect("psql, abstract socket"), "42\n");
    served.signal(libc::SIGTERM);
    assert!(served.wait().success());
}
