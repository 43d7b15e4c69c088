//! Cancel requests (SPEC §4 "Cancel"): each client gets pgsplit's own key; a CancelRequest with it is forwarded to
//! the server running that client's statement — only while it runs there — and a client waiting for a server
//! connection stops waiting. Unknown keys are ignored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rand::Rng;
use tokio::sync::Notify;

use crate::locks::lock;
use crate::router::TargetId;

/// A statement in flight on a server connection: where to send its cancel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Running {
    /// The target whose server runs it.
    pub target: TargetId,
    /// That server connection's BackendKeyData (process id, secret).
    pub key: (i32, i32),
}

/// A client's statement in flight and the cancels being delivered to it. A cancel reads the statement and counts
/// itself as delivering (`begin_cancel`); the session, before it changes the statement (a new one, or none when
/// the connection goes back), waits while any cancel is being delivered, so a late cancel can never reach a
/// statement of another client. No lock is held across an await: the session's path with no cancel is one
/// uncontended lock (a tokio Mutex there cost ~600 instructions per transaction, `benches/callgrind.sh`).
#[derive(Debug, Default)]
pub struct RunningCell {
    /// The statement, and how many cancels are being delivered to it.
    state: Mutex<(Option<Running>, u32, u64)>,
    /// Wakes a session waiting for deliveries to end.
    delivered: Notify,
}

/// A client's statement as the admin console sees it (`RunningCell::peek`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InFlight {
    /// No statement runs.
    Nothing,
    /// This one runs.
    Running(Running),
    /// A cancel is being delivered to it.
    Cancelling,
}

/// A cancel being delivered (`RunningCell::begin_cancel`); its end is counted when dropped, delivered or not.
pub struct Delivering<'a> {
    cell: &'a RunningCell,
    /// The statement the cancel is for.
    pub running: Running,
}

impl Drop for Delivering<'_> {
    fn drop(&mut self) {
        {
            let mut state = lock(&self.cell.state);
            state.1 = state.1.saturating_sub(1);
        }
        self.cell.delivered.notify_waiters();
    }
}

impl RunningCell {
    /// Sets the statement in flight once no cancel is being delivered.
    pub async fn set(&self, running: Option<Running>) {
        loop {
            if self.try_set(running) {
                return;
            }
            // Made before the second look: a delivery ending in between still wakes it.
            let delivered = self.delivered.notified();
            if self.try_set(running) {
                return;
            }
            delivered.await;
        }
    }

    /// Sets the statement in flight unless a cancel is being delivered (then `set` waits for it).
    #[inline]
    pub fn try_set(&self, running: Option<Running>) -> bool {
        let mut state = lock(&self.state);
        if state.1 > 0 {
            return false;
        }
        state.0 = running;
        if running.is_some() {
            state.2 = state.2.wrapping_add(1);
        }
        true
    }

    /// The number of the statement in flight (each statement set gets the next), `None` when none runs: two looks
    /// that see the same number saw the same statement (`query_timeout`'s watchdog).
    pub fn statement(&self) -> Option<u64> {
        let state = lock(&self.state);
        state.0.map(|_| state.2)
    }

    /// `begin_cancel`, only while statement number `number` is the one in flight.
    pub fn begin_cancel_of(&self, number: u64) -> Option<Delivering<'_>> {
        let mut state = lock(&self.state);
        if state.2 != number {
            return None;
        }
        let running = state.0?;
        state.1 += 1;
        Some(Delivering { cell: self, running })
    }

    /// The statement in flight, counted as being delivered a cancel until the guard is dropped; `None` when no
    /// statement runs.
    pub fn begin_cancel(&self) -> Option<Delivering<'_>> {
        let mut state = lock(&self.state);
        let running = state.0?;
        state.1 += 1;
        Some(Delivering { cell: self, running })
    }

    /// What the admin console's SHOW CLIENTS shows of the statement.
    pub fn peek(&self) -> InFlight {
        let state = lock(&self.state);
        match state.0 {
            _ if state.1 > 0 => InFlight::Cancelling,
            Some(r) => InFlight::Running(r),
            None => InFlight::Nothing,
        }
    }
}

/// One client's cancel state.
#[derive(Debug)]
pub struct CancelSlot {
    /// The statement in flight, if any, and the cancels being delivered to it (`RunningCell`).
    pub running: RunningCell,
    /// Wakes the session if it is waiting for a server connection when the cancel arrives.
    pub waiting: Notify,
    /// Wakes the session, if it waits for its client, when pgsplit starts draining (`App::is_draining`); a busy
    /// session sees the flag when it next waits.
    pub drain: atomic_waker::AtomicWaker,
    /// Who the client is, for the admin console's SHOW CLIENTS (set once it has logged in).
    pub info: std::sync::OnceLock<ClientInfo>,
}

