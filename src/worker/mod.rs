//! The threads that run sessions (`workers`; `docs/event-loop.md`, steps 3 and 4). Each worker is one thread with an
//! event loop of its own (`exec.rs`: a mio `Poll` and a queue of tasks) serving its sessions' sockets
//! (`socket.rs`). A client's session, and the server connections it uses, stay on one worker for as long as the
//! client stays: no task migrates, and nothing wakes another thread on the fast path. The accept loop runs on the
//! main runtime (tokio, one thread) and hands each socket to the worker with the fewest sessions, so clients stay
//! balanced as they come and go (`SO_REUSEPORT` would hash them to a thread once and never rebalance).
//!
//! What is off the fast path stays on the main runtime, which every worker thread has entered: timers, spawned
//! helpers (a cancel sent to a server), connects and name lookups; they wake the worker's task across threads.
//!
//! With `workers: 1` one worker thread serves every session: one event loop, as PgBouncer's (the main runtime only
//! accepts, probes and serves HTTP). Without worker threads (`Workers::none`, when they cannot start) sessions run
//! on the main runtime.
//!
//! Server connections are shared by all workers through each target's pool (one `max` for all of them). A socket is
//! served by the loop of the thread that polls it: one taken from another worker's idle stack, or opened on the main
//! thread, moves its registration to the taker (`Socket::here`, called by `ServerConn::rehome`).

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The thread whose reactor a socket is registered with: a worker's index, or `MAIN`.
pub type Home = u16;

/// Any thread that is not a worker: the main runtime's (accept, health probes, catalog refreshes, the HTTP
/// endpoint; sessions too when no worker thread could start).
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

mod exec;
mod recycle;
mod socket;

pub use exec::Shared;
pub use recycle::Recycled;
pub use socket::Socket;

/// One worker thread.
struct Worker {
    /// Spawns onto the worker's loop, and stops it.
    shared: Arc<Shared>,
    /// Sessions running on it.
    sessions: Arc<AtomicUsize>,
}

/// The worker threads of one running proxy; stopped when dropped.
pub struct Workers {
    workers: Vec<Worker>,
}

/// A session counted on its worker until this is dropped.
pub struct Placed(Arc<AtomicUsize>);

impl Drop for Placed {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Workers {
    /// Starts `n` worker threads, or none for `n` = 1 (sessions then run on the caller's runtime). Each worker
    /// thread enters the caller's tokio runtime, if any, for what stays tokio's (timers, spawns, connects).
    pub fn start(n: usize) -> std::io::Result<Workers> {
        // Pushed as they start: a later failure drops `workers`, which stops those already running.
        let mut workers = Workers { workers: Vec::new() };
        if n >= 1 {
            let main = tokio::runtime::Handle::try_current().ok();
            for i in 0..n {
                let home = Home::try_from(i).unwrap_or(MAIN - 1);
                let poll = mio::Poll::new()?;
                let shared = Arc::new(Shared::new(home, &poll)?);
                let (mine, main) = (shared.clone(), main.clone());
                // A thread that fails to start never runs the loop: nothing to stop for it.
                std::thread::Builder::new().name(format!("pgsplit-worker-{i}")).spawn(move || {
                    HERE.with(|h| h.set(home));
                    let _entered = main.as_ref().map(|h| h.enter());
                    exec::run(mine, poll);
                })?;
                workers.workers.push(Worker { shared, sessions: Arc::default() });
            }
        }
        Ok(workers)
    }

    /// No worker threads: sessions run on the caller's runtime.
    pub fn none() -> Workers {
        Workers { workers: Vec::new() }
    }

    /// The worker a new session goes to, the one with the fewest sessions, and the count it holds there until it
    /// ends; `None` when there are no worker threads.
    pub fn pick(&self) -> Option<(&Shared, Placed)> {
        let w = self.workers.iter().min_by_key(|w| w.sessions.load(Ordering::Relaxed))?;
        w.sessions.fetch_add(1, Ordering::Relaxed);
        Some((&w.shared, Placed(w.sessions.clone())))
    }

    /// Sessions on each worker (empty without worker threads).
    pub fn sessions(&self) -> Vec<usize> {
        self.workers.iter().map(|w| w.sessions.load(Ordering::Relaxed)).collect()
    }

    /// Drops every task the workers run (the shutdown grace is over): each drops its session.
    pub fn abort_all(&self) {
        for w in &self.workers {
            w.shared.abort_all();
        }
    }
}

impl Drop for Workers {
    /// The threads end once their loop has dropped its tasks; nobody waits for them.
    fn drop(&mut self) {
        for w in &self.workers {
            w.shared.stop();
        }
    }
}

#[cfg(test)]
mod loop_tests;

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
        let one = Workers::start(1).expect("one worker");
        assert_eq!(one.sessions(), [0], "workers: 1 is one worker thread");
        assert!(one.pick().is_some());
        assert!(Workers::none().pick().is_none(), "without workers, sessions run on the main runtime");
    }
}
