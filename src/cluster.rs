//! Throwaway PostgreSQL clusters (initdb on a free loopback port), for `pgsplit demo` and the test harness.
//! As root, the server runs as the `postgres` OS user.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

/// How many times to retry starting on a fresh port when the chosen one was taken meanwhile.
const START_ATTEMPTS: usize = 5;

/// Why a cluster could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No PostgreSQL server binaries were found.
    #[error("PostgreSQL server binaries not found (looked at `pg_config --bindir`, /usr/lib/postgresql/*/bin and PATH); install them, e.g. `apt-get install postgresql`")]
    NoBinaries,
    /// A file operation failed.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// A PostgreSQL tool failed.
    #[error("{tool} failed: {stderr}")]
    Tool {
        /// Which tool.
        tool: String,
        /// What it printed.
        stderr: String,
    },
    /// Certificates could not be made.
    #[error(transparent)]
    Certs(#[from] crate::certs::CertError),
}

/// How clients other than local superusers authenticate over TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerAuth {
    /// SCRAM-SHA-256 (passwords stored as SCRAM).
    Scram,
    /// md5 (passwords stored as md5).
    Md5,
    /// No password.
    Trust,
}

/// What kind of cluster to make.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Folder name under the base directory, and the name in messages.
    pub name: String,
    /// TLS only (`hostssl`, plain TCP rejected) with a certificate made on the spot.
    pub tls: bool,
    /// TCP authentication method.
    pub auth: ServerAuth,
    /// The `postgres` superuser's password.
    pub superuser_password: String,
}

/// A running throwaway cluster; stopped and removed when dropped.
#[derive(Debug)]
pub struct Cluster {
    /// Data directory (also the unix socket directory).
    dir: PathBuf,
    /// Server binaries.
    bindir: PathBuf,
    /// Loopback TCP port.
    port: u16,
    /// The CA that signed the server certificate, when TLS is on.
    ca: Option<PathBuf>,
    /// Whether the server must run as the `postgres` OS user (we are root).
    as_postgres: bool,
}

/// Finds the PostgreSQL server binaries.
pub fn find_bindir() -> Result<PathBuf, ClusterError> {
    if let Ok(out) = std::process::Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).filter(|p| p.join("initdb").exists()).collect())
        .unwrap_or_default();
    versions.sort_by_key(|p| p.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok()));
    if let Some(dir) = versions.pop() {
        return Ok(dir);
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).find(|p| p.join("initdb").exists()))
        .ok_or(ClusterError::NoBinaries)
}

fn free_port() -> Result<u16, ClusterError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| ClusterError::Io("bind 127.0.0.1:0".into(), e))?;
    l.local_addr().map(|a| a.port()).map_err(|e| ClusterError::Io("local_addr".into(), e))
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ClusterError + '_ {
    move |e| ClusterError::Io(path.display().to_string(), e)
}

