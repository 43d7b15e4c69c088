//! The server parameters clients are greeted with, taken from the targets and never invented.

use std::future::Future;

use crate::backend::Backend;
use crate::router::TargetId;

use super::App;

impl App {
    /// Server parameters to greet clients with, never invented: `target`'s when known, else any target's known ones
    /// at once (a target down since start does not hold up logins for the others), else those of the first target
    /// that answers a connection (each within its checkout timeout). Empty when no target answers: the greeting
    /// then says so (`session::startup`).
    pub async fn server_params(&self, target: TargetId) -> Vec<(String, String)> {
        let known = std::iter::once(self.backend(target)).chain(self.backends.iter()).map(Backend::server_params);
        if let Some(params) = known.into_iter().find(|p| !p.is_empty()) {
            return params;
        }
        // None known yet (every target was down at start): the first target to answer gives them.
        let mut attempts: Vec<_> = self
            .backends
            .iter()
            .map(|b| Box::pin(async move { b.checkout().await.map(drop).map(|()| b.server_params()) }))
            .collect();
        std::future::poll_fn(|cx| {
            let mut i = 0;
            while i < attempts.len() {
                match attempts[i].as_mut().poll(cx) {
                    std::task::Poll::Ready(Ok(p)) if !p.is_empty() => return std::task::Poll::Ready(p),
                    std::task::Poll::Ready(_) => {
                        drop(attempts.swap_remove(i));
                    }
                    std::task::Poll::Pending => i += 1,
                }
            }
            if attempts.is_empty() {
                std::task::Poll::Ready(Vec::new())
            } else {
                std::task::Poll::Pending
            }
        })
        .await
    }
}
