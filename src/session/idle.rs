//! The wait for a client's next message, bounded by PgBouncer's `client_idle_timeout` (at rest) and
//! `idle_transaction_timeout` (in a transaction, or with a batch not yet synced). A client past either is closed with
//! the FATAL error PostgreSQL's `idle_session_timeout` (57P05) and `idle_in_transaction_session_timeout` (25P03) end a
//! session with; a server connection in a transaction then closes with the session instead of going back to its pool.
//! With both off (the default) `Session::run` waits as it always did: no timer, no wrapper.

use std::task::Poll;
use std::time::Duration;

use crate::protocol::Frame;

use super::{errors, Session, SessionError};

impl Session {
    /// The client's next message (`None`: it closed the connection), within `limit`: `client_idle_timeout` when the
    /// session is `at_rest`, `idle_transaction_timeout` otherwise.
    pub(super) async fn next_message_within(&mut self, limit: Duration, at_rest: bool) -> Result<Option<Frame>, SessionError> {
        let mut wait = std::pin::pin!(self.wait_for_client());
        // Polled once first: a message already buffered costs no timer.
        if let Poll::Ready(next) = crate::backend::poll_once(wait.as_mut()).await {
            return next;
        }
        match tokio::time::timeout(limit, wait).await {
            Ok(next) => next,
            Err(_) => {
                let (setting, error) = match at_rest {
                    true => ("client_idle_timeout", errors::idle_session_timeout()),
                    false => ("idle_transaction_timeout", errors::idle_in_transaction_timeout()),
                };
                tracing::info!(setting, ?limit, "closing an idle client");
                Err(SessionError::Fatal(error))
            }
        }
    }

    /// The client's next message; at rest, the end of the session when pgsplit drains. `Session::run` spells the same
    /// wait out inline when no limit applies: an async layer there costs 175 instructions per transaction
    /// (`benches/callgrind.sh`, extended, 1 client: 11,851 inline, 12,026 through this function).
    async fn wait_for_client(&mut self) -> Result<Option<Frame>, SessionError> {
        if self.machine.pinned_idle().next().is_none() {
            return self.next_frame_or_drain().await;
        }
        // At rest, a pinned session ends at shutdown as any other; in a transaction it goes on.
        let drain =
            self.at_rest().then(|| (super::drain::Drained { app: &self.app, waker: &self.key.slot.drain }, self.user.as_str()));
        super::notify::next_frame_or_notification(&mut self.client, &mut self.machine, drain).await
    }
}
