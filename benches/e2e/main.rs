//! End-to-end benchmark (issue 7): pgbench and COPY against DATA directly, through pgsplit and through PgBouncer,
//! interleaved and repeated, with the proxies' CPU per transaction and memory per idle client. `cargo bench --bench
//! e2e` (see benches/README.md for the E2E_* settings).

mod copy;
mod idle;
mod pgbench;
mod procs;
mod report;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use pgbench::{Endpoint, Kind};
use report::Results;

/// What a run does, from E2E_* environment variables.
struct Settings {
    /// Measured rounds of the pgbench matrix (each round runs every workload on every endpoint).
    rounds: usize,
    /// Length of one pgbench run.
    duration: Duration,
    /// Size of the COPY file, MB.
    copy_mb: u64,
    /// Rounds of the COPY comparison.
    copy_rounds: usize,
    /// pgbench scale factor.
    scale: u32,
    /// Server connections per pool, for pgsplit and PgBouncer alike.
    pool: u32,
    /// Idle clients for the memory measurement.
    idle_clients: usize,
    /// Whether to include PgBouncer when it is installed.
    pgbouncer: bool,
    /// Only workloads whose name contains this.
    only: Option<String>,
    /// Top-level settings appended to pgsplit's routing.yaml (e.g. `prepare_unnamed: true`).
    pgsplit_extra: String,
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

impl Settings {
    fn from_env() -> Settings {
        let quick = std::env::var("E2E_QUICK").is_ok_and(|v| v != "0" && !v.is_empty());
        Settings {
            rounds: env("E2E_ROUNDS", if quick { 1 } else { 3 }),
            duration: Duration::from_secs(env("E2E_SECS", if quick { 3 } else { 8 })),
            copy_mb: env("E2E_COPY_MB", if quick { 100 } else { 1024 }),
            copy_rounds: env("E2E_COPY_ROUNDS", if quick { 1 } else { 2 }),
            scale: env("E2E_SCALE", 10),
            pool: env("E2E_POOL", 20),
            idle_clients: env("E2E_IDLE_CLIENTS", 1000),
            pgbouncer: env("E2E_PGBOUNCER", 1) != 0,
            only: std::env::var("E2E_ONLY").ok().filter(|s| !s.is_empty()),
            pgsplit_extra: std::env::var("E2E_PGSPLIT_EXTRA").unwrap_or_default(),
        }
    }
}

/// Removes the harness's folder when dropped (after the clusters and proxies, declared later, have stopped).
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Progress on stderr, stamped with the time since start.
fn say(start: Instant, msg: &str) {
    eprintln!("[{:>6.1}s] {msg}", start.elapsed().as_secs_f64());
}

fn main() -> ExitCode {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs bench binaries without it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("e2e: skipped (it runs under `cargo bench --bench e2e`)");
        return ExitCode::SUCCESS;
    }
    let settings = Settings::from_env();
    procs::raise_open_files_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    let result = runtime.block_on(async {
        tokio::select! {
            r = run(&settings) => r,
            _ = tokio::signal::ctrl_c() => Err("interrupted; stopping everything started".to_owned()),
        }
    });
    match result {
        Ok(table) => {
            println!("{table}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("e2e: {e}");
            ExitCode::FAILURE
        }
    }
}

/// routing.yaml for pgsplit in front of the demo clusters; public (pgbench's tables) goes to DATA.
fn pgsplit_config(dir: &Path, primary: &pgsplit::cluster::Cluster, data_port: u16, port: u16, s: &Settings) -> String {
    let (pool, extra) = (s.pool, &s.pgsplit_extra);
    let pw = std::fs::read_to_string(dir.join("server-password")).unwrap_or_default();
    let app_pw = std::fs::read_to_string(dir.join("app-password")).unwrap_or_default();
    let ca = primary.ca_cert().map(|p| p.display().to_string()).unwrap_or_default();
    format!(
        "listen: 127.0.0.1:{port}
database: handled
default_target: data
targets:
  primary:
    url: postgresql://pgsplit:{pw}@localhost:{pport}/handled_primary
    tls: {{ mode: verify-full, ca: \"{ca}\" }}
    pool: {{ max: 5, checkout_timeout: 60s }}
    schemas: [config, customer]
  data:
    url: postgresql://pgsplit:{pw}@127.0.0.1:{data_port}/handled_data
    pool: {{ max: {pool}, checkout_timeout: 60s }}
    schemas: [workspace, reference]
users:
  - {{ name: app, password: \"{app_pw}\" }}
admin_users: []
{extra}
",
        pport = primary.port(),
    )
}

/// A description of the machine and tools, for the report's header.
fn machine(bindir: &Path, pgbouncer: Option<&Path>) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).unwrap_or("?");
    let version = |program: PathBuf| {
        std::process::Command::new(program)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").to_owned())
            .unwrap_or_default()
    };
    let bouncer = pgbouncer.map_or("not installed".into(), |p| version(p.to_path_buf()));
    format!("{cores} cores ({}), {}, {bouncer}", model.trim(), version(bindir.join("postgres")))
}

async fn run(s: &Settings) -> Result<String, String> {
    let start = Instant::now();
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_pgsplit"));
    let bindir = pgsplit::cluster::find_bindir().map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("pgsplit-e2e-{}", std::process::id()));
    let _remove = RemoveDir(dir.clone());
    say(start, &format!("creating DATA and PRIMARY under {}", dir.display()));
    let (primary, data, app_password) = pgsplit::demo::set_up(&dir).await.map_err(|e| e.to_string())?;
    let server_password = std::fs::read_to_string(dir.join("server-password")).map_err(|e| format!("server-password: {e}"))?;
    std::fs::write(dir.join("app-password"), &app_password).map_err(|e| format!("app-password: {e}"))?;
    let direct_url = format!("postgresql://pgsplit:{server_password}@127.0.0.1:{}/handled_data?sslmode=disable", data.port());
    say(start, &format!("pgbench -i -s {}", s.scale));
    pgbench::initialise(&bindir, &direct_url, s.scale).await?;

    let port = procs::free_port()?;
    let config = dir.join("routing.yaml");
    std::fs::write(&config, pgsplit_config(&dir, &primary, data.port(), port, s)).map_err(|e| e.to_string())?;
    let pgsplit_url = format!("postgresql://app:{app_password}@127.0.0.1:{port}/handled?sslmode=disable");
    say(start, &format!("starting {}", binary.display()));
    let mut pgsplit = procs::Pgsplit::start(&binary, &config, &pgsplit_url).await?;

    let mut results = Results::default();
    let mut endpoints = vec![
        Endpoint { kind: Kind::Direct, url: direct_url.clone(), pid: None, no_prepared: None },
        Endpoint { kind: Kind::Pgsplit, url: pgsplit_url, pid: Some(pgsplit.pid()), no_prepared: None },
    ];
    let bouncer_binary = procs::find_pgbouncer();
    let pgbouncer = match (&bouncer_binary, s.pgbouncer) {
        (None, _) => {
            results.notes.push("PgBouncer skipped: `pgbouncer` is not installed (apt-get install pgbouncer).".into());
            None
        }
        (Some(_), false) => {
            results.notes.push("PgBouncer skipped: E2E_PGBOUNCER=0.".into());
            None
        }
        (Some(b), true) => {
            let spec = procs::PgbouncerSpec {
                database: "handled",
                server: format!(
                    "host=127.0.0.1 port={} dbname=handled_data user=pgsplit password={server_password}",
                    data.port()
                ),
                user: ("app", &app_password),
                pool: s.pool,
            };
            match procs::Pgbouncer::start(b, &dir.join("pgbouncer"), spec).await {
                Ok(p) => Some(p),
                Err(e) => {
                    results.notes.push(format!("PgBouncer skipped: it did not start: {e}"));
                    None
                }
            }
        }
    };
    if let Some(p) = &pgbouncer {
        let url = format!("postgresql://app:{app_password}@127.0.0.1:{}/handled?sslmode=disable", p.port);
        let no_prepared = (!p.prepared).then_some("PgBouncer < 1.21 keeps no prepared statements in transaction mode");
        if let Some(why) = no_prepared {
            results.notes.push(format!("`-M prepared` through PgBouncer: n/a ({why})."));
        }
        endpoints.push(Endpoint { kind: Kind::Pgbouncer, url, pid: Some(p.pid()), no_prepared });
    }
    results.kinds = endpoints.iter().map(|e| e.kind).collect();

    for e in endpoints.iter().filter(|e| e.pid.is_some()) {
        let pid = e.pid.unwrap_or_default();
        say(start, &format!("{} idle clients on {}", s.idle_clients, e.kind.name()));
        match idle::measure(&e.url, pid, s.idle_clients).await {
            Ok(m) => results.idle.push((e.kind, m)),
            Err(err) => results.notes.push(format!("idle memory of {}: failed: {err}", e.kind.name())),
        }
    }

    pgbench_matrix(s, &bindir, &endpoints, &mut pgsplit, &mut results, start).await?;
    copy_comparison(s, &bindir, &data, &dir, &endpoints, &mut results, start).await?;

    let header = format!(
        "\npgsplit end-to-end benchmark — {}\n{} round(s) × {} s per pgbench run, pool {} for pgsplit and PgBouncer, \
         scale {}, total {:.0} s{}\n",
        machine(&bindir, bouncer_binary.as_deref()),
        s.rounds,
        s.duration.as_secs(),
        s.pool,
        s.scale,
        start.elapsed().as_secs_f64(),
        match s.pgsplit_extra.trim() {
            "" => String::new(),
            extra => format!("; pgsplit with `{extra}`"),
        }
    );
    say(start, "stopping proxies and clusters");
    Ok(format!("{header}\n{}", results.render()))
}

/// Every workload on every endpoint, round after round, rotating the endpoint order so none always runs first.
async fn pgbench_matrix(
    s: &Settings,
    bindir: &Path,
    endpoints: &[Endpoint],
    pgsplit: &mut procs::Pgsplit,
    results: &mut Results,
    start: Instant,
) -> Result<(), String> {
    let workloads: Vec<_> =
        pgbench::matrix().into_iter().filter(|w| s.only.as_ref().is_none_or(|o| w.name.contains(o.as_str()))).collect();
    let Some(first) = workloads.first() else {
        results.notes.push("pgbench skipped: E2E_ONLY matched no workload.".into());
        return Ok(());
    };
    let warmup = pgbench::Workload { name: "warm-up".into(), ..first.clone() };
    for e in endpoints {
        say(start, &format!("warm-up on {}", e.kind.name()));
        pgbench::run(bindir, e, &warmup, Duration::from_secs(2)).await?;
    }
    for round in 0..s.rounds {
        for (i, w) in workloads.iter().enumerate() {
            for j in 0..endpoints.len() {
                let e = &endpoints[(j + round + i) % endpoints.len()];
                match pgbench::run(bindir, e, w, s.duration).await {
                    Ok(Some(sample)) => {
                        let cpu = sample.cpu_s.map_or(String::new(), |c| format!(", proxy CPU {c:.2} s"));
                        let line = format!("{:.0} tps, {:.3} ms{cpu}", sample.tps, sample.latency_ms);
                        say(start, &format!("round {}/{} {:<24} {:<10} {line}", round + 1, s.rounds, w.name, e.kind.name()));
                        results.runs.entry((i, e.kind)).or_default().push(sample);
                    }
                    Ok(None) => {
                        results.unsupported.insert((i, e.kind));
                    }
                    Err(err) => {
                        say(start, &err);
                        results.failed.insert((i, e.kind));
                        results.notes.push(format!("round {}: {}", round + 1, err.lines().next().unwrap_or("")));
                        if let Some(log) = pgsplit.exited() {
                            return Err(format!("pgsplit exited; its log ends:\n{log}"));
                        }
                    }
                }
            }
        }
    }
    results.workloads = workloads;
    Ok(())
}

/// A COPY of a generated file into DATA through each endpoint, repeated.
async fn copy_comparison(
    s: &Settings,
    bindir: &Path,
    data: &pgsplit::cluster::Cluster,
    dir: &Path,
    endpoints: &[Endpoint],
    results: &mut Results,
    start: Instant,
) -> Result<(), String> {
    if s.copy_mb == 0 || s.copy_rounds == 0 {
        results.notes.push("COPY skipped: E2E_COPY_MB=0 or E2E_COPY_ROUNDS=0.".into());
        return Ok(());
    }
    let file = dir.join("copy.tsv");
    say(start, &format!("writing {} MB to {}", s.copy_mb, file.display()));
    let bytes = copy::generate(&file, s.copy_mb << 20)?;
    results.copy_mb = bytes as f64 / (1 << 20) as f64;
    let direct = endpoints.first().map(|e| e.url.as_str()).unwrap_or_default();
    copy::create_table(bindir, direct).await?;
    // An untimed load first: the first COPY into a fresh table pays for extending files and WAL segments.
    if let Some(direct) = endpoints.first() {
        say(start, "COPY warm-up (direct, not counted)");
        copy::run(bindir, data, direct, &file).await.map_err(|err| format!("COPY warm-up: {err}"))?;
    }
    for round in 0..s.copy_rounds {
        for j in 0..endpoints.len() {
            let e = &endpoints[(j + round) % endpoints.len()];
            let sample = copy::run(bindir, data, e, &file).await.map_err(|err| format!("COPY via {}: {err}", e.kind.name()))?;
            let secs = sample.elapsed.as_secs_f64();
            let cpu = sample.cpu_s.map_or(String::new(), |c| format!(", proxy CPU {c:.2} s"));
            say(
                start,
                &format!("COPY round {} {:<10} {secs:.2} s, {:.0} MB/s{cpu}", round + 1, e.kind.name(), results.copy_mb / secs),
            );
            results.copy.entry(e.kind).or_default().push(sample);
        }
    }
    let _ = std::fs::remove_file(&file);
    Ok(())
}
