//! The threads that run sessions (`workers`; `docs/event-loop.md`, step 3). Each worker is one thread with a
//! current-thread runtime: its own event loop, reactor and timers. A client's session, and the server connections
//! it uses, stay on one worker for as long as the client stays: no task migrates, and nothing wakes another thread
//! on the fast path (a multi-thread runtime steals tasks and wakes its other threads). The accept loop runs on the
//! main runtime and hands each socket to the worker with the fewest sessions, so clients stay balanced as they come
//! and go (`SO_REUSEPORT` would hash them to a thread once and never rebalance).
//!
//! With `workers: 1` there is no worker thread: sessions run on the main runtime, one thread in all.
//!
//! Server connections are shared by all workers through each target's pool (one `max` for all of them). A socket is
//! registered with the reactor of the thread that opened it (its `Home`); a connection taken from another worker's
//! idle stack moves its registration to the taker first (`ServerConn::rehome`).

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

/// The thread whose reactor a socket is registered with: a worker's index, or `MAIN`.
pub type Home = u16;

/// Any thread that is not a worker: the main runtime's (accept, health probes, catalog refreshes, the HTTP
/// endpoint), or the only one with `workers: 1`.
pub const MAIN: Home = Home::MAX;

thread_local! {
    static HERE: Cell<Home> = const { Cell::new(MAIN) };
}

/// The worker the calling thread is, or `MAIN`.
#[inline]
pub fn here() -> Home {
    HERE.with(Cell::get)
}

/// Which of `stacks` idle stacks the thread `home` uses (the main thread shares the first worker's).
#[inline]
pub fn stack_of(home: Home, stacks: usize) -> usize {
    match home {
        MAIN => 0,
        w => usize::from(w) % stacks.max(1),
    }
}

/// One worker thread.
struct Worker {
    /// Spawns onto the worker's runtime.
    handle: tokio::runtime::Handle,
    /// Sessions running on it.
    sessions: Arc<AtomicUsize>,
}

/// The worker threads of one running proxy; stopped when dropped.
pub struct Workers {
    workers: Vec<Worker>,
    /// Ends every worker's event loop (its runtime then drops what it still runs).
    stop: CancellationToken,
}

/// A session counted on its worker until this is dropped.
pub struct Placed(Arc<AtomicUsize>);

impl Drop for Placed {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Workers {
    /// Starts `n` worker threads, or none for `n` = 1 (sessions then run on the caller's runtime).
    pub fn start(n: usize) -> std::io::Result<Workers> {
        let stop = CancellationToken::new();
        let mut workers = Vec::new();
        if n > 1 {
            for i in 0..n {
                let (tx, rx) = std::sync::mpsc::channel();
                let stop = stop.clone();
                let home = Home::try_from(i).unwrap_or(MAIN - 1);
                std::thread::Builder::new().name(format!("pgsplit-worker-{i}")).spawn(move || {
                    HERE.with(|h| h.set(home));
                    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                        Ok(rt) => {
                            let _ = tx.send(Ok(rt.handle().clone()));
                            rt.block_on(stop.cancelled());
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                        }
                    }
                })?;
                let handle = rx.recv().map_err(|_| std::io::Error::other("a worker thread ended at start"))??;
                workers.push(Worker { handle, sessions: Arc::default() });
            }
        }
        Ok(Workers { workers, stop })
    }

    /// No worker threads: sessions run on the caller's runtime.
    pub fn none() -> Workers {
        Workers { workers: Vec::new(), stop: CancellationToken::new() }
    }

    /// The runtime a new session goes to, the worker with the fewest sessions, and the count it holds there until
    /// it ends; `None` when there are no worker threads.
    pub fn pick(&self) -> Option<(&tokio::runtime::Handle, Placed)> {
        let w = self.workers.iter().min_by_key(|w| w.sessions.load(Ordering::Relaxed))?;
        w.sessions.fetch_add(1, Ordering::Relaxed);
        Some((&w.handle, Placed(w.sessions.clone())))
    }

    /// Sessions on each worker (empty without worker threads).
    pub fn sessions(&self) -> Vec<usize> {
        self.workers.iter().map(|w| w.sessions.load(Ordering::Relaxed)).collect()
    }
}

impl Drop for Workers {
    /// The threads end on their own once their runtime has dropped its tasks; nobody waits for them.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_go_to_the_worker_with_the_fewest_and_stay_balanced_as_they_come_and_go() {
        let workers = Workers::start(3).expect("three worker threads");
        let mut placed: Vec<Placed> = (0..9).map(|_| workers.pick().expect("a worker").1).collect();
        assert_eq!(workers.sessions(), [3, 3, 3]);
        // Sessions of the first worker end (they were placed round-robin: every third one is on worker 0).
        let mut i = 0;
        placed.retain(|_| {
            i += 1;
            i % 3 != 1
        });
        assert_eq!(workers.sessions(), [0, 3, 3]);
        // New sessions fill the emptied worker first; at a tie, the first worker.
        placed.extend((0..4).map(|_| workers.pick().expect("a worker").1));
        assert_eq!(workers.sessions(), [4, 3, 3]);
        drop(placed);
        assert_eq!(workers.sessions(), [0, 0, 0]);
    }

    #[test]
    fn each_worker_thread_knows_its_index_and_others_are_main() {
        let workers = Workers::start(2).expect("two worker threads");
        assert_eq!(here(), MAIN);
        let (tx, rx) = std::sync::mpsc::channel();
        let mut placed = Vec::new();
        for _ in 0..2 {
            let (handle, p) = workers.pick().expect("a worker");
            let tx = tx.clone();
            handle.spawn(async move {
                let _ = tx.send(here());
            });
            placed.push(p);
        }
        let mut seen: Vec<Home> = (0..2).map(|_| rx.recv_timeout(std::time::Duration::from_secs(10)).expect("ran")).collect();
        seen.sort_unstable();
        assert_eq!(seen, [0, 1]);
        assert_eq!(stack_of(MAIN, 2), 0);
        assert_eq!(stack_of(1, 2), 1);
        assert!(Workers::start(1).expect("none").pick().is_none(), "workers: 1 runs sessions on the main runtime");
    }
}
