//! A target's server connections not in use, and the loan of one to a client (`PooledConn`). pgsplit's own pool:
//! it replaced bb8, which pgsplit had wrapped with its own queue (`Backend::turns`), pause and resize, and whose
//! mutex, statistics and connector tasks were cost without use (`docs/event-loop.md`, step 2).
//!
//! Every connection open, idle or lent, counts in `open`. Each lent connection holds a client's turn (one of
//! `max`), and a connection is opened only by a turn's holder when none is idle, so `open` never exceeds `max`.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;

use super::ServerConn;

/// The idle connections of one target, and the counts the pool is bounded by.
pub(super) struct Shelf {
    /// Idle connections, the most recently returned last (taken first: warm server caches, as PgBouncer), each
    /// with the moment it was returned.
    idle: Mutex<Vec<(Box<ServerConn>, Instant)>>,
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
}

impl Shelf {
    pub(super) fn new(max: u32, max_lifetime: Option<Duration>, idle_timeout: Option<Duration>) -> Shelf {
        Shelf {
            idle: Mutex::new(Vec::new()),
            open: AtomicU32::new(0),
            max: AtomicU32::new(max),
            shrunk: AtomicBool::new(false),
            max_lifetime,
            idle_timeout,
        }
    }

    /// The most recently returned idle connection.
    #[inline]
    pub(super) fn take(&self) -> Option<Box<ServerConn>> {
        lock(&self.idle).pop().map(|(conn, _)| conn)
    }

    /// A connection comes back: kept idle if it may serve another client, else closed.
    #[inline]
    pub(super) fn put_back(&self, conn: Box<ServerConn>) {
        let over = self.shrunk.load(Ordering::Relaxed) && self.open.load(Ordering::Relaxed) > self.max.load(Ordering::Relaxed);
        let now = Instant::now();
        if conn.reusable() && !over && !self.expired(&conn, now) {
            lock(&self.idle).push((conn, now));
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
        lock(&self.idle).push((conn, Instant::now()));
        true
    }

    /// A connection is about to be opened by a turn's holder: counted from now, and uncounted again unless it
    /// arrives (`Opening::opened`): a failed connect, or a checkout dropped half-way (its client left), leaves the
    /// count as it was.
    #[inline]
    pub(super) fn opening(&self) -> Opening<'_> {
        self.open.fetch_add(1, Ordering::AcqRel);
        Opening { shelf: self, arrived: false }
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

    /// Whether `conn` has lived past `max_lifetime`.
    #[inline]
    pub(super) fn expired(&self, conn: &ServerConn, now: Instant) -> bool {
        self.max_lifetime.is_some_and(|l| now.saturating_duration_since(conn.created()) >= l)
    }

    /// Closes idle connections, the least recently used first, while more than `max` are open.
    pub(super) fn trim(&self, max: u32) {
        while self.open.load(Ordering::Acquire) > max {
            let oldest = {
                let mut idle = lock(&self.idle);
                if idle.is_empty() {
                    return;
                }
                idle.remove(0).0
            };
            self.close(oldest);
        }
    }

    /// Every idle connection, taken off the shelf (`Backend::close_idle`).
    #[allow(clippy::vec_box, reason = "connections stay boxed: they are lent as they are, a pointer moving")]
    pub(super) fn take_all(&self) -> Vec<Box<ServerConn>> {
        std::mem::take(&mut *lock(&self.idle)).into_iter().map(|(conn, _)| conn).collect()
    }

    /// Closes idle connections past `idle_timeout` or `max_lifetime` (at each health tick); returns how many.
    pub(super) fn reap(&self) -> usize {
        let now = Instant::now();
        let gone: Vec<Box<ServerConn>> = {
            let mut idle = lock(&self.idle);
            let (old, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut *idle).into_iter().partition(|(conn, since)| {
                self.idle_timeout.is_some_and(|t| now.saturating_duration_since(*since) >= t) || self.expired(conn, now)
            });
            *idle = kept;
            old.into_iter().map(|(conn, _)| conn).collect()
        };
        let n = gone.len();
        for conn in gone {
            self.close(conn);
        }
        n
    }

    /// Connections open and idle.
    pub(super) fn state(&self) -> (u32, u32) {
        let idle = u32::try_from(lock(&self.idle).len()).unwrap_or(u32::MAX);
        (self.open.load(Ordering::Relaxed), idle)
    }
}

/// A connection being opened, counted in `open` (`Shelf::opening`).
pub(super) struct Opening<'a> {
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A server connection lent to a client for one transaction (or a pinned session); dropping it returns it to the
/// shelf (or closes it if it cannot serve another client), then lets the next waiting client in.
pub struct PooledConn {
    /// The connection; taken out only when the loan ends (`Drop`).
    conn: Option<Box<ServerConn>>,
    /// Where it goes back.
    shelf: std::sync::Arc<Shelf>,
    /// The client's turn, released after the connection is back (fields drop after `Drop::drop`).
    _turn: OwnedSemaphorePermit,
}

impl PooledConn {
    pub(super) fn lend(conn: Box<ServerConn>, shelf: std::sync::Arc<Shelf>, turn: OwnedSemaphorePermit) -> PooledConn {
        PooledConn { conn: Some(conn), shelf, _turn: turn }
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.shelf.put_back(conn);
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
