//! The results of a run and the Markdown tables and target checks printed from them.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use crate::copy::CopySample;
use crate::idle::IdleMemory;
use crate::pgbench::{Kind, Sample, Workload};

/// Everything a run measured.
#[derive(Default)]
pub struct Results {
    /// The pgbench matrix, in order.
    pub workloads: Vec<Workload>,
    /// The endpoints measured, in column order.
    pub kinds: Vec<Kind>,
    /// Samples per (workload index, endpoint).
    pub runs: HashMap<(usize, Kind), Vec<Sample>>,
    /// (workload index, endpoint) pairs that cannot run (PgBouncer < 1.21 with `-M prepared`).
    pub unsupported: HashSet<(usize, Kind)>,
    /// (workload index, endpoint) pairs with a failed run.
    pub failed: HashSet<(usize, Kind)>,
    /// Size of the COPY file, MB.
    pub copy_mb: f64,
    /// COPY samples per endpoint.
    pub copy: HashMap<Kind, Vec<CopySample>>,
    /// Idle-client memory per proxy.
    pub idle: Vec<(Kind, IdleMemory)>,
    /// Lines printed under the tables (what was skipped and why).
    pub notes: Vec<String>,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 })
}

impl Results {
    fn samples(&self, w: usize, k: Kind) -> &[Sample] {
        self.runs.get(&(w, k)).map_or(&[], Vec::as_slice)
    }

    /// Median TPS.
    fn tps(&self, w: usize, k: Kind) -> Option<f64> {
        median(self.samples(w, k).iter().map(|s| s.tps).collect())
    }

    /// Median average latency, ms.
    fn latency(&self, w: usize, k: Kind) -> Option<f64> {
        median(self.samples(w, k).iter().map(|s| s.latency_ms).collect())
    }

    /// Median 99th-percentile latency, ms.
    fn p99(&self, w: usize, k: Kind) -> Option<f64> {
        median(self.samples(w, k).iter().filter_map(|s| s.p99_ms).collect())
    }

    /// Proxy CPU seconds per 10,000 transactions over all rounds.
    fn cpu_per_10k(&self, w: usize, k: Kind) -> Option<f64> {
        let s = self.samples(w, k);
        let cpu: Option<f64> = s.iter().map(|s| s.cpu_s).sum();
        let tx: u64 = s.iter().map(|s| s.transactions).sum();
        cpu.filter(|_| tx > 0).map(|c| c * 10_000.0 / tx as f64)
    }

    fn cell(&self, w: usize, k: Kind, value: Option<f64>, digits: usize) -> String {
        match value {
            Some(v) => format!("{v:.digits$}"),
            None if !self.kinds.contains(&k) => "–".into(),
            None if self.unsupported.contains(&(w, k)) => "n/a".into(),
            None if self.failed.contains(&(w, k)) => "FAILED".into(),
            None => "–".into(),
        }
    }

    fn copy_seconds(&self, k: Kind) -> Option<f64> {
        median(self.copy.get(&k)?.iter().map(|s| s.elapsed.as_secs_f64()).collect())
    }

    fn copy_cpu_per_gb(&self, k: Kind) -> Option<f64> {
        let s = self.copy.get(&k)?;
        let cpu: f64 = s.iter().map(|s| s.cpu_s).sum::<Option<f64>>()?;
        Some(cpu / (self.copy_mb * s.len() as f64 / 1024.0))
    }

