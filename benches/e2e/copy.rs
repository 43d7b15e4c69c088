//! The COPY workload: a generated tab-separated file loaded with psql's `\copy` into a table on DATA, timed.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::process::Command;

use pgsplit::cluster::Cluster;

use crate::pgbench::Endpoint;
use crate::procs;

/// The table the file is loaded into (public: no routed schema, so pgsplit sends it to its default target, DATA).
pub const TABLE: &str = "public.e2e_copy";
/// DATA's database (made by `pgsplit::demo::set_up`).
const DATABASE: &str = "handled_data";

/// What one COPY run measured.
#[derive(Clone, Copy, Debug)]
pub struct CopySample {
    /// Wall time of the whole `\copy`, connection included.
    pub elapsed: Duration,
    /// CPU seconds the proxy used meanwhile.
    pub cpu_s: Option<f64>,
}

/// Writes about `bytes` bytes of rows shaped like pgbench_accounts (id, key, number, 84-character filler).
pub fn generate(path: &Path, bytes: u64) -> Result<u64, String> {
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let filler = "x".repeat(84);
    let mut written = 0u64;
    let mut id = 0u64;
    while written < bytes {
        id += 1;
        let line = format!("{id}\t{}\t{}\t{filler}\n", id % 1_000, id % 7_919);
        w.write_all(line.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
        written += line.len() as u64;
    }
    w.flush().map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(written)
}

/// Runs one psql command against `url`.
pub async fn psql(bindir: &Path, url: &str, command: &str) -> Result<(), String> {
    let out = Command::new(bindir.join("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", command, url])
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("psql {command:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Creates the target table (owned by the server role) on DATA through the direct URL.
pub async fn create_table(bindir: &Path, direct_url: &str) -> Result<(), String> {
    let sql = format!("drop table if exists {TABLE}; create table {TABLE} (id int8, k int4, n int4, filler text)");
    psql(bindir, direct_url, &sql).await
}

/// Empties the table and checkpoints DATA (as its superuser, so every run starts alike), then loads `file` through
/// `e` and times it.
pub async fn run(bindir: &Path, data: &Cluster, e: &Endpoint, file: &Path) -> Result<CopySample, String> {
    data.psql(DATABASE, &format!("truncate {TABLE}")).await.map_err(|err| err.to_string())?;
    data.psql(DATABASE, "checkpoint").await.map_err(|err| err.to_string())?;
    let copy = format!("\\copy {TABLE} from '{}'", file.display());
    let cpu_before = e.pid.and_then(procs::cpu_seconds);
    let start = Instant::now();
    psql(bindir, &e.url, &copy).await?;
    let elapsed = start.elapsed();
    let cpu_after = e.pid.and_then(procs::cpu_seconds);
    Ok(CopySample { elapsed, cpu_s: cpu_before.zip(cpu_after).map(|(b, a)| a - b) })
}
