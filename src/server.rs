//! The accept loop and the client limits: one task per connection, separate budgets for connections still logging
//! in and for logged-in clients, a 53300 for a client over either, and stop on shutdown.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::worker::{Shared, Socket as TcpStream, Workers};

/// How long a new connection that found the login budget full waits for a slot freed by evicting a silent one.
const EVICTION_WAIT: Duration = Duration::from_secs(1);

/// How long the tasks ended when the shutdown grace is over may take to drop their sessions (a poll each).
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// The connection tasks, for shutdown. Waiting is mini-redis's dropped sender: every task holds a clone of `alive`
/// until it ends, so once the original is dropped `ended` yields `None` exactly when the last task has ended — no
/// polling. The task handles are kept only to end the tasks still running when the grace is over.
pub struct Sessions {
    /// The original sender, cloned into each task; dropped when the shutdown starts waiting. Never sent on.
    alive: Option<mpsc::Sender<()>>,
    /// Yields `None` once `alive` and every clone of it are dropped.
    ended: mpsc::Receiver<()>,
    /// The tasks' handles; finished ones are reaped at each spawn, so the set holds about the running tasks.
    tasks: JoinSet<()>,
}

/// A connection task's clone of the shutdown sender: the task is alive while it holds it (only dropping it counts).
pub struct Alive {
    _sender: Option<mpsc::Sender<()>>,
}

impl Default for Sessions {
    fn default() -> Sessions {
        let (alive, ended) = mpsc::channel(1);
        Sessions { alive: Some(alive), ended, tasks: JoinSet::new() }
    }
}

impl Sessions {
    /// Spawns a connection task that holds a clone of the sender until it ends.
    #[cfg(test)]
    fn spawn(&mut self, work: impl Future<Output = ()> + Send + 'static) {
        self.spawn_holding(None, |alive| async move {
            work.await;
            drop(alive);
        });
    }

    /// Spawns the task `work` makes from a clone of the sender, which it must hold until it ends (taken by the
    /// task's own future rather than by a wrapper around it: one poll level less on every wake-up of a session).
    /// The task runs on `worker`'s loop (ended by `Workers::abort_all`), or on the caller's runtime for `None`.
    fn spawn_holding<F: Future<Output = ()> + Send + 'static>(&mut self, worker: Option<&Shared>, work: impl FnOnce(Alive) -> F) {
        while self.tasks.try_join_next().is_some() {}
        let task = work(Alive { _sender: self.alive.clone() });
        match worker {
            Some(worker) => worker.spawn(task),
            None => {
                self.tasks.spawn(task);
            }
        }
    }

    /// Drops the original sender and waits up to `grace` for every task to end; whether they all did.
    pub async fn ended_within(&mut self, grace: Duration) -> bool {
        self.alive = None;
        tokio::time::timeout(grace, self.ended.recv()).await.is_ok()
    }

    /// Ends the tasks still running (each drops its session, closing its client socket and giving up its server
    /// connections) and waits, at most `CLOSE_WAIT`, until they have.
    pub async fn close_the_rest(mut self, workers: &Workers) {
        self.alive = None;
        self.tasks.abort_all();
        workers.abort_all();
        let _ = tokio::time::timeout(CLOSE_WAIT, self.ended.recv()).await;
    }
}

/// The client budgets, fixed at start (SPEC §7): connections that have not authenticated are counted apart from
/// logged-in clients, so anonymous connections can neither hold the slots of real clients nor grow without bound.
pub struct Limits {
    /// Connections between accept and the end of authentication (`max_login_conn`).
    logins: Arc<Semaphore>,
    /// Logged-in clients, admin console included (`max_client_conn`, PgBouncer's name).
    clients: Arc<Semaphore>,
    /// Connections logging in that have not sent a byte yet, oldest first, each with its login slot: when the login
    /// budget is full, a new connection evicts the oldest of them and takes its slot at once, so silent connects
    /// cannot lock real clients out of logging in (however late the evicted one's task runs).
    silent: Mutex<VecDeque<(u64, CancellationToken, LoginSlot)>>,
    /// Next id for `silent`.
    next_id: std::sync::atomic::AtomicU64,
}

