//! `query_timeout` (PgBouncer's): a watchdog that cancels, on its server, a statement that has been running longer
//! than the limit. It looks at every client's statement in flight a few times a second (`WATCH_PERIOD`); a statement
//! is known by its number in its client's `RunningCell`, so one seen running at two looks `query_timeout` apart gets
//! a CancelRequest, sent while the session cannot move on to its next statement (as a client's own cancel). The
//! client gets the server's 57014 and its session goes on. A statement still running a `query_timeout` after each of
//! `CANCELS_BEFORE_CLOSE` cancels (a server that ignores them, or that they do not reach) has its server connection
//! closed, as PgBouncer does at once: the client sees the connection lost (08006), and the pool opens another. The
//! data path pays one counter increment per statement.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::App;
use crate::cancel::CancelSlot;

/// How often the watchdog looks: a statement is cancelled between `query_timeout` and this much later.
pub const WATCH_PERIOD: Duration = Duration::from_millis(250);

/// Cancels a statement past `query_timeout` gets before its server connection is closed instead.
pub const CANCELS_BEFORE_CLOSE: u32 = 2;

/// What the watchdog saw at its last look: per client's slot (held, so that its address names no other client while
/// it is here), the statement's number, when it was first seen running or last sent a cancel, and how many cancels
/// it was sent.
#[derive(Default)]
pub struct QueryWatch {
    seen: HashMap<usize, (Arc<CancelSlot>, u64, Instant, u32)>,
}

impl App {
    /// One look of the `query_timeout` watchdog (none configured: nothing to do). A statement past the limit gets a
    /// CancelRequest, and another each further `query_timeout` while it still runs (a cancel the server did not get,
    /// a server that does not answer), up to `CANCELS_BEFORE_CLOSE`; a limit later its server connection is closed.
    pub fn watch_queries(self: &Arc<Self>, watch: &mut QueryWatch) {
        let Some(limit) = self.config().limits.query_timeout else {
            watch.seen.clear();
            return;
        };
        let now = Instant::now();
        let mut seen = HashMap::with_capacity(watch.seen.len());
        for (pid, slot) in self.cancels.all() {
            let Some(number) = slot.running.statement() else { continue };
            let id = Arc::as_ptr(&slot) as usize;
            let seen_before = watch.seen.get(&id).filter(|(_, n, _, _)| *n == number);
            let (mut since, mut cancels) = seen_before.map_or((now, 0), |(_, _, since, cancels)| (*since, *cancels));
            if now.duration_since(since) >= limit {
                since = now;
                cancels += 1;
                let (app, slot) = (self.clone(), slot.clone());
                tokio::spawn(async move {
                    // Only that statement: one that ended meanwhile is not followed by a cancel of the next.
                    let Some(delivering) = slot.running.begin_cancel_of(number) else { return };
                    let r = delivering.running;
                    let target = app.backend(r.target).name();
                    if cancels > CANCELS_BEFORE_CLOSE {
                        if app.close_server_of(r.target, r.key) {
                            tracing::warn!(pid, target, ?limit, "server connection closed: query_timeout, cancels unanswered");
                        }
                    } else if app.cancel_on_server(r.target, r.key).await {
                        tracing::warn!(pid, target, ?limit, "statement cancelled: query_timeout");
                    }
                    drop(delivering);
                });
            }
            seen.insert(id, (slot, number, since, cancels));
        }
        watch.seen = seen;
    }
}

impl App {
    /// Closes the connection with BackendKeyData `key` of `target`'s pool, or of a pool `any_database` made (the
    /// key, process id and secret, names one connection on one server).
    fn close_server_of(&self, target: crate::router::TargetId, key: (i32, i32)) -> bool {
        self.backend(target).shut_down_server(key) || self.database_pools().iter().any(|(_, pool)| pool.shut_down_server(key))
    }
}

/// `client_idle_timeout` and `idle_transaction_timeout` in milliseconds (0: off), read by every session before each
/// wait for its client: two relaxed loads, no lock. Set at start and by each reload.
#[derive(Default)]
pub struct IdleLimits {
    client_idle_ms: AtomicU64,
    idle_transaction_ms: AtomicU64,
}

impl IdleLimits {
    /// Takes the configured limits.
    pub fn store(&self, limits: &crate::config::Limits) {
        self.client_idle_ms.store(millis(limits.client_idle_timeout), Ordering::Relaxed);
        self.idle_transaction_ms.store(millis(limits.idle_transaction_timeout), Ordering::Relaxed);
    }

    /// The limit on a session's wait for its client: `client_idle_timeout` at rest, `idle_transaction_timeout` in a
    /// transaction (one relaxed load).
    #[inline]
    pub fn of(&self, at_rest: bool) -> Option<Duration> {
        let ms = if at_rest { &self.client_idle_ms } else { &self.idle_transaction_ms };
        duration(ms.load(Ordering::Relaxed))
    }
}

/// A limit in whole milliseconds, at least 1 when on; 0 when off.
fn millis(d: Option<Duration>) -> u64 {
    d.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1))
}

fn duration(ms: u64) -> Option<Duration> {
    (ms != 0).then(|| Duration::from_millis(ms))
}
