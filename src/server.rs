//! The accept loop: a connection-limit permit before each accept, one task per client, stop on shutdown.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::app::App;

/// Most clients served at once; further connections wait in the listen backlog.
pub const MAX_CLIENTS: usize = 10_000;

/// Serves clients from `listener` until `shutdown` is cancelled. Sessions already running go on; the caller decides
/// how long to wait for them.
pub async fn run(listener: TcpListener, app: Arc<App>, shutdown: CancellationToken) {
    let permits = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (tcp, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let app = app.clone();
        tokio::spawn(async move {
            crate::session::serve(tcp, app).await;
            drop(permit);
        });
    }
}