impl Limits {
    /// Budgets from the configuration in force at start.
    pub fn new(max_login_conn: usize, max_client_conn: usize) -> Limits {
        Limits {
            logins: Arc::new(Semaphore::new(max_login_conn)),
            clients: Arc::new(Semaphore::new(max_client_conn)),
            silent: Mutex::new(VecDeque::new()),
            next_id: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A slot in the login budget: free at once, or the slot of the oldest silent connection, taken from it as it
    /// is evicted; `None` when every connection logging in is talking (the new one is refused with 53300).
    pub async fn login_slot(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.logins.clone().try_acquire_owned() {
            return Some(p);
        }
        let victim = self.silent.lock().ok().and_then(|mut q| q.pop_front());
        let (_, token, slot) = victim?;
        let taken = slot.lock().ok().and_then(|mut s| s.take());
        token.cancel();
        match taken {
            Some(p) => Some(p),
            // Its slot was gone already (it cannot be, while it is listed): wait for one to come free.
            None => tokio::time::timeout(EVICTION_WAIT, self.logins.clone().acquire_owned()).await.ok()?.ok(),
        }
    }

    /// Registers a connection that has sent nothing yet, with its login slot, until the guard is dropped (at its
    /// first bytes, or when it ends); the guard's token fires if it is evicted (its slot is then taken).
    pub fn silent(&self, slot: &LoginSlot) -> Silent<'_> {
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let evicted = CancellationToken::new();
        if let Ok(mut q) = self.silent.lock() {
            q.push_back((id, evicted.clone(), slot.clone()));
        }
        Silent { limits: self, id, evicted }
    }

    /// A logged-in client's slot, or `None` when `max_client_conn` clients are logged in.
    pub fn client_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.clients.clone().try_acquire_owned().ok()
    }
}

/// A connection's slot in the login budget while it logs in, where an eviction takes it from (`Limits::login_slot`).
pub type LoginSlot = Arc<Mutex<Option<OwnedSemaphorePermit>>>;

/// A connection on the silent list (`Limits::silent`); leaves it when dropped.
pub struct Silent<'a> {
    /// Whose list.
    limits: &'a Limits,
    /// Its entry.
    id: u64,
    /// Fires when a new connection evicts this one.
    pub evicted: CancellationToken,
}

impl Drop for Silent<'_> {
    fn drop(&mut self) {
        if let Ok(mut q) = self.limits.silent.lock() {
            if let Some(i) = q.iter().position(|(x, _, _)| *x == self.id) {
                q.remove(i);
            }
        }
    }
}

/// Where clients connect: the TCP listener (`listen`) and, with `unix_socket_dir`, the Unix-domain socket (its
/// file is removed when this is dropped, as the accept loop ends).
pub struct Listeners {
    pub tcp: TcpListener,
    pub unix: Option<crate::net::UnixListener>,
}

impl From<TcpListener> for Listeners {
    fn from(tcp: TcpListener) -> Listeners {
        Listeners { tcp, unix: None }
    }
}

impl Listeners {
    /// Adds the Unix-domain socket `unix_socket_dir` names, at the TCP listener's port, when it is set; the error
    /// names the socket.
    pub fn add_unix(&mut self, limits: &crate::config::Limits) -> Result<(), (String, std::io::Error)> {
        let Some(dir) = &limits.unix_socket_dir else {
            return Ok(());
        };
        let port = self.tcp.local_addr().map(|a| a.port()).map_err(|e| (dir.clone(), e))?;
        let unix = crate::net::bind_unix(dir, port, limits.listen_backlog, limits.unix_socket_mode, limits.so_reuseport)
            .map_err(|e| (crate::net::unix_socket_path(dir, port), e))?;
        self.unix = Some(unix);
        Ok(())
    }

    /// The Unix-domain socket's name, if there is one.
    pub fn unix_name(&self) -> Option<&str> {
        self.unix.as_ref().map(|u| &**u.name())
    }
}

/// A connection just accepted, on either listener (a Unix-domain one with its listener's name).
enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream, Arc<str>),
}

impl Listeners {
    /// The next connection, on whichever listener has one.
    async fn accept(&self) -> std::io::Result<Accepted> {
        let tcp = async { self.tcp.accept().await.map(|(tcp, _)| Accepted::Tcp(tcp)) };
        match &self.unix {
            None => tcp.await,
            Some(unix) => tokio::select! {
                r = tcp => r,
                r = unix.accept() => r.map(|u| Accepted::Unix(u, unix.name().clone())),
            },
        }
    }
}

impl Accepted {
    /// The socket, left on this runtime's reactor, or out of it for a worker's loop to take (deregistered here,
    /// registered there when the task first reads it).
    fn into_socket(self, to_worker: bool) -> std::io::Result<(TcpStream, Option<Arc<str>>)> {
        Ok(match (self, to_worker) {
            (Accepted::Tcp(t), false) => (TcpStream::from(t), None),
            (Accepted::Unix(u, name), false) => (TcpStream::from(u), Some(name)),
            (Accepted::Tcp(t), true) => (TcpStream::from(t.into_std()?), None),
            (Accepted::Unix(u, name), true) => (TcpStream::from(u.into_std()?), Some(name)),
        })
    }
}

