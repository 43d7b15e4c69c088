//! Every server connection pgsplit holds, listed for the admin console (`SHOW SERVERS`, PgBouncer's columns) and
//! reachable by it: `RECONNECT` marks them to close when they come back, `KILL` shuts their sockets at once.
//!
//! A connection registers when it has logged in (`ServerConn::connect`) and leaves when it is dropped. The registry
//! keeps its own duplicate of the socket's descriptor, so `kill` shuts that socket whatever became of the
//! connection's descriptor meanwhile: never another socket that took its number.

use crate::locks::lock;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

/// What the console shows of one server connection.
#[derive(Debug)]
pub struct ServerInfo {
    /// A number unique in this process (PgBouncer's `ptr`).
    pub id: u64,
    /// What the connection told the registry.
    pub details: Details,
    /// When it logged in.
    pub connect_time: SystemTime,
    /// Lent to a client now (PgBouncer's `active`), else idle.
    pub active: AtomicBool,
    /// The pool's generation when it was opened: older than the pool's (`RECONNECT`, `KILL`) means it closes when
    /// it comes back (PgBouncer's `close_needed`).
    pub generation: u64,
    /// When it was last lent, in microseconds after `EPOCH` (an Instant the checkout has read anyway).
    lent_us: AtomicU64,
}

/// One pool's registry: its connections open now, by id, and its generation.
#[derive(Debug, Default)]
pub struct Servers {
    open: Mutex<HashMap<u64, Arc<ServerInfo>>>,
    /// Moves on at `RECONNECT` and `KILL`: connections opened before close instead of going back idle.
    generation: AtomicU64,
}

/// The origin of `ServerInfo::lent_us`.
static EPOCH: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

/// Ids of server connections.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A connection's place in the registry; dropping it leaves.
pub struct Registration {
    servers: Arc<Servers>,
    /// What the console shows of it.
    pub info: Arc<ServerInfo>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.servers.open).remove(&self.info.id);
    }
}

/// The parts of `ServerInfo` the connection knows when it registers.
#[derive(Debug)]
pub struct Details {
    /// Login role (the role taken at login, if one is).
    pub user: String,
    /// The login's number in its pool.
    pub login: super::LoginId,
    /// Database on the server.
    pub database: String,
    /// Pool name.
    pub pool: String,
    /// Server host.
    pub addr: String,
    /// Server port.
    pub port: u16,
    /// Local address.
    pub local: Option<std::net::SocketAddr>,
    /// Server process id.
    pub remote_pid: i32,
    /// The secret of its BackendKeyData: with the process id, names this connection and no other (a process id
    /// alone may be a dead connection's, reused).
    pub remote_secret: i32,
    /// TLS version, or empty.
    pub tls: String,
    /// A duplicate of the socket's descriptor, owned by the registry (`kill`).
    pub fd: Option<OwnedFd>,
}

/// Ends a registered connection's traffic for whoever uses it.
fn shut(fd: &OwnedFd) {
    // SAFETY: `fd` is a descriptor the registry owns (a duplicate of the connection's socket), open as long as its
    // entry lives; shutdown(2) ends the socket's traffic for every descriptor of it, and closes nothing.
    unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) };
}

impl Servers {
    /// Adds a connection that has just logged in.
    pub fn register(self: &Arc<Self>, d: Details) -> Registration {
        let info = Arc::new(ServerInfo {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            details: d,
            connect_time: SystemTime::now(),
            active: AtomicBool::new(false),
            lent_us: AtomicU64::new(0),
            generation: self.generation(),
        });
        lock(&self.open).insert(info.id, info.clone());
        Registration { servers: self.clone(), info }
    }

    /// The connections open now, oldest first.
    pub fn list(&self) -> Vec<Arc<ServerInfo>> {
        let mut all: Vec<_> = lock(&self.open).values().cloned().collect();
        all.sort_by_key(|s| s.id);
        all
    }

    /// The pool's generation now.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Moves the generation on (`RECONNECT`): every connection open now closes when it comes back.
    pub fn next_generation(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// Shuts the sockets of the pool's connections of an older generation (`KILL`, after `next_generation`):
    /// whoever uses one sees it closed at its next read or write, as when the server goes away. Returns how many.
    pub fn kill(&self) -> usize {
        let generation = self.generation();
        let open = lock(&self.open);
        let mut n = 0;
        for s in open.values().filter(|s| s.generation < generation) {
            let Some(fd) = &s.details.fd else { continue };
            shut(fd);
            n += 1;
        }
        n
    }

    /// Shuts the socket of the connection with BackendKeyData `key` (a statement `query_timeout`'s cancels did not
    /// end): its user sees it closed, as after KILL. Whether there was such a connection.
    pub fn shut_down(&self, (pid, secret): (i32, i32)) -> bool {
        let open = lock(&self.open);
        let found = open.values().find(|s| s.details.remote_pid == pid && s.details.remote_secret == secret);
        match found.and_then(|s| s.details.fd.as_ref()) {
            Some(fd) => {
                shut(fd);
                true
            }
            None => false,
        }
    }

    /// Whether a connection of an older generation is still open (`WAIT_CLOSE`).
    pub fn any_older(&self) -> bool {
        let generation = self.generation();
        lock(&self.open).values().any(|s| s.generation < generation)
    }
}

impl ServerInfo {
    /// The connection is lent to a client at `now`.
    #[inline]
    pub fn lent(&self, now: Instant) {
        self.active.store(true, Ordering::Relaxed);
        let us = now.saturating_duration_since(*EPOCH).as_micros();
        self.lent_us.store(u64::try_from(us).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The connection is back idle.
    #[inline]
    pub fn back(&self) {
        self.active.store(false, Ordering::Relaxed);
    }

    /// When it was last lent (its connect time if never).
    pub fn request_time(&self) -> SystemTime {
        let us = self.lent_us.load(Ordering::Relaxed);
        if us == 0 {
            return self.connect_time;
        }
        let ago = Instant::now().saturating_duration_since(*EPOCH + std::time::Duration::from_micros(us));
        SystemTime::now().checked_sub(ago).unwrap_or(self.connect_time)
    }
}