    /// The Markdown tables, the target checks and the notes.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_pgbench(&mut out);
        self.render_p99(&mut out);
        self.render_copy(&mut out);
        self.render_idle(&mut out);
        self.render_targets(&mut out);
        for n in &self.notes {
            let _ = writeln!(out, "- {n}");
        }
        out
    }

    fn render_pgbench(&self, out: &mut String) {
        if self.workloads.is_empty() {
            return;
        }
        let (d, p, b) = (Kind::Direct, Kind::Pgsplit, Kind::Pgbouncer);
        out.push_str("| workload | TPS direct | TPS pgsplit | TPS PgBouncer | latency ms direct | pgsplit | PgBouncer ");
        out.push_str("| pgsplit/direct | pgsplit/PgBouncer | CPU s/10k tx pgsplit | PgBouncer |\n");
        out.push_str("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
        for (i, w) in self.workloads.iter().enumerate() {
            let ratio = |other: Kind| match (self.tps(i, p), self.tps(i, other)) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
                _ => "–".into(),
            };
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                w.name,
                self.cell(i, d, self.tps(i, d), 0),
                self.cell(i, p, self.tps(i, p), 0),
                self.cell(i, b, self.tps(i, b), 0),
                self.cell(i, d, self.latency(i, d), 3),
                self.cell(i, p, self.latency(i, p), 3),
                self.cell(i, b, self.latency(i, b), 3),
                ratio(d),
                ratio(b),
                self.cell(i, p, self.cpu_per_10k(i, p), 2),
                self.cell(i, b, self.cpu_per_10k(i, b), 2),
            );
        }
    }

    fn render_p99(&self, out: &mut String) {
        if self.workloads.is_empty() {
            return;
        }
        out.push_str("\n| workload | p99 latency ms direct | pgsplit | PgBouncer |\n|---|--:|--:|--:|\n");
        for (i, w) in self.workloads.iter().enumerate() {
            let cells = [Kind::Direct, Kind::Pgsplit, Kind::Pgbouncer].map(|k| self.cell(i, k, self.p99(i, k), 3));
            let _ = writeln!(out, "| `{}` | {} | {} | {} |", w.name, cells[0], cells[1], cells[2]);
        }
    }

    fn render_copy(&self, out: &mut String) {
        if self.copy.is_empty() {
            return;
        }
        let _ = writeln!(out, "\n| COPY {:.0} MB into DATA | seconds | MB/s | vs direct | proxy CPU s/GB |", self.copy_mb);
        out.push_str("|---|--:|--:|--:|--:|\n");
        let direct = self.copy_seconds(Kind::Direct);
        for &k in &self.kinds {
            let Some(secs) = self.copy_seconds(k) else { continue };
            let vs = direct.map_or("–".into(), |d| format!("{:.1}%", d / secs * 100.0));
            let cpu = self.copy_cpu_per_gb(k).map_or("–".into(), |c| format!("{c:.2}"));
            let _ = writeln!(out, "| {} | {secs:.2} | {:.0} | {vs} | {cpu} |", k.name(), self.copy_mb / secs);
        }
    }

    fn render_idle(&self, out: &mut String) {
        if self.idle.is_empty() {
            return;
        }
        out.push_str("\n| idle clients | proxy | VmRSS before | VmRSS with clients | KB per client |\n|--:|---|--:|--:|--:|\n");
        for (k, m) in &self.idle {
            let _ = writeln!(
                out,
                "| {} | {} | {} KB | {} KB | {:.1} |",
                m.clients,
                k.name(),
                m.before_kib,
                m.after_kib,
                m.per_client_kib()
            );
        }
    }

    fn workload(&self, name: &str) -> Option<usize> {
        self.workloads.iter().position(|w| w.name == name)
    }

    fn render_targets(&self, out: &mut String) {
        let (d, p, b) = (Kind::Direct, Kind::Pgsplit, Kind::Pgbouncer);
        let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
        out.push_str("\nTargets (issue 17):\n");
        // TPS against PgBouncer in every row it runs, and 1.10× at `-S simple c=16`.
        let mut below = Vec::new();
        let mut compared = 0;
        for (i, w) in self.workloads.iter().enumerate() {
            if let Some((tp, tb)) = self.tps(i, p).zip(self.tps(i, b)) {
                compared += 1;
                if tp < tb {
                    below.push(format!("`{}` {:.2}×", w.name, tp / tb));
                }
            }
        }
        match compared {
            0 => out.push_str("- TPS ≥ 1.0× PgBouncer in every row: not measured\n"),
            n => {
                let _ = writeln!(
                    out,
                    "- TPS ≥ 1.0× PgBouncer in every row: {} of {n} — {}{}",
                    n - below.len(),
                    verdict(below.is_empty()),
                    if below.is_empty() { String::new() } else { format!(" (below: {})", below.join("; ")) }
                );
            }
        }
        match self.workload("-S simple c=16").and_then(|i| self.tps(i, p).zip(self.tps(i, b))) {
            Some((ps, pb)) => {
                let _ = writeln!(out, "- `-S simple c=16` TPS ≥ 1.10× PgBouncer: {:.2}× — {}", ps / pb, verdict(ps >= 1.1 * pb));
            }
            None => out.push_str("- `-S simple c=16` TPS ≥ 1.10× PgBouncer: not measured\n"),
        }
        match self.workload("-S prepared c=16").and_then(|i| self.tps(i, p).zip(self.tps(i, d))) {
            Some((pp, pd)) => {
                let _ = writeln!(out, "- `-S prepared c=16` ≥ 0.8× direct: {:.2}× — {}", pp / pd, verdict(pp >= 0.8 * pd));
            }
            None => out.push_str("- `-S prepared c=16` ≥ 0.8× direct: not measured\n"),
        }
        let mut cpu_fails = Vec::new();
        let mut compared = 0;
        for (i, w) in self.workloads.iter().enumerate().filter(|(_, w)| w.select_only) {
            if let Some((cp, cb)) = self.cpu_per_10k(i, p).zip(self.cpu_per_10k(i, b)) {
                compared += 1;
                if cp > cb {
                    cpu_fails.push(format!("`{}` {cp:.2} vs {cb:.2}", w.name));
                }
            }
        }
        if compared == 0 {
            out.push_str("- CPU per `-S` transaction ≤ PgBouncer's: not measured\n");
        } else {
            let _ = writeln!(
                out,
                "- CPU per `-S` transaction ≤ PgBouncer's: {} of {compared} workloads — {}{}",
                compared - cpu_fails.len(),
                verdict(cpu_fails.is_empty()),
                if cpu_fails.is_empty() { String::new() } else { format!(" (above: {})", cpu_fails.join("; ")) }
            );
        }
        for name in ["-S simple c=1", "-S extended c=1"] {
            let lat = |k| self.workload(name).and_then(|i| self.latency(i, k));
            match (lat(d), lat(p), lat(b)) {
                (Some(ld), Some(lp), Some(lb)) => {
                    let (ap, ab) = ((lp - ld) * 1000.0, (lb - ld) * 1000.0);
                    let _ = writeln!(
                        out,
                        "- added latency `{name}` ≤ PgBouncer's: pgsplit +{ap:.0} µs, PgBouncer +{ab:.0} µs — {}",
                        verdict(ap <= ab)
                    );
                }
                _ => {
                    let _ = writeln!(out, "- added latency `{name}` ≤ PgBouncer's: not measured");
                }
            }
        }
        for name in ["-S simple c=64", "-S extended c=64"] {
            match self.workload(name).and_then(|i| self.p99(i, p).zip(self.p99(i, b))) {
                Some((pp, pb)) => {
                    let _ = writeln!(
                        out,
                        "- p99 latency `{name}` ≤ PgBouncer's: {pp:.3} ms against {pb:.3} ms — {}",
                        verdict(pp <= pb)
                    );
                }
                None => {
                    let _ = writeln!(out, "- p99 latency `{name}` ≤ PgBouncer's: not measured");
                }
            }
        }
        if let Some((sd, sp)) = self.copy_seconds(d).zip(self.copy_seconds(p)) {
            let _ = writeln!(out, "- COPY ≥ 95% of direct: {:.1}% — {}", sd / sp * 100.0, verdict(sd / sp >= 0.95));
        }
        if let Some((_, m)) = self.idle.iter().find(|(k, _)| *k == p) {
            let kb = m.per_client_kib();
            let _ = writeln!(out, "- idle memory ≤ 4 KB per client: {kb:.1} KB — {}", verdict(kb <= 4.0));
        }
    }
}
