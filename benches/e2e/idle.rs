//! Idle-client memory: a proxy's VmRSS before and while N authenticated clients, each having run one query, sit
//! idle on it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::procs;

/// Connections opened at once (SCRAM makes each one cost a few milliseconds of CPU on both sides).
const CONNECT_CONCURRENCY: usize = 32;
/// A connection that takes longer than this is a failure, not a slow measurement.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// What the idle test measured.
#[derive(Clone, Copy, Debug)]
pub struct IdleMemory {
    /// Clients held open.
    pub clients: usize,
    /// VmRSS before they connected, KiB.
    pub before_kib: u64,
    /// VmRSS while they were connected, KiB.
    pub after_kib: u64,
}

impl IdleMemory {
    /// Growth per idle client, KiB.
    pub fn per_client_kib(&self) -> f64 {
        self.after_kib.saturating_sub(self.before_kib) as f64 / self.clients.max(1) as f64
    }
}

/// Opens `clients` connections to `url`, runs `select 1` on each, waits a moment, reads `pid`'s VmRSS, then closes
/// them all.
pub async fn measure(url: &str, pid: u32, clients: usize) -> Result<IdleMemory, String> {
    let before_kib = procs::rss_kib(pid).ok_or("cannot read VmRSS")?;
    let permits = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let mut tasks = JoinSet::new();
    for _ in 0..clients {
        let (url, permits) = (url.to_owned(), permits.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.map_err(|e| e.to_string())?;
            let connect = tokio_postgres::connect(&url, tokio_postgres::NoTls);
            let (client, conn) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
                .await
                .map_err(|_| format!("no connection within {CONNECT_TIMEOUT:?} (open-file limit?)"))?
                .map_err(|e| e.to_string())?;
            let task = tokio::spawn(conn);
            client.simple_query("select 1").await.map_err(|e| e.to_string())?;
            Ok::<_, String>((client, task))
        });
    }
    let mut open = Vec::with_capacity(clients);
    while let Some(joined) = tasks.join_next().await {
        open.push(joined.map_err(|e| e.to_string())??);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_kib = procs::rss_kib(pid).ok_or("cannot read VmRSS")?;
    for (client, task) in open {
        drop(client);
        let _ = task.await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(IdleMemory { clients, before_kib, after_kib })
}
