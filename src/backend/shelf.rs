//! A target's server connections not in use, and the loan of one to a client (`PooledConn`). pgsplit's own pool:
//! it replaced bb8, which pgsplit had wrapped with its own queue (`Backend::turns`), pause and resize, and whose
//! mutex, statistics and connector tasks were cost without use (`docs/event-loop.md`, step 2).
//!
//! Every connection open, idle or lent, counts in `open`. Each lent connection holds a client's turn (one of
//! `max`), and a connection is opened only by a turn's holder when none is idle, so `open` never exceeds `max`.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::turns::Turns;
use super::{LoginId, ServerConn};
use crate::locks::lock;

/// The idle connections of one target, and the counts the pool is bounded by.
pub(super) struct Shelf {
    /// Idle connections, one stack per worker thread (`worker::stack_of`): a connection goes back on the stack of
    /// the worker that returns it, and a worker takes from its own stack first, then from the others'. Each stack
    /// holds the most recently returned last (taken first: warm server caches, as PgBouncer), each with the moment
    /// it was returned. The lock of a stack is only contended when a worker takes from another's.
    idle: Box<[Mutex<Stack>]>,
    /// Connections open: idle and lent.
    pub(super) open: AtomicU32,
    /// The pool's `max` now (a reload may lower it).
    pub(super) max: AtomicU32,
    /// A reload lowered `max`: a connection returned while more than `max` are open is closed.
    pub(super) shrunk: AtomicBool,
    /// Connections are closed once this old (when returned, or by `reap` while idle).
    max_lifetime: Option<Duration>,
    /// Idle connections are closed after this (`reap`).
    idle_timeout: Option<Duration>,
    /// One turn per connection of `max`: clients wait their turn here, first come, first served.
    pub(super) turns: Turns,
    /// The pool's registry of connections: one of an older generation (`RECONNECT`) is closed when it comes back.
    servers: std::sync::Arc<super::servers::Servers>,
}

impl Shelf {
    pub(super) fn new(
        max: u32,
        max_lifetime: Option<Duration>,
        idle_timeout: Option<Duration>,
        workers: usize,
        servers: std::sync::Arc<super::servers::Servers>,
    ) -> Shelf {
        Shelf {
            idle: (0..workers.max(1)).map(|_| Mutex::new(Vec::new())).collect(),
            open: AtomicU32::new(0),
            max: AtomicU32::new(max),
            shrunk: AtomicBool::new(false),
            max_lifetime,
            idle_timeout,
            turns: Turns::new(max as usize),
            servers,
        }
    }

    /// The most recently returned idle connection of `login` (any login: `None`) of the calling worker's stack,
    /// else of another worker's (it must then be moved, `ServerConn::rehome`).
    #[inline]
    pub(super) fn take(&self, login: Option<LoginId>) -> Option<Box<ServerConn>> {
        let mine = self.mine();
        if let Some(conn) = self.idle.get(mine).and_then(|s| pop_login(&mut lock(s), login)) {
            return Some(conn);
        }
        let n = self.idle.len();
        (1..n).find_map(|i| self.idle.get((mine + i) % n).and_then(|s| pop_login(&mut lock(s), login)))
    }

    /// Takes the least recently returned idle connection of a login other than `login` off the shelf (still counted
    /// open: the caller closes it, `close`), to make room for one of `login` within `max` (the budget is the
    /// target's, whatever the logins).
    pub(super) fn take_other(&self, login: LoginId) -> Option<Box<ServerConn>> {
        let oldest = self
            .idle
            .iter()
            .enumerate()
            .filter_map(|(k, s)| {
                let s = lock(s);
                let i = s.iter().position(|(c, _)| c.login_id() != login)?;
                s.get(i).map(|(_, at)| (*at, k, i))
            })
            .min_by_key(|(at, _, _)| *at);
        let (_, stack, i) = oldest?;
        self.idle.get(stack).and_then(|s| {
            let mut s = lock(s);
            (i < s.len() && s.get(i).is_some_and(|(c, _)| c.login_id() != login)).then(|| s.remove(i).0)
        })
    }

    /// The calling worker's stack.
    #[inline]
    fn mine(&self) -> usize {
        crate::worker::stack_of(crate::worker::here(), self.idle.len())
    }

