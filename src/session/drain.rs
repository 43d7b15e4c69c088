//! Shutdown as a session sees it: once pgsplit drains, a session at rest (no transaction, no unsynced batch) is
//! ended with FATAL 57P01; a session in a transaction goes on until the transaction ends (or the grace period does).

use crate::protocol::Frame;

use super::{Session, SessionError};

impl Session {
    /// Whether nothing of the client's is open on a server: the session can end without losing work.
    pub(super) fn at_rest(&self) -> bool {
        self.machine.at_rest() && self.batch.is_empty()
    }

    /// The client's next message; or, when pgsplit is draining and the session is at rest, the end of the session.
    pub(super) async fn next_frame_or_drain(&mut self) -> Result<Option<Frame>, SessionError> {
        if !self.at_rest() {
            return Ok(self.client.read_frame().await?);
        }
        let drained = Drained { app: &self.app, waker: &self.key.slot.drain };
        tokio::select! {
            biased;
            _ = drained => closing(&self.user),
            // Cancel-safe: a partial read stays in the client's buffer.
            frame = self.client.read_frame() => Ok(frame?),
        }
    }
}

/// Ready once pgsplit drains: registers the session's waker in its slot, then checks the flag (in that order, so a
/// drain starting in between still wakes it). No lock, no allocation: it is polled before every wait for a client.
pub(super) struct Drained<'a> {
    /// Whose flag says pgsplit drains.
    pub(super) app: &'a crate::App,
    /// The session's slot's waker, woken by `App::start_draining`.
    pub(super) waker: &'a atomic_waker::AtomicWaker,
}

impl std::future::Future for Drained<'_> {
    type Output = ();

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        self.waker.register(cx.waker());
        if self.app.is_draining() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    }
}

/// The end of a session at rest when pgsplit shuts down.
pub(super) fn closing(user: &str) -> Result<Option<Frame>, SessionError> {
    tracing::info!(%user, "closing an idle session: pgsplit is shutting down");
    Err(SessionError::Fatal(super::errors::shutting_down()))
}
