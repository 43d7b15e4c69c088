//! One worker's event loop (issue 17, step 4 of `docs/event-loop.md`): a mio `Poll` and a queue of tasks, nothing
//! else. A turn runs the tasks that were woken, then waits for socket readiness (not at all when a task is still
//! queued) and wakes the tasks whose sockets became ready. No timer wheel, no clock read, no metrics on the way: a
//! transaction on the fast path reads a request, checks out, writes, reads the reply and writes it back, and each
//! of those is a system call and a wake-up here.
//!
//! What is not on the fast path stays tokio's: the worker thread has the main runtime's handle entered, so timers
//! (`tokio::time`), `tokio::spawn` and sockets opened with tokio (connects, with their name lookups) work on a
//! worker as elsewhere, on the main runtime's driver, and wake the worker's task across threads.
//!
//! Tasks are woken on their own thread through a thread-local queue (no lock, no system call); from another thread
//! (a `Notify`, a semaphore released by another worker, a cancel) through the worker's inbox and its `mio::Waker`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};

use super::{here, Home};

/// A task as the worker keeps it.
type Task = Pin<Box<dyn Future<Output = ()>>>;

/// A task spawned from another thread, not yet in the worker's table.
type Spawned = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The token of the worker's `mio::Waker` (other threads' wake-ups); socket tokens are slot numbers below it.
pub(super) const WAKE_TOKEN: mio::Token = mio::Token(usize::MAX);

/// Most tasks run in one turn before the sockets are looked at again (none starves the others' I/O).
const TURN_BUDGET: usize = 256;

/// What other threads reach of one worker.
pub struct Shared {
    /// The worker's index.
    pub home: Home,
    /// Work handed in from other threads; `pending` says whether there is any.
    inbox: Mutex<Inbox>,
    pending: AtomicBool,
    /// Wakes the worker's `Poll` when it waits.
    waker: mio::Waker,
    /// The worker's registry: a socket leaving the worker is deregistered through it from whichever thread.
    pub(super) registry: mio::Registry,
}

/// Work handed to a worker by other threads.
#[derive(Default)]
struct Inbox {
    spawned: Vec<Spawned>,
    woken: Vec<(u32, u32)>,
    /// Socket slots to free (a socket of this worker's left it, or was dropped, on another thread).
    freed: Vec<usize>,
    /// Drop every task (the shutdown grace is over).
    abort: bool,
    /// End the loop, dropping every task.
    stop: bool,
}

impl Shared {
    /// A worker's shared half, around its registry.
    pub(super) fn new(home: Home, poll: &mio::Poll) -> std::io::Result<Shared> {
        Ok(Shared {
            home,
            inbox: Mutex::default(),
            pending: AtomicBool::new(false),
            waker: mio::Waker::new(poll.registry(), WAKE_TOKEN)?,
            registry: poll.registry().try_clone()?,
        })
    }

    /// Hands `task` to the worker.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.deliver(|i| i.spawned.push(Box::pin(task)));
    }

    /// Drops every task the worker runs (each drops its session).
    pub fn abort_all(&self) {
        self.deliver(|i| i.abort = true);
    }

    /// Ends the worker's loop.
    pub(super) fn stop(&self) {
        self.deliver(|i| i.stop = true);
    }

    /// Frees socket slot `key` at the worker's next turn (no wake-up: nothing waits for it).
    pub(super) fn free_later(&self, key: usize) {
        if let Ok(mut inbox) = self.inbox.lock() {
            inbox.freed.push(key);
            self.pending.store(true, Ordering::Release);
        }
    }

    fn deliver(&self, put: impl FnOnce(&mut Inbox)) {
        if let Ok(mut inbox) = self.inbox.lock() {
            put(&mut inbox);
            self.pending.store(true, Ordering::Release);
        }
        let _ = self.waker.wake();
    }
}

/// What a waker of one task holds.
struct Header {
    key: u32,
    generation: u32,
    /// In the run queue (or the inbox) already: a second wake-up before the poll adds nothing.
    queued: AtomicBool,
    shared: Arc<Shared>,
}

impl Wake for Header {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        if here() == self.shared.home {
            let _ = RUN.try_with(|q| q.borrow_mut().push_back((self.key, self.generation)));
        } else {
            self.shared.deliver(|i| i.woken.push((self.key, self.generation)));
        }
    }
}

/// A slot of the task table.
struct Slot {
    generation: u32,
    task: Option<Task>,
    header: Option<Arc<Header>>,
    waker: Option<Waker>,
}

