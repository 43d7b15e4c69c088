//! Reading the targets' catalogs: at start, periodically, after DDL, and when a target comes back.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::{BackendError, CheckoutError, ServerConn};
use crate::catalog::TargetCatalog;
use crate::router::TargetId;

use super::App;

/// How long one catalog read may take before the old snapshot is kept.
const CATALOG_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a target's catalog was not read; its previous snapshot then stays.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// No connection to the target could be had.
    #[error(transparent)]
    Checkout(#[from] CheckoutError),
    /// The catalog query failed on the connection.
    #[error(transparent)]
    Read(#[from] BackendError),
    /// The read took longer than `CATALOG_TIMEOUT`.
    #[error("reading the catalog of target \"{target}\" timed out")]
    Timeout {
        /// The target's name.
        target: String,
    },
}

impl App {
    /// Re-reads one target's catalog over a pooled connection; on failure the previous snapshot stays.
    pub async fn refresh_catalog(&self, target: TargetId) -> Result<usize, CatalogError> {
        let backend = self.backend(target);
        let read = async {
            // The connection first, then the target's read turn: a turn is never held while waiting for the pool.
            let mut conn = backend.checkout().await?;
            let _turn = backend.catalog_turn().await;
            let generation = backend.statement_epoch();
            // A timeout that drops the read half-way leaves the connection broken (each exchange is guarded).
            let snapshot = TargetCatalog::load(&mut conn).await;
            if snapshot.is_err() {
                conn.retire();
            }
            Ok::<_, CatalogError>(self.swap_catalog(target, snapshot?, generation))
        };
        match tokio::time::timeout(CATALOG_TIMEOUT, read).await {
            Ok(r) => r,
            Err(_) => Err(CatalogError::Timeout { target: backend.name().to_owned() }),
        }
    }

    /// Re-reads one target's catalog over `conn`, a connection the caller holds idle (a session's, right after its
    /// DDL), unless a snapshot that includes generation `wanted` is in force by the time this read's turn comes; on
    /// failure the previous snapshot stays and the connection is retired.
    pub async fn refresh_catalog_on(&self, target: TargetId, conn: &mut ServerConn, wanted: u64) -> Result<usize, CatalogError> {
        let backend = self.backend(target);
        // Reads of one target take turns, so that a snapshot is never replaced by an older one, and a read waited for
        // serves every DDL before it.
        let _turn = backend.catalog_turn().await;
        if backend.catalog_loaded() >= wanted {
            return Ok(0);
        }
        let generation = backend.statement_epoch();
        let before = self.catalog().target(target).cloned();
        let read = TargetCatalog::load_after_ddl(conn, before.as_ref());
        let snapshot = match tokio::time::timeout(CATALOG_TIMEOUT, read).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                conn.retire();
                return Err(e.into());
            }
            Err(_) => {
                conn.retire();
                return Err(CatalogError::Timeout { target: backend.name().to_owned() });
            }
        };
        Ok(self.swap_catalog(target, snapshot, generation))
    }

    /// Puts a snapshot read at `generation` in force.
    fn swap_catalog(&self, target: TargetId, snapshot: TargetCatalog, generation: u64) -> usize {
        let objects = snapshot.len();
        let snapshot = Arc::new(snapshot);
        self.catalog.rcu(|c| c.with_target(target, snapshot.clone()));
        self.routing_inputs_changed();
        self.backend(target).mark_catalog_loaded(generation);
        tracing::debug!(target = self.backend(target).name(), objects, "catalog refreshed");
        objects
    }

    /// At start: every target is tried once, all at once, and the catalogs of those that answered are read; a target
    /// down since start (refused, or its certificate refused) is not waited for — the health probes read its catalog
    /// when it comes back. Logins are thus never held up by one target being down.
    pub async fn first_catalogs(&self) {
        let reads = (0..self.backends.len()).map(|t| async move {
            if self.backend(t).reachable().await {
                if let Err(e) = self.refresh_catalog(t).await {
                    tracing::warn!(target = self.backend(t).name(), error = %e, "catalog not read");
                }
            }
        });
        join_all(reads.collect()).await;
    }

    /// Re-reads every target's catalog; a target that cannot be read is logged and keeps its old snapshot.
    pub async fn refresh_catalogs(&self) {
        for t in 0..self.backends.len() {
            if let Err(e) = self.refresh_catalog(t).await {
                tracing::warn!(target = self.backend(t).name(), error = %e, "catalog not refreshed");
            }
        }
    }
}

/// Runs futures concurrently to completion (a handful: one per target).
async fn join_all<F: Future<Output = ()>>(futures: Vec<F>) {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        futures.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if futures.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}
