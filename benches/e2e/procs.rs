//! The processes the harness starts and measures: pgsplit and PgBouncer as child processes that stop when dropped,
//! and their CPU time and resident memory read from /proc.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a proxy gets to accept a first query.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// User plus system CPU seconds of a process (all its threads), from /proc/PID/stat.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may itself contain spaces: state is field 3, utime 14, stime 15.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some((utime + stime) as f64 / ticks.max(1) as f64)
}

/// Resident set size in KiB, from VmRSS in /proc/PID/status.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A free TCP port on 127.0.0.1 (free when asked; the harness uses it at once).
pub fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// Raises the open-file limit to the hard limit: 1,000 idle clients need 1,000 sockets here and in the proxies,
/// which inherit the limit.
pub fn raise_open_files_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Last lines of a log file, for error messages.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Waits until `url` answers `select 1`, or `child` exits, or the timeout passes.
async fn wait_ready(url: &str, child: &mut Child, log: &Path, what: &str) -> Result<(), String> {
    let start = Instant::now();
    loop {
        if let Ok((client, conn)) = tokio_postgres::connect(url, tokio_postgres::NoTls).await {
            let task = tokio::spawn(conn);
            let ok = client.simple_query("select 1").await.is_ok();
            drop(client);
            let _ = task.await;
            if ok {
                return Ok(());
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{what} exited ({status}) before answering; its log ends:\n{}", log_tail(log)));
        }
        if start.elapsed() > READY_TIMEOUT {
            return Err(format!("{what} did not answer within {READY_TIMEOUT:?}; its log ends:\n{}", log_tail(log)));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends SIGTERM to `pid`, then SIGKILL if `child` has not exited after a few seconds.
fn stop(child: &mut Child, pid: u32) {
    // SAFETY: kill has no memory-safety preconditions; `pid` is a process this harness started.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    let _ = child.kill();
    let _ = child.wait();
}

/// A pgsplit process; terminated when dropped.
pub struct Pgsplit {
    /// The child process, for its PID and to reap it.
    child: Child,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl Pgsplit {
    /// Starts `binary --config config` with warnings-only logs, and waits until `url` answers.
    pub async fn start(binary: &Path, config: &Path, url: &str) -> Result<Pgsplit, String> {
        let log = config.with_file_name("pgsplit.log");
        let file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let child = Command::new(binary)
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let mut p = Pgsplit { child, log };
        wait_ready(url, &mut p.child, &p.log, "pgsplit").await?;
        Ok(p)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The end of its log if it has exited.
    pub fn exited(&mut self) -> Option<String> {
        matches!(self.child.try_wait(), Ok(Some(_))).then(|| log_tail(&self.log))
    }
}

impl Drop for Pgsplit {
    fn drop(&mut self) {
        let pid = self.child.id();
        stop(&mut self.child, pid);
    }
}

/// Where PgBouncer is installed, if it is.
pub fn find_pgbouncer() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("pgbouncer")).find(|p| p.is_file()));
    on_path.or_else(|| Some(PathBuf::from("/usr/sbin/pgbouncer")).filter(|p| p.is_file()))
}

/// PgBouncer's (major, minor) version from `pgbouncer --version`.
pub fn pgbouncer_version(binary: &Path) -> Option<(u32, u32)> {
    let out = Command::new(binary).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.split_whitespace().nth(1)?;
    let mut parts = version.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// How PgBouncer reaches the server and who may connect.
pub struct PgbouncerSpec<'a> {
    /// The logical database name clients use.
    pub database: &'a str,
    /// The server's `host=... port=... dbname=... user=... password=...` string.
    pub server: String,
    /// The client user and password.
    pub user: (&'a str, &'a str),
    /// Server connections per pool (the same as pgsplit's).
    pub pool: u32,
}

/// A PgBouncer in transaction mode; terminated when dropped.
pub struct Pgbouncer {
    /// The process started (runuser when root, else pgbouncer itself).
    child: Child,
    /// PgBouncer's own process id (from its pidfile: runuser forks).
    pid: u32,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Whether it keeps prepared statements across transaction pooling (1.21+); older ones break `-M prepared`.
    pub prepared: bool,
}

impl Pgbouncer {
    /// Writes an ini and auth file under `dir` and starts PgBouncer (as `postgres` when root).
    pub async fn start(binary: &Path, dir: &Path, spec: PgbouncerSpec<'_>) -> Result<Pgbouncer, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let port = free_port()?;
        let prepared = pgbouncer_version(binary).is_some_and(|v| v >= (1, 21));
        let (ini, users, log, pidfile) =
            (dir.join("pgbouncer.ini"), dir.join("userlist.txt"), dir.join("pgbouncer.log"), dir.join("pgbouncer.pid"));
        let mut conf = format!(
            "[databases]\n{db} = {server}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = scram-sha-256\nauth_file = {users}\npool_mode = transaction\ndefault_pool_size = {pool}\n\
             min_pool_size = 0\nreserve_pool_size = 0\nmax_db_connections = {pool}\nmax_client_conn = 2000\n\
             logfile = {log}\npidfile = {pidfile}\nlog_connections = 0\nlog_disconnections = 0\n\
             ignore_startup_parameters = extra_float_digits,options\n",
            db = spec.database,
            server = spec.server,
            pool = spec.pool,
            users = users.display(),
            log = log.display(),
            pidfile = pidfile.display(),
        );
        if prepared {
            conf.push_str("max_prepared_statements = 200\n");
        }
        std::fs::write(&ini, conf).map_err(|e| format!("{}: {e}", ini.display()))?;
        std::fs::write(&users, format!("\"{}\" \"{}\"\n", spec.user.0, spec.user.1))
            .map_err(|e| format!("{}: {e}", users.display()))?;
        let mut cmd = if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir)
                .status()
                .map_err(|e| format!("chown {}: {e}", dir.display()))?;
            if !status.success() {
                return Err(format!("chown postgres {} failed", dir.display()));
            }
            // runuser's PAM session resets the open-file limit to 1,024; raise it again for 1,000 idle clients.
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "sh", "-c", "ulimit -n \"$(ulimit -Hn)\" && exec \"$0\" \"$@\""]).arg(binary);
            c
        } else {
            Command::new(binary)
        };
        let mut child = cmd
            .arg(&ini)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let url = format!("postgresql://{}:{}@127.0.0.1:{port}/{}?sslmode=disable", spec.user.0, spec.user.1, spec.database);
        let ready = wait_ready(&url, &mut child, &log, "pgbouncer").await;
        let pid = std::fs::read_to_string(&pidfile).ok().and_then(|s| s.trim().parse().ok());
        match (ready, pid) {
            (Ok(()), Some(pid)) => Ok(Pgbouncer { child, pid, port, prepared }),
            (result, _) => {
                let pid = child.id();
                stop(&mut child, pid);
                Err(result.err().unwrap_or_else(|| format!("no pid in {}", pidfile.display())))
            }
        }
    }

    /// PgBouncer's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

impl Drop for Pgbouncer {
    fn drop(&mut self) {
        let pid = self.pid;
        stop(&mut self.child, pid);
    }
}
