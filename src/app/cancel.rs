//! Delivering a client's CancelRequest to the server running its statement.

use std::time::Duration;

use super::App;

/// How long delivering a cancel to a server may take.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

impl App {
    /// A CancelRequest from a client: a client waiting for a server connection stops waiting; a statement in flight
    /// is cancelled on its server. The statement cannot finish and its connection go to another client while the
    /// cancel is being delivered (the slot's lock is held meanwhile). Unknown keys are ignored.
    pub async fn cancel(&self, pid: i32, secret: i32) {
        let Some(slot) = self.cancels.find(pid, secret) else {
            tracing::debug!(pid, "cancel request with an unknown key ignored");
            return;
        };
        slot.waiting.notify_waiters();
        let running = slot.running.lock().await;
        if let Some(r) = *running {
            let backend = self.backend(r.target);
            match tokio::time::timeout(CANCEL_TIMEOUT, crate::backend::conn::send_cancel(&backend.spec, r.key)).await {
                Ok(Ok(())) => tracing::info!(pid, target = backend.name(), "statement cancelled at the client's request"),
                Ok(Err(e)) => tracing::warn!(pid, target = backend.name(), error = %e, "cancel not delivered"),
                Err(_) => tracing::warn!(pid, target = backend.name(), "cancel not delivered: timed out"),
            }
        }
    }
}
