//! Delivering a client's CancelRequest to the server running its statement.

use std::time::Duration;

use super::App;

/// How long delivering a cancel to a server may take.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

impl App {
    /// A CancelRequest from a client: a client waiting for a server connection stops waiting; a statement in flight
    /// is cancelled on its server. The statement cannot finish and its connection go to another client while the
    /// cancel is being delivered (the session waits for it: `cancel::RunningCell`). Unknown keys are ignored.
    pub async fn cancel(&self, pid: i32, secret: i32) {
        let Some(slot) = self.cancels.find(pid, secret) else {
            tracing::debug!(pid, "cancel request with an unknown key ignored");
            return;
        };
        slot.waiting.notify_waiters();
        // Counted as being delivered until dropped: the session cannot move on to another statement meanwhile.
        let Some(delivering) = slot.running.begin_cancel() else { return };
        let r = delivering.running;
        if self.cancel_on_server(r.target, r.key).await {
            tracing::info!(pid, target = self.backend(r.target).name(), "statement cancelled at the client's request");
        }
        drop(delivering);
    }

    /// Sends a CancelRequest for the server process `key` of `target`; false (logged) when it was not delivered.
    pub async fn cancel_on_server(&self, target: crate::router::TargetId, key: (i32, i32)) -> bool {
        let backend = self.backend(target);
        match tokio::time::timeout(CANCEL_TIMEOUT, crate::backend::conn::send_cancel(&backend.spec, key)).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::warn!(target = backend.name(), error = %e, "cancel not delivered");
                false
            }
            Err(_) => {
                tracing::warn!(target = backend.name(), "cancel not delivered: timed out");
                false
            }
        }
    }
}