impl Cluster {
    /// Makes `base/<name>` afresh, runs initdb, configures auth and TLS, and starts the server.
    pub async fn create(base: &Path, spec: ClusterSpec) -> Result<Cluster, ClusterError> {
        let bindir = find_bindir()?;
        let as_postgres = unsafe_is_root();
        std::fs::create_dir_all(base).map_err(io(base))?;
        let base = base.canonicalize().map_err(io(base))?;
        let dir = base.join(&spec.name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let pwfile = base.join(format!(".{}-pw", spec.name));
        crate::config::write_private(&pwfile, spec.superuser_password.as_bytes()).map_err(io(&pwfile))?;
        // From here on, a failure removes the data directory again (Drop).
        let mut cluster = Cluster { dir: dir.clone(), bindir, port: 0, ca: None, as_postgres };
        if as_postgres {
            make_traversable(&base)?;
            chown_postgres(&[&dir, &pwfile]).await?;
        }
        let method = match spec.auth {
            ServerAuth::Scram => "scram-sha-256",
            ServerAuth::Md5 => "md5",
            ServerAuth::Trust => "trust",
        };
        cluster.initdb(&pwfile, method).await?;
        cluster.configure(&spec, method).await?;
        cluster.start_on_a_free_port().await?;
        Ok(cluster)
    }

    /// Runs initdb: superuser `postgres` with the password in `pwfile` (removed once initdb succeeded), `method` for
    /// TCP clients.
    async fn initdb(&self, pwfile: &Path, method: &str) -> Result<(), ClusterError> {
        let initdb = self.tool("initdb");
        let pw = format!("--pwfile={}", pwfile.display());
        let args = [
            "-D",
            path_str(&self.dir),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--auth-local=trust",
            "--auth-host",
            method,
            &pw,
        ];
        self.run(&initdb, &args).await?;
        let _ = std::fs::remove_file(pwfile);
        Ok(())
    }

    /// Appends the throwaway settings to postgresql.conf and writes pg_hba.conf: local superuser trusted, TCP with
    /// `method` (TLS only, with a certificate made here, when the spec asks for TLS).
    async fn configure(&mut self, spec: &ClusterSpec, method: &str) -> Result<(), ClusterError> {
        let mut conf = format!(
            "listen_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 300\nshared_buffers = 32MB\npassword_encryption = '{}'\n",
            self.dir.display(),
            if spec.auth == ServerAuth::Md5 { "md5" } else { "scram-sha-256" }
        );
        let mut hba = String::from("local all all trust\n");
        if spec.tls {
            self.configure_tls(method, &mut conf, &mut hba).await?;
        } else {
            hba.push_str(&format!("host all all 127.0.0.1/32 {method}\nhost all all ::1/128 {method}\n"));
        }
        let conf_path = self.dir.join("postgresql.conf");
        let mut existing = std::fs::read_to_string(&conf_path).map_err(io(&conf_path))?;
        existing.push_str("\n# pgsplit throwaway cluster\n");
        existing.push_str(&conf);
        std::fs::write(&conf_path, existing).map_err(io(&conf_path))?;
        let hba_path = self.dir.join("pg_hba.conf");
        std::fs::write(&hba_path, hba).map_err(io(&hba_path))?;
        if self.as_postgres {
            chown_postgres(&[&conf_path, &hba_path]).await?;
        }
        Ok(())
    }

    /// Makes a CA and a server certificate for loopback, turns `ssl` on in `conf`, and lets TCP clients in over TLS
    /// only in `hba`.
    async fn configure_tls(&mut self, method: &str, conf: &mut String, hba: &mut String) -> Result<(), ClusterError> {
        let files = crate::certs::write_dev_certs(&self.dir.join("tls"), &["localhost", "127.0.0.1", "::1"])?;
        conf.push_str(&format!(
            "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
            files.server_cert.display(),
            files.server_key.display()
        ));
        hba.push_str(&format!("hostssl all all 127.0.0.1/32 {method}\nhostssl all all ::1/128 {method}\n"));
        hba.push_str("hostnossl all all 0.0.0.0/0 reject\nhostnossl all all ::/0 reject\n");
        if self.as_postgres {
            chown_postgres(&[&self.dir.join("tls"), &files.server_key, &files.server_cert, &files.ca_cert, &files.ca_key])
                .await?;
        }
        self.ca = Some(files.ca_cert);
        Ok(())
    }

    /// Starts the server on a free port, trying a fresh one when the chosen one was taken meanwhile.
    async fn start_on_a_free_port(&mut self) -> Result<(), ClusterError> {
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            self.port = free_port()?;
            match self.start().await {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(ClusterError::NoBinaries))
    }

    /// TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Unix socket directory (the data directory).
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// The CA that signed the server certificate (TLS clusters only).
    pub fn ca_cert(&self) -> Option<&Path> {
        self.ca.as_deref()
    }

    /// Starts the server (again) on its port.
    pub async fn start(&self) -> Result<(), ClusterError> {
        let ctl = self.tool("pg_ctl");
        let log = self.dir.join("log");
        let port = format!("-p {}", self.port);
        self.run(&ctl, &["-D", path_str(&self.dir), "-l", path_str(&log), "-o", &port, "-w", "-t", "60", "start"])
            .await
            .map(|_| ())
    }

    /// Stops the server (fast shutdown), keeping its data.
    pub async fn stop(&self) -> Result<(), ClusterError> {
        let ctl = self.tool("pg_ctl");
        self.run(&ctl, &["-D", path_str(&self.dir), "-m", "fast", "-w", "stop"]).await.map(|_| ())
    }

    /// Stops the server at once, synchronously (for Drop and exit handlers).
    pub fn stop_now(&self) {
        let ctl = self.tool("pg_ctl");
        let mut cmd = self.command_std(&ctl);
        cmd.args(["-D", path_str(&self.dir), "-m", "immediate", "-w", "stop"]).stdout(Stdio::null()).stderr(Stdio::null());
        let _ = cmd.status();
    }

    /// Runs SQL as the superuser over the unix socket; returns psql's unaligned, tuples-only output.
    pub async fn psql(&self, db: &str, sql: &str) -> Result<String, ClusterError> {
        let psql = self.tool("psql");
        let port = self.port.to_string();
        let args = [
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            path_str(&self.dir),
            "-p",
            &port,
            "-U",
            "postgres",
            "-d",
            db,
            "-c",
            sql,
        ];
        self.run(&psql, &args).await
    }

    /// Creates a login role with a password (stored per the cluster's password_encryption).
    pub async fn create_role(&self, name: &str, password: &str) -> Result<(), ClusterError> {
        let sql = format!("create role {} login password {}", ident(name), literal(password));
        self.psql("postgres", &sql).await.map(|_| ())
    }

    /// Creates a database owned by `owner`.
    pub async fn create_database(&self, name: &str, owner: &str) -> Result<(), ClusterError> {
        self.psql("postgres", &format!("create database {} owner {}", ident(name), ident(owner))).await.map(|_| ())
    }

    /// A connection URL over TCP (TLS clusters get `sslmode=verify-full`).
    pub fn url(&self, user: &str, password: &str, db: &str) -> String {
        let enc = |s: &str| {
            s.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect::<String>()
        };
        let mut url = format!("postgresql://{}:{}@127.0.0.1:{}/{}", enc(user), enc(password), self.port, enc(db));
        if self.ca.is_some() {
            url.push_str("?sslmode=verify-full");
        }
        url
    }

    fn tool(&self, name: &str) -> PathBuf {
        self.bindir.join(name)
    }

    fn command_std(&self, program: &Path) -> std::process::Command {
        if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            std::process::Command::new(program)
        }
    }