/// The worker's tasks and its free slots.
#[derive(Default)]
struct Table {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

thread_local! {
    /// Tasks woken on this thread, to poll (slot, generation).
    static RUN: RefCell<VecDeque<(u32, u32)>> = const { RefCell::new(VecDeque::new()) };
    /// This worker's tasks.
    static TASKS: RefCell<Table> = RefCell::default();
    /// This worker's shared half (set on worker threads only).
    pub(super) static SHARED: RefCell<Option<Arc<Shared>>> = const { RefCell::new(None) };
}

/// Adds `task` to this worker's table and queues its first poll.
fn spawn_here(shared: &Arc<Shared>, task: Task) {
    TASKS.with(|t| {
        let mut t = t.borrow_mut();
        let key = match t.free.pop() {
            Some(k) => k,
            None => {
                t.slots.push(Slot { generation: 0, task: None, header: None, waker: None });
                u32::try_from(t.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let Some(slot) = t.slots.get_mut(key as usize) else { return };
        let header = Arc::new(Header { key, generation: slot.generation, queued: AtomicBool::new(true), shared: shared.clone() });
        slot.waker = Some(Waker::from(header.clone()));
        slot.header = Some(header);
        slot.task = Some(task);
        RUN.with(|q| q.borrow_mut().push_back((key, slot.generation)));
    });
}

/// Polls task `key` if it is still generation `generation`; a finished task's slot is freed.
fn run_task(key: u32, generation: u32) {
    let taken = TASKS.with(|t| {
        let mut t = t.borrow_mut();
        let slot = t.slots.get_mut(key as usize)?;
        if slot.generation != generation {
            return None;
        }
        let task = slot.task.take()?;
        let header = slot.header.clone()?;
        Some((task, header, slot.waker.clone()?))
    });
    let Some((mut task, header, waker)) = taken else { return };
    header.queued.store(false, Ordering::Release);
    let done = task.as_mut().poll(&mut Context::from_waker(&waker)).is_ready();
    let finished = TASKS.with(|t| {
        let mut t = t.borrow_mut();
        let Some(slot) = t.slots.get_mut(key as usize) else { return Some(task) };
        if slot.generation != generation {
            return Some(task);
        }
        if done {
            slot.generation = slot.generation.wrapping_add(1);
            slot.header = None;
            slot.waker = None;
            t.free.push(key);
            Some(task)
        } else {
            slot.task = Some(task);
            None
        }
    });
    // Dropped outside the table's borrow: a task's drop may drop sockets and wake other tasks.
    drop(finished);
}

/// Drops every task of this worker (outside the table's borrow).
fn drop_all() {
    let tasks: Vec<Task> = TASKS.with(|t| {
        let mut t = t.borrow_mut();
        let mut all = Vec::new();
        let Table { slots, free } = &mut *t;
        for (key, slot) in slots.iter_mut().enumerate() {
            if let Some(task) = slot.task.take() {
                all.push(task);
                slot.generation = slot.generation.wrapping_add(1);
                slot.header = None;
                slot.waker = None;
                free.push(u32::try_from(key).unwrap_or(u32::MAX));
            }
        }
        all
    });
    drop(tasks);
    RUN.with(|q| q.borrow_mut().clear());
}

/// Runs the worker's loop until it is stopped; then drops its tasks.
pub(super) fn run(shared: Arc<Shared>, mut poll: mio::Poll) {
    SHARED.with(|s| *s.borrow_mut() = Some(shared.clone()));
    let mut events = mio::Events::with_capacity(256);
    let mut wakers: Vec<Waker> = Vec::new();
    'turns: loop {
        if shared.pending.swap(false, Ordering::AcqRel) {
            let inbox = match shared.inbox.lock() {
                Ok(mut i) => std::mem::take(&mut *i),
                Err(_) => break,
            };
            if inbox.stop {
                break;
            }
            if inbox.abort {
                drop_all();
            }
            for key in inbox.freed {
                super::socket::free_slot(key);
            }
            for task in inbox.spawned {
                spawn_here(&shared, task);
            }
            RUN.with(|q| q.borrow_mut().extend(inbox.woken));
        }
        for _ in 0..TURN_BUDGET {
            let Some((key, generation)) = RUN.with(|q| q.borrow_mut().pop_front()) else { break };
            run_task(key, generation);
        }
        let busy = RUN.with(|q| !q.borrow().is_empty()) || shared.pending.load(Ordering::Acquire);
        let timeout = if busy { Some(std::time::Duration::ZERO) } else { None };
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue 'turns;
            }
            tracing::error!(worker = shared.home, error = %e, "a worker's event loop failed: its sessions end");
            break;
        }
        for event in events.iter() {
            if event.token() != WAKE_TOKEN {
                super::socket::ready(event, &mut wakers);
            }
        }
        for w in wakers.drain(..) {
            w.wake();
        }
    }
    drop_all();
    SHARED.with(|s| *s.borrow_mut() = None);
}
