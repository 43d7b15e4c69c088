//! A target's turns: one of `max` per server connection lent, first come, first served across every worker. The
//! fast path (a free turn and nobody queued, and giving one back with nobody queued) is one atomic operation each
//! way, with no lock and no waker; tokio's semaphore, which this replaced, took its lock at every release and cost
//! ~250 instructions per transaction (`benches/callgrind.sh`, issue 17).
//!
//! States of a waiter (`Waiting`): `New` (tries a free turn; takes one only when nobody is queued, so a newcomer
//! never overtakes) → `Queued` (its entry at the back of the queue) → `Granted` (a turn given back was handed to it
//! at the front of the queue, under the queue's lock) → done. A waiter dropped while queued leaves the queue; one
//! dropped after its grant gives the turn back.
//!
//! No turn is lost between a waiter and a giver: the waiter counts itself queued before it looks for a free turn
//! again, and the giver adds the free turn before it looks for waiters (both sequentially consistent), so at least
//! one of them sees the other.

use crate::locks::lock;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// The turns of one target.
#[derive(Debug)]
pub(super) struct Turns {
    /// Turns nobody holds.
    free: AtomicUsize,
    /// Waiters in `queue` (read without its lock by the fast paths).
    queued: AtomicUsize,
    /// Waiters, the first to come at the front.
    queue: Mutex<VecDeque<Arc<Slot>>>,
}

/// A queued waiter: whether it was handed a turn, and what wakes it.
#[derive(Debug)]
struct Slot {
    state: Mutex<(bool, Option<Waker>)>,
    /// When it joined the queue (SHOW POOLS' `maxwait`).
    since: std::time::Instant,
}

impl Turns {
    pub(super) fn new(n: usize) -> Turns {
        Turns { free: AtomicUsize::new(n), queued: AtomicUsize::new(0), queue: Mutex::new(VecDeque::new()) }
    }

    /// Turns nobody holds now.
    pub(super) fn available(&self) -> usize {
        self.free.load(Ordering::SeqCst)
    }

    /// How long the waiter at the front of the queue has waited, if one is queued.
    pub(super) fn oldest_wait(&self) -> Option<std::time::Duration> {
        lock(&self.queue).front().map(|s| s.since.elapsed())
    }

    /// Takes `n` free turns at once if nobody is queued and that many are free.
    pub(super) fn try_take(&self, n: usize) -> bool {
        self.queued.load(Ordering::SeqCst) == 0 && self.take_free(n)
    }

    fn take_free(&self, n: usize) -> bool {
        self.free.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| f.checked_sub(n)).is_ok()
    }

    /// Withdraws up to `n` free turns (a reload lowered `max`); returns how many.
    pub(super) fn forget(&self, n: usize) -> usize {
        let mut gone = 0;
        let _ = self.free.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| {
            gone = f.min(n);
            Some(f - gone)
        });
        gone
    }

    /// Gives `n` turns back (or adds them: a reload raised `max`); the first waiters get them.
    pub(super) fn give(&self, n: usize) {
        self.free.fetch_add(n, Ordering::SeqCst);
        if self.queued.load(Ordering::SeqCst) != 0 {
            self.hand_over();
        }
    }

    /// Hands free turns to the waiters at the front of the queue, one each, in order.
    fn hand_over(&self) {
        let mut woken = Vec::new();
        {
            let mut queue = lock(&self.queue);
            while !queue.is_empty() && self.take_free(1) {
                let Some(slot) = queue.pop_front() else { break };
                self.queued.fetch_sub(1, Ordering::SeqCst);
                let mut state = lock(&slot.state);
                state.0 = true;
                woken.extend(state.1.take());
            }
        }
        woken.into_iter().for_each(Waker::wake);
    }

    /// Waits for a turn, behind everyone already waiting. The turn is the caller's once the future is ready (it gives
    /// it back with `give(1)`); dropped before that, the future takes nothing.
    pub(super) fn take(&self) -> Waiting<'_> {
        Waiting { turns: self, slot: None }
    }
}

/// A wait for a turn (`Turns::take`).
#[must_use = "a turn is only waited for when polled"]
pub(super) struct Waiting<'a> {
    turns: &'a Turns,
    /// Its entry in the queue, once queued.
    slot: Option<Arc<Slot>>,
}