/// A logged-in client, as the admin console shows it.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// Role.
    pub user: String,
    /// Database it connected to (the logical one, a target's name, or `pgsplit`).
    pub database: String,
    /// Address and port.
    pub peer: String,
    /// Over TLS.
    pub tls: bool,
    /// When it logged in.
    pub since: std::time::SystemTime,
    /// The peer's address, when the socket knew it.
    pub peer_addr: Option<std::net::SocketAddr>,
    /// pgsplit's end of the socket.
    pub local_addr: Option<std::net::SocketAddr>,
    /// For a client of the Unix-domain socket, its name (`/tmp/.s.PGSQL.6432`).
    pub unix_socket: Option<String>,
    /// The TLS version (`TLSv1.3`), empty when plain.
    pub tls_version: String,
    /// The `application_name` of its startup packet.
    pub application_name: String,
}

/// The process id and secret pgsplit gave a client, with its slot.
#[derive(Debug, Clone)]
pub struct ClientKey {
    /// Process id in BackendKeyData.
    pub pid: i32,
    /// Secret in BackendKeyData.
    pub secret: i32,
    /// Shared with the registry.
    pub slot: Arc<CancelSlot>,
}

/// Every connected client's cancel slot, by the process id and secret it was given.
#[derive(Debug, Default)]
pub struct CancelRegistry {
    /// (pid, secret) → slot. A session-pooled client is given its backend's real key, and two targets' backends
    /// may share a process id: the secret tells them apart.
    slots: Mutex<HashMap<(i32, i32), Arc<CancelSlot>>>,
}

impl CancelRegistry {
    /// A fresh, unique key for a new client.
    pub fn register(&self) -> ClientKey {
        let mut rng = rand::rng();
        loop {
            let (pid, secret) = (rng.random_range(1..i32::MAX), rng.random::<i32>());
            if let Some(key) = self.register_as(pid, secret) {
                return key;
            }
        }
    }

    /// A client given the key of a server backend (session pooling: the real process id and secret, so that
    /// `pg_backend_pid()` and a NOTIFY's sender match it); `None` if that key is taken already.
    pub fn register_as(&self, pid: i32, secret: i32) -> Option<ClientKey> {
        let slot = Arc::new(CancelSlot {
            running: RunningCell::default(),
            waiting: Notify::new(),
            drain: Default::default(),
            info: Default::default(),
        });
        match lock(&self.slots).entry((pid, secret)) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(slot.clone());
                Some(ClientKey { pid, secret, slot })
            }
            std::collections::hash_map::Entry::Occupied(_) => None,
        }
    }

    /// Forgets a client that disconnected.
    pub fn unregister(&self, key: &ClientKey) {
        lock(&self.slots).remove(&(key.pid, key.secret));
    }

    /// The slot for a CancelRequest, if the key is known and the secret matches.
    pub fn find(&self, pid: i32, secret: i32) -> Option<Arc<CancelSlot>> {
        lock(&self.slots).get(&(pid, secret)).cloned()
    }

    /// Every registered client's process id and slot, by process id.
    pub fn all(&self) -> Vec<(i32, Arc<CancelSlot>)> {
        let mut all: Vec<_> = lock(&self.slots).iter().map(|((pid, _), s)| (*pid, s.clone())).collect();
        all.sort_by_key(|(pid, _)| *pid);
        all
    }

    /// Number of registered clients.
    pub fn len(&self) -> usize {
        lock(&self.slots).len()
    }

    /// Whether no client is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_need_the_right_secret() {
        let r = CancelRegistry::default();
        let a = r.register();
        let b = r.register();
        assert_ne!(a.pid, b.pid);
        assert!(r.find(a.pid, a.secret).is_some());
        assert!(r.find(a.pid, a.secret.wrapping_add(1)).is_none());
        r.unregister(&a);
        assert!(r.find(a.pid, a.secret).is_none());
        assert_eq!(r.len(), 1);
        // A backend's real key; the same process id on another server, with another secret, is another client.
        let real = r.register_as(4242, 7).expect("free");
        assert!(r.register_as(4242, 7).is_none());
        let other = r.register_as(4242, 8).expect("another secret");
        assert!(std::sync::Arc::ptr_eq(&r.find(4242, 7).unwrap(), &real.slot));
        assert!(std::sync::Arc::ptr_eq(&r.find(4242, 8).unwrap(), &other.slot));
    }

    #[tokio::test]
    async fn a_statement_cannot_change_while_a_cancel_is_delivered_to_it() {
        let cell = std::sync::Arc::new(RunningCell::default());
        assert!(cell.begin_cancel().is_none(), "nothing runs: nothing to cancel");
        let first = Running { target: 0, key: (11, 12) };
        cell.set(Some(first)).await;
        let delivering = cell.begin_cancel().expect("the statement in flight");
        assert_eq!(delivering.running, first);
        assert_eq!(cell.peek(), InFlight::Cancelling, "SHOW CLIENTS sees the delivery");
        // The session's next change waits for the delivery.
        let waiter = {
            let cell = cell.clone();
            tokio::spawn(async move { cell.set(None).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "the statement changed while its cancel was being delivered");
        drop(delivering);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.expect("released").expect("joined");
        assert_eq!(cell.peek(), InFlight::Nothing);
    }
}
