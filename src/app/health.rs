//! The targets' health at run time: probes, the pools' minimum connections, and connection alerts.

use std::time::Duration;

use super::App;

/// How long a background health probe may take before the target counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

impl App {
    /// Opens each target's `min` connections (at start; the probes keep them topped up).
    pub async fn open_min_connections(&self) {
        for backend in &self.backends {
            backend.keep_min(PROBE_TIMEOUT).await;
        }
    }

    /// Probes every target; a target that is back (or whose catalog was never read) gets its catalog re-read.
    pub async fn probe_targets(&self) {
        for t in 0..self.backends.len() {
            let backend = self.backend(t);
            let was_up = backend.is_up();
            backend.reap();
            let up = backend.probe(PROBE_TIMEOUT).await;
            if up && !was_up {
                tracing::info!(target = backend.name(), "target reachable again");
            }
            if up {
                backend.keep_min(PROBE_TIMEOUT).await;
            }
            if up && (!was_up || self.catalog().target(t).is_none()) {
                if let Err(e) = self.refresh_catalog(t).await {
                    tracing::warn!(target = backend.name(), error = %e, "catalog not refreshed");
                }
            }
        }
        self.check_connection_alerts();
        for (_, pool) in self.database_pools() {
            pool.reap();
        }
        self.sweep_databases();
    }

    /// Samples each target's open server connections against its `alert_connections` (called at every probe tick):
    /// the alert is raised, with a warning, once every sample for `alert_sustain` was above the threshold, and
    /// cleared, with an info line, at the first sample that is not.
    pub fn check_connection_alerts(&self) {
        use crate::metrics::AlertChange;
        let now = std::time::Instant::now();
        let config = self.config();
        let sustain = config.alert_sustain;
        for (b, t) in self.backends.iter().zip(&config.targets) {
            let Some(threshold) = t.alert_connections else { continue };
            let (connections, _) = b.pool_state();
            match b.stats.alert.observe(connections, threshold, sustain, now) {
                Some(AlertChange::Raised) => tracing::warn!(
                    target = b.name(),
                    connections,
                    threshold,
                    sustained = ?sustain,
                    "connection alert: target has more server connections than its threshold"
                ),
                Some(AlertChange::Cleared) => {
                    tracing::info!(target = b.name(), connections, threshold, "connection alert cleared")
                }
                None => {}
            }
        }
    }
}