/// Serves clients from `listeners` until `shutdown` is cancelled. Sessions already running go on, as tasks of
/// `sessions`; the caller decides how long to wait for them. Every connection is accepted (none waits silently in
/// the listen backlog) and gets a task; one over the budgets is told 53300 and closed.
pub async fn run(listeners: Listeners, app: Arc<App>, shutdown: CancellationToken, sessions: &mut Sessions, workers: &Workers) {
    let config = app.config();
    let limits = Arc::new(Limits::new(config.max_login_conn, config.max_client_conn));
    drop(config);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listeners.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (app, limits) = (app.clone(), limits.clone());
        let worker = workers.pick();
        let (tcp, unix) = match accepted.into_socket(worker.is_some()) {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand an accepted connection to a worker");
                continue;
            }
        };
        let Some((worker, placed)) = worker else {
            sessions.spawn_holding(None, move |alive| async move {
                let _alive = alive;
                connection(tcp, unix, app, limits).await;
            });
            continue;
        };
        sessions.spawn_holding(Some(worker), move |alive| async move {
            let (_alive, _placed) = (alive, placed);
            connection(tcp, unix, app, limits).await;
        });
    }
}

/// One accepted connection (`unix`: the name of the Unix-domain socket it came in by): a session, or 53300 when the
/// login budget is full.
async fn connection(tcp: TcpStream, unix: Option<Arc<str>>, app: Arc<App>, limits: Arc<Limits>) {
    match limits.login_slot().await {
        Some(login) => crate::session::serve(tcp, unix, app, &limits, login).await,
        None => refuse_over_login_budget(tcp, &app).await,
    }
}

/// A connection over the login budget: PostgreSQL's 53300, at once, before anything is read.
async fn refuse_over_login_budget(mut tcp: TcpStream, app: &App) {
    use tokio::io::AsyncWriteExt;
    let e = crate::session::errors::too_many_logins();
    let mut buf = bytes::BytesMut::new();
    e.encode(&mut buf);
    let _ = tokio::time::timeout(Duration::from_secs(1), tcp.write_all(&buf)).await;
    app.metrics().startup_refused(e.code);
    tracing::info!(peer = ?tcp.peer_addr().ok(), "connection refused: max_login_conn reached");
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    use super::*;

    /// Sets its flag when dropped: tells that a task's future was dropped.
    struct Dropped(Arc<AtomicBool>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// The login budget full of silent connections whose tasks may run late (a loaded machine): a new connection
    /// takes the oldest one's slot as it evicts it, without waiting for that task to end.
    #[tokio::test]
    async fn an_eviction_takes_the_silent_connections_slot_at_once() {
        let limits = Limits::new(1, 10);
        let first = limits.login_slot().await.expect("a free slot");
        let slot: LoginSlot = Arc::new(Mutex::new(Some(first)));
        let silent = limits.silent(&slot);
        // The silent connection's task never runs again here: its slot is taken all the same.
        let second = tokio::time::timeout(Duration::from_millis(100), limits.login_slot()).await;
        assert!(matches!(second, Ok(Some(_))), "a slot at once");
        assert!(silent.evicted.is_cancelled());
        assert!(slot.lock().map(|s| s.is_none()).unwrap_or(false), "the evicted connection holds no slot");
        // Nobody silent is left: the next connection is refused at once.
        assert!(limits.login_slot().await.is_none());
    }

    #[tokio::test]
    async fn shutdown_returns_when_the_last_task_ends_without_waiting_out_the_grace() {
        let mut sessions = Sessions::default();
        for ms in [10, 30, 60] {
            sessions.spawn(tokio::time::sleep(Duration::from_millis(ms)));
        }
        let started = Instant::now();
        assert!(sessions.ended_within(Duration::from_secs(30)).await);
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_task_still_running_after_the_grace_is_ended() {
        let mut sessions = Sessions::default();
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = Dropped(dropped.clone());
        sessions.spawn(async move {
            let _flag = flag;
            std::future::pending::<()>().await;
        });
        assert!(!sessions.ended_within(Duration::from_millis(50)).await);
        assert!(!dropped.load(Ordering::SeqCst));
        sessions.close_the_rest(&Workers::none()).await;
        assert!(dropped.load(Ordering::SeqCst), "the task's future (its session) was dropped");
    }

    #[tokio::test]
    async fn finished_tasks_are_reaped_at_the_next_spawn() {
        let mut sessions = Sessions::default();
        for _ in 0..100 {
            sessions.spawn(async {});
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        sessions.spawn(std::future::pending());
        assert_eq!(sessions.tasks.len(), 1);
    }
}
