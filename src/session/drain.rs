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
        let (app, waker, user) = (&self.app, &self.key.slot.drain, &self.user);
        // Cancel-safe: a partial read stays in the client's buffer.
        let mut read = std::pin::pin!(self.client.read_frame());
        // Draining first, as a biased select would; the session's waker is registered for the drain only when the
        // read must wait (then the flag is looked at again: a drain starting in between still wakes it).
        std::future::poll_fn(|cx| {
            if app.is_draining() {
                return std::task::Poll::Ready(closing(user));
            }
            if let std::task::Poll::Ready(frame) = std::future::Future::poll(read.as_mut(), cx) {
                return std::task::Poll::Ready(frame.map_err(SessionError::from));
            }
            waker.register(cx.waker());
            match app.is_draining() {
                true => std::task::Poll::Ready(closing(user)),
                false => std::task::Poll::Pending,
            }
        })
        .await
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