    /// Pushes a connection on the calling worker's stack.
    #[inline]
    fn push(&self, conn: Box<ServerConn>, now: Instant) {
        if let Some(stack) = self.idle.get(self.mine()) {
            lock(stack).push((conn, now));
        }
    }

    /// A connection comes back: kept idle if it may serve another client, else closed.
    #[inline]
    pub(super) fn put_back(&self, conn: Box<ServerConn>, now: Instant) {
        let over = self.shrunk.load(Ordering::Relaxed) && self.open.load(Ordering::Relaxed) > self.max.load(Ordering::Relaxed);
        if let Some(info) = conn.info() {
            info.back();
        }
        if conn.reusable() && !over && !self.expired(&conn, now) {
            self.push(conn, now);
        } else {
            self.close(conn);
        }
    }

    /// A connection just opened joins the idle ones; refused (closed) when `max` are open already.
    pub(super) fn add_idle(&self, conn: Box<ServerConn>) -> bool {
        let max = self.max.load(Ordering::Relaxed);
        if self.open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).is_err() {
            return false;
        }
        self.push(conn, Instant::now());
        true
    }

    /// A connection is about to be opened by a turn's holder: counted from now, and uncounted again unless it
    /// arrives (`Opening::opened`): a failed connect, or a checkout dropped half-way (its client left), leaves the
    /// count as it was.
    /// Only while fewer than `max` are open: the budget holds across logins and for `keep_min`.
    #[inline]
    pub(super) fn try_opening(&self) -> Option<Opening<'_>> {
        let max = self.max.load(Ordering::Relaxed);
        self.open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).ok()?;
        Some(Opening { shelf: self, arrived: false })
    }

    /// A connection opened under `try_opening` joins the idle ones.
    pub(super) fn add_opened(&self, conn: Box<ServerConn>, opening: Opening<'_>) {
        opening.opened();
        self.push(conn, Instant::now());
    }

    /// A connection closes (dropped: its socket closes), or one being opened failed.
    #[inline]
    pub(super) fn close(&self, conn: Box<ServerConn>) {
        drop(conn);
        self.closed();
    }

    /// One connection fewer is open.
    #[inline]
    pub(super) fn closed(&self) {
        let _ = self.open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Whether `conn` has lived past `max_lifetime`, or was opened before the last `RECONNECT`.
    #[inline]
    pub(super) fn expired(&self, conn: &ServerConn, now: Instant) -> bool {
        self.max_lifetime.is_some_and(|l| now.saturating_duration_since(conn.created()) >= l)
            || conn.info().is_some_and(|i| i.generation < self.servers.generation())
    }

    /// Closes idle connections, the least recently used of each stack first, while more than `max` are open.
    pub(super) fn trim(&self, max: u32) {
        while self.open.load(Ordering::Acquire) > max {
            let oldest = self.idle.iter().find_map(|s| {
                let mut s = lock(s);
                (!s.is_empty()).then(|| s.remove(0).0)
            });
            match oldest {
                Some(conn) => self.close(conn),
                None => return,
            }
        }
    }

    /// Every idle connection, taken off the shelf (`Backend::close_idle`).
    #[allow(clippy::vec_box, reason = "connections stay boxed: they are lent as they are, a pointer moving")]
    pub(super) fn take_all(&self) -> Vec<Box<ServerConn>> {
        self.idle.iter().flat_map(|s| std::mem::take(&mut *lock(s))).map(|(conn, _)| conn).collect()
    }

    /// Closes idle connections past `idle_timeout` or `max_lifetime` (at each health tick); returns how many.
    pub(super) fn reap(&self) -> usize {
        let now = Instant::now();
        let mut gone: Vec<Box<ServerConn>> = Vec::new();
        for stack in &*self.idle {
            let mut idle = lock(stack);
            let (old, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut *idle).into_iter().partition(|(conn, since)| {
                self.idle_timeout.is_some_and(|t| now.saturating_duration_since(*since) >= t) || self.expired(conn, now)
            });
            *idle = kept;
            gone.extend(old.into_iter().map(|(conn, _)| conn));
        }
        let n = gone.len();
        for conn in gone {
            self.close(conn);
        }
        n
    }

    /// Connections open and idle.
    pub(super) fn state(&self) -> (u32, u32) {
        let idle = self.idle.iter().map(|s| lock(s).len()).sum::<usize>();
        let idle = u32::try_from(idle).unwrap_or(u32::MAX);
        (self.open.load(Ordering::Relaxed), idle)
    }
}

