//! The pgbench workloads, one pgbench run against one endpoint, and the parsing of its summary.

use std::path::Path;
use std::time::Duration;

use tokio::process::Command;

use crate::procs;

/// Who a run talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// DATA itself, no proxy.
    Direct,
    /// pgsplit in front of DATA.
    Pgsplit,
    /// PgBouncer (transaction mode, same pool size) in front of DATA.
    Pgbouncer,
}

impl Kind {
    /// The column name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Pgsplit => "pgsplit",
            Kind::Pgbouncer => "PgBouncer",
        }
    }
}

/// One place pgbench can connect to.
pub struct Endpoint {
    /// What it is.
    pub kind: Kind,
    /// A libpq URL.
    pub url: String,
    /// The proxy process to measure (none for direct).
    pub pid: Option<u32>,
    /// Why `-M prepared` cannot run here, if it cannot.
    pub no_prepared: Option<&'static str>,
}

/// pgbench's `-M`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Simple,
    Extended,
    Prepared,
}

impl Protocol {
    fn arg(self) -> &'static str {
        match self {
            Protocol::Simple => "simple",
            Protocol::Extended => "extended",
            Protocol::Prepared => "prepared",
        }
    }
}

/// One pgbench configuration of the matrix.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Row label, e.g. `-S simple c=16`.
    pub name: String,
    /// Built-in select-only script (`-S`) rather than tpcb-like.
    pub select_only: bool,
    /// Query protocol.
    pub protocol: Protocol,
    /// Concurrent clients.
    pub clients: u32,
}

/// The matrix: `-S` in each protocol at 1, 16 and 64 clients, then tpcb-like at 16.
pub fn matrix() -> Vec<Workload> {
    let mut all = Vec::new();
    for protocol in [Protocol::Simple, Protocol::Extended, Protocol::Prepared] {
        for clients in [1, 16, 64] {
            all.push(Workload { name: format!("-S {} c={clients}", protocol.arg()), select_only: true, protocol, clients });
        }
    }
    all.push(Workload { name: "tpcb-like simple c=16".into(), select_only: false, protocol: Protocol::Simple, clients: 16 });
    all
}

/// What one pgbench run measured.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Transactions per second (without initial connection time).
    pub tps: f64,
    /// pgbench's average latency, ms.
    pub latency_ms: f64,
    /// Transactions completed.
    pub transactions: u64,
    /// CPU seconds the proxy used during the run.
    pub cpu_s: Option<f64>,
    /// The 99th percentile of transaction latency, ms (from pgbench's per-transaction log, one transaction in
    /// `LOG_SAMPLING` logged).
    pub p99_ms: Option<f64>,
}

/// The share of transactions pgbench logs for the percentile (`--sampling-rate`): thousands of samples per run,
/// at a tenth of the log's cost.
const LOG_SAMPLING: &str = "0.1";

/// Threads for a run: one per client up to 16; one per client always for `-M prepared`, where pgbench's blocking
/// PQprepare of one client can wait for a pooled connection held by another client of the same thread.
fn threads(w: &Workload) -> u32 {
    if w.protocol == Protocol::Prepared {
        w.clients
    } else {
        w.clients.min(16)
    }
}

/// Runs `w` for `duration` against `e`; `Ok(None)` when the endpoint cannot run it.
pub async fn run(bindir: &Path, e: &Endpoint, w: &Workload, duration: Duration) -> Result<Option<Sample>, String> {
    if w.protocol == Protocol::Prepared && e.no_prepared.is_some() {
        return Ok(None);
    }
    let mut cmd = Command::new(bindir.join("pgbench"));
    cmd.args(["-n", "-T", &duration.as_secs().to_string(), "-c", &w.clients.to_string()]).args([
        "-j",
        &threads(w).to_string(),
        "-M",
        w.protocol.arg(),
    ]);
    if w.select_only {
        cmd.arg("-S");
    }
    // Per-transaction latencies for the percentile, into a folder of this run's own.
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let logs = std::env::temp_dir().join(format!("pgsplit-e2e-log-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&logs).map_err(|err| format!("{}: {err}", logs.display()))?;
    let prefix = logs.join("tx");
    cmd.args(["-l", &format!("--sampling-rate={LOG_SAMPLING}")]).arg(format!("--log-prefix={}", prefix.display()));
    cmd.arg(&e.url).kill_on_drop(true);
    let cpu_before = e.pid.and_then(procs::cpu_seconds);
    let out = cmd.output().await.map_err(|err| format!("cannot run pgbench: {err}"))?;
    let cpu_after = e.pid.and_then(procs::cpu_seconds);
    let p99_ms = p99_of_logs(&logs);
    let _ = std::fs::remove_dir_all(&logs);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("pgbench {} against {} failed: {}", w.name, e.kind.name(), tail(&out.stderr)));
    }
    let mut sample = parse(&stdout).ok_or_else(|| format!("cannot read pgbench's summary:\n{stdout}"))?;
    if failed(&stdout) > 0 {
        return Err(format!("pgbench {} against {}: failed transactions:\n{stdout}{}", w.name, e.kind.name(), tail(&out.stderr)));
    }
    sample.cpu_s = cpu_before.zip(cpu_after).map(|(b, a)| a - b);
    sample.p99_ms = p99_ms;
    Ok(Some(sample))
}

/// The 99th percentile of the latencies in pgbench's transaction logs in `dir` (one line per logged transaction:
/// client, transaction number, latency in µs, ...), ms; `None` without any.
fn p99_of_logs(dir: &Path) -> Option<f64> {
    let mut us: Vec<u64> = Vec::new();
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        us.extend(text.lines().filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok()));
    }
    percentile(&mut us, 0.99).map(|v| v as f64 / 1000.0)
}

/// The `q` quantile of `v` (nearest rank), `None` when empty.
fn percentile(v: &mut [u64], q: f64) -> Option<u64> {
    v.sort_unstable();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1));
    v.get(rank - 1).copied()
}

/// Initialises pgbench's tables at `scale` on `url`.
pub async fn initialise(bindir: &Path, url: &str, scale: u32) -> Result<(), String> {
    let out = Command::new(bindir.join("pgbench"))
        .args(["-i", "-q", "-s", &scale.to_string(), url])
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run pgbench -i: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("pgbench -i failed: {}", tail(&out.stderr)))
    }
}

fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// The number after `label` on the line that starts with it.
fn number_after(text: &str, label: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with(label))?;
    let rest = line[label.len()..].trim_start_matches([' ', '=', ':']);
    let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn failed(summary: &str) -> u64 {
    number_after(summary, "number of failed transactions").map_or(0, |n| n as u64)
}

/// Reads tps, average latency and the transaction count from pgbench's summary.
fn parse(summary: &str) -> Option<Sample> {
    Some(Sample {
        tps: number_after(summary, "tps")?,
        latency_ms: number_after(summary, "latency average")?,
        transactions: number_after(summary, "number of transactions actually processed")? as u64,
        cpu_s: None,
        p99_ms: None,
    })
}