    async fn run(&self, program: &Path, args: &[&str]) -> Result<String, ClusterError> {
        let mut cmd = Command::from(self.command_std(program));
        cmd.args(args).current_dir(&self.dir).stdin(Stdio::null()).kill_on_drop(true);
        let out = cmd.output().await.map_err(io(program))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            let name = program.file_name().and_then(|n| n.to_str()).unwrap_or("tool").to_owned();
            let mut stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            if name == "pg_ctl" {
                stderr.push_str(&std::fs::read_to_string(self.dir.join("log")).unwrap_or_default());
            }
            Err(ClusterError::Tool { tool: name, stderr })
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_now();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap_or(".")
}

fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn unsafe_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Lets the `postgres` user reach `dir` through its parents (adds o+x where missing).
fn make_traversable(dir: &Path) -> Result<(), ClusterError> {
    use std::os::unix::fs::PermissionsExt;
    let mut p = Some(dir);
    while let Some(d) = p {
        if let Ok(meta) = std::fs::metadata(d) {
            let mode = meta.permissions().mode();
            if mode & 0o001 == 0 {
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode | 0o001)).map_err(io(d))?;
            }
        }
        p = d.parent();
    }
    Ok(())
}

async fn chown_postgres(paths: &[&Path]) -> Result<(), ClusterError> {
    let out =
        Command::new("chown").arg("-R").arg("postgres:postgres").args(paths).output().await.map_err(io(Path::new("chown")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ClusterError::Tool { tool: "chown".into(), stderr: String::from_utf8_lossy(&out.stderr).into_owned() })
    }
}