/// One worker's idle connections, each with the moment it was returned.
type Stack = Vec<(Box<ServerConn>, Instant)>;

/// Takes the most recently returned connection of `login` (any: `None`) off a stack: the top one in the common case
/// of a single login.
#[inline]
fn pop_login(stack: &mut Stack, login: Option<LoginId>) -> Option<Box<ServerConn>> {
    let i = match login {
        None => stack.len().checked_sub(1)?,
        Some(l) => stack.iter().rposition(|(c, _)| c.login_id() == l)?,
    };
    Some(stack.remove(i).0)
}

/// A connection being opened, counted in `open` (`Shelf::opening`).
pub(crate) struct Opening<'a> {
    shelf: &'a Shelf,
    arrived: bool,
}

impl Opening<'_> {
    /// The connection is open: it stays counted.
    #[inline]
    pub(super) fn opened(mut self) {
        self.arrived = true;
    }
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        if !self.arrived {
            self.shelf.closed();
        }
    }
}

/// Turns held (`n` of them, one per connection lent; `Backend::keep_min` and `close_idle` hold several): given back
/// when dropped.
pub(super) struct Turn {
    pub(super) shelf: std::sync::Arc<Shelf>,
    n: usize,
}

impl Turn {
    /// The caller now holds `n` turns of `shelf` (taken from `shelf.turns`).
    pub(super) fn held(shelf: &std::sync::Arc<Shelf>, n: usize) -> Turn {
        Turn { shelf: shelf.clone(), n }
    }

    /// The turns are withdrawn, not given back (a reload lowered `max`).
    pub(super) fn forget(mut self) {
        self.n = 0;
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if self.n > 0 {
            self.shelf.turns.give(self.n);
        }
    }
}

/// A server connection lent to a client for one transaction (or a pinned session); dropping it returns it to the
/// shelf (or closes it if it cannot serve another client), then lets the next waiting client in.
pub struct PooledConn {
    /// The connection; taken out only when the loan ends (`Drop`).
    conn: Option<Box<ServerConn>>,
    /// When the checkout that lent it began, if it did not wait: the start of its first request (one clock read
    /// less per transaction); taken by that request.
    lent_at: Option<Instant>,
    /// When its last request ended, if it goes back right after: its idle stamp (one clock read less).
    back_at: Option<Instant>,
    /// The client's turn, and the shelf the connection goes back to; the turn is given back after the connection is
    /// back (fields drop after `Drop::drop`).
    turn: Turn,
}

impl PooledConn {
    pub(super) fn lend(conn: Box<ServerConn>, turn: Turn, lent_at: Option<Instant>) -> PooledConn {
        if let Some(info) = conn.info() {
            info.lent(lent_at.unwrap_or_else(Instant::now));
        }
        PooledConn { conn: Some(conn), lent_at, back_at: None, turn }
    }

    /// When the checkout began, once, if it did not wait (else `None`: read the clock).
    #[inline]
    pub fn take_lent_at(&mut self) -> Option<Instant> {
        self.lent_at.take()
    }

    /// The connection's idle stamp if it goes back now (`None` when it is kept: read the clock when it goes).
    #[inline]
    pub fn going_back_at(&mut self, at: Option<Instant>) {
        self.back_at = at;
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.turn.shelf.put_back(conn, self.back_at.unwrap_or_else(Instant::now));
        }
    }
}

impl std::ops::Deref for PooledConn {
    type Target = ServerConn;

    #[inline]
    fn deref(&self) -> &ServerConn {
        match &self.conn {
            Some(conn) => conn,
            None => unreachable!("a PooledConn holds its connection until it is dropped"),
        }
    }
}

impl std::ops::DerefMut for PooledConn {
    #[inline]
    fn deref_mut(&mut self) -> &mut ServerConn {
        match &mut self.conn {
            Some(conn) => conn,
            None => unreachable!("a PooledConn holds its connection until it is dropped"),
        }
    }
}