impl Future for Waiting<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let turns = self.turns;
        if self.slot.is_none() {
            if turns.try_take(1) {
                return Poll::Ready(());
            }
            let since = std::time::Instant::now();
            let slot = Arc::new(Slot { state: Mutex::new((false, Some(cx.waker().clone()))), since });
            {
                let mut queue = lock(&turns.queue);
                queue.push_back(slot.clone());
                turns.queued.fetch_add(1, Ordering::SeqCst);
            }
            self.slot = Some(slot);
            // A turn given back before this waiter counted as queued is handed over now (to the first in line).
            turns.hand_over();
        }
        self.poll_granted(cx)
    }
}

impl Waiting<'_> {
    fn poll_granted(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(slot) = &self.slot else { return Poll::Ready(()) };
        let mut state = lock(&slot.state);
        if state.0 {
            drop(state);
            self.slot = None;
            return Poll::Ready(());
        }
        match &mut state.1 {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let Some(slot) = self.slot.take() else { return };
        let queued = {
            let mut queue = lock(&self.turns.queue);
            match queue.iter().position(|s| Arc::ptr_eq(s, &slot)) {
                Some(i) => {
                    queue.remove(i);
                    self.turns.queued.fetch_sub(1, Ordering::SeqCst);
                    true
                }
                None => false,
            }
        };
        // Not in the queue any more: it was handed a turn it will not use.
        if !queued {
            self.turns.give(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn poll(w: &mut Pin<Box<Waiting<'_>>>) -> bool {
        w.as_mut().poll(&mut Context::from_waker(Waker::noop())).is_ready()
    }

    #[test]
    fn free_turns_are_taken_at_once_and_given_back() {
        let t = Turns::new(2);
        assert!(t.try_take(1));
        assert!(t.try_take(1));
        assert!(!t.try_take(1));
        t.give(1);
        assert_eq!(t.available(), 1);
        assert!(!t.try_take(2));
        assert!(t.try_take(1));
    }

    #[test]
    fn waiters_are_served_first_come_first_served_and_newcomers_queue_behind_them() {
        let t = Turns::new(1);
        assert!(t.try_take(1));
        let mut a = Box::pin(t.take());
        let mut b = Box::pin(t.take());
        assert!(!poll(&mut a));
        assert!(!poll(&mut b));
        t.give(1);
        // The turn went to the first waiter; a newcomer does not overtake the second.
        assert!(!t.try_take(1));
        assert!(!poll(&mut b));
        assert!(poll(&mut a));
        t.give(1);
        assert!(poll(&mut b));
        assert_eq!(t.available(), 0);
    }

    #[test]
    fn a_waiter_that_leaves_takes_nothing_and_loses_nothing() {
        let t = Turns::new(1);
        assert!(t.try_take(1));
        let mut a = Box::pin(t.take());
        let mut b = Box::pin(t.take());
        assert!(!poll(&mut a));
        assert!(!poll(&mut b));
        // Left while queued: out of the queue, b is next.
        drop(a);
        t.give(1);
        // Granted but never polled again, then dropped: the turn goes back.
        drop(b);
        assert_eq!(t.available(), 1);
        assert_eq!(t.queued.load(Ordering::SeqCst), 0);
        assert!(t.try_take(1));
    }

    #[test]
    fn forget_withdraws_only_free_turns() {
        let t = Turns::new(3);
        assert!(t.try_take(1));
        assert_eq!(t.forget(5), 2);
        assert_eq!(t.available(), 0);
        t.give(1);
        assert_eq!(t.available(), 1);
    }

    #[test]
    fn many_threads_never_hold_more_turns_than_there_are() {
        let t = Arc::new(Turns::new(3));
        let held = Arc::new(AtomicUsize::new(0));
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build();
        let Ok(rt) = rt else { panic!("no runtime") };
        rt.block_on(async {
            let mut tasks = Vec::new();
            for _ in 0..8 {
                let (t, held) = (t.clone(), held.clone());
                tasks.push(tokio::spawn(async move {
                    for _ in 0..500 {
                        t.take().await;
                        assert!(held.fetch_add(1, Ordering::SeqCst) < 3);
                        tokio::task::yield_now().await;
                        held.fetch_sub(1, Ordering::SeqCst);
                        t.give(1);
                    }
                }));
            }
            for task in tasks {
                assert!(task.await.is_ok());
            }
        });
        assert_eq!(t.available(), 3);
        assert_eq!(t.queued.load(Ordering::SeqCst), 0);
    }
}
