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
use std::task::{Context, Poll, Wake, Waker};

use super::Home;

/// A task's future.
type Spawned = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The token of the worker's `mio::Waker` (other threads' wake-ups); socket tokens are slot numbers below it.
pub(super) const WAKE_TOKEN: mio::Token = mio::Token(usize::MAX);

/// Most tasks run in one turn before the sockets are looked at again (none starves the others' I/O).
const TURN_BUDGET: usize = 256;

/// Most socket reads and writes one poll of a task may make (tokio's cooperative budget, which this loop replaces):
/// a session reading a client's long pipeline, which is always ready, yields after this many, so the other
/// sessions of its worker are served meanwhile.
const POLL_BUDGET: u32 = 128;

/// What other threads reach of one worker.
pub struct Shared {
    /// The worker's index.
    pub home: Home,
    /// Work handed in from other threads; `pending` says whether there is any.
    inbox: Mutex<Inbox>,
    pending: AtomicBool,
    /// This loop's identity, unique in the process (several proxies, in tests, each have a worker 0): what a task or
    /// a socket compares with `this_loop()` to know it is on its own loop's thread.
    pub(super) id: u32,
    /// Wakes the worker's `Poll` when it waits.
    waker: mio::Waker,
    /// The worker's registry: a socket leaving the worker is deregistered through it from whichever thread.
    pub(super) registry: mio::Registry,
}

/// Work handed to a worker by other threads.
#[derive(Default)]
struct Inbox {
    spawned: Vec<Spawned>,
    woken: Vec<Arc<TaskCell>>,
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
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
        Ok(Shared {
            home,
            id: NEXT.fetch_add(1, Ordering::Relaxed),
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

/// One task: its future and what its wakers need. The task is its own waker (`Wake`), so a wake-up queues the task
/// itself and a poll needs no table: the queue hands over the task to poll.
struct TaskCell {
    /// The future; `None` once it finished or was dropped. Touched only on the worker's thread.
    future: std::cell::UnsafeCell<Option<Spawned>>,
    /// Where the task is in the worker's list of all tasks (for `drop_all`). Worker's thread only.
    index: std::cell::Cell<usize>,
    /// In the run queue (or the inbox) already: a second wake-up before the poll adds nothing.
    queued: AtomicBool,
    shared: Arc<Shared>,
}

// SAFETY: `future` and `index` are touched only on the worker's thread (`spawn_here`, `run_task`, `drop_all` run
// there); other threads only wake the task, which touches `queued` (atomic) and `shared` (Sync).
unsafe impl Sync for TaskCell {}

impl TaskCell {
    /// Queues the task on its loop: locally on its own thread, else through the inbox.
    fn enqueue(self: Arc<Self>) {
        if this_loop() == self.shared.id {
            let _ = RUN.try_with(|q| q.borrow_mut().push_back(self));
        } else {
            let shared = self.shared.clone();
            shared.deliver(|i| i.woken.push(self));
        }
    }
}

impl Wake for TaskCell {
    // `queued` is swapped (a read-modify-write, SeqCst) on both sides: a waker that changed what the task waits for
    // and then finds `queued` set is ordered before the poll's clearing swap, so the poll sees the change.
    fn wake(self: Arc<Self>) {
        if !self.queued.swap(true, Ordering::SeqCst) {
            self.enqueue();
        }
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::SeqCst) {
            self.clone().enqueue();
        }
    }
}

/// Takes one socket operation from the polled task's budget; when none is left, the task is woken to run again
/// later in the turn and the operation must return `Pending`.
#[inline]
pub(super) fn proceed(cx: &Context<'_>) -> bool {
    let left = BUDGET.with(|b| {
        let left = b.get();
        b.set(left.saturating_sub(1));
        left
    });
    if left == 0 {
        cx.waker().wake_by_ref();
    }
    left > 0
}

/// The identity of the loop the calling thread runs (`Shared::id`), 0 on any other thread.
#[inline]
pub(super) fn this_loop() -> u32 {
    LOOP.with(std::cell::Cell::get)
}

thread_local! {
    /// Tasks woken on this thread, to poll.
    static RUN: RefCell<VecDeque<Arc<TaskCell>>> = const { RefCell::new(VecDeque::new()) };
    /// What is left of the polled task's `POLL_BUDGET`.
    static BUDGET: std::cell::Cell<u32> = const { std::cell::Cell::new(POLL_BUDGET) };
    /// The loop this thread runs (`Shared::id`), 0 on other threads.
    static LOOP: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    /// Every task of this worker (to drop them all at abort or stop).
    static ALL: RefCell<Vec<Arc<TaskCell>>> = const { RefCell::new(Vec::new()) };
    /// This worker's shared half (set on worker threads only).
    pub(super) static SHARED: RefCell<Option<Arc<Shared>>> = const { RefCell::new(None) };
}

/// Adds `future` to this worker's tasks and queues its first poll.
fn spawn_here(shared: &Arc<Shared>, future: Spawned) {
    let task = Arc::new(TaskCell {
        future: std::cell::UnsafeCell::new(Some(future)),
        index: std::cell::Cell::new(0),
        queued: AtomicBool::new(true),
        shared: shared.clone(),
    });
    ALL.with(|all| {
        let mut all = all.borrow_mut();
        task.index.set(all.len());
        all.push(task.clone());
    });
    RUN.with(|q| q.borrow_mut().push_back(task));
}

/// Polls `task` (a task of this worker); a finished one leaves the list of tasks.
fn run_task(task: Arc<TaskCell>) {
    task.queued.swap(false, Ordering::SeqCst);
    // The task as its own waker, borrowed: no reference count taken for the poll (a waker that is kept clones it).
    // SAFETY: `Arc::from_raw` of the task's own pointer makes a second handle without a count, and `ManuallyDrop`
    // never gives it back: the count is as before once `waker` is gone.
    let waker = std::mem::ManuallyDrop::new(Waker::from(unsafe { Arc::from_raw(Arc::as_ptr(&task)) }));
    let mut cx = Context::from_waker(&waker);
    // SAFETY: the future is touched only on this thread, and not re-entrantly: a task never polls itself, and
    // `drop_all` runs from the loop, not from a task.
    let slot = unsafe { &mut *task.future.get() };
    let Some(future) = slot.as_mut() else { return };
    BUDGET.with(|b| b.set(POLL_BUDGET));
    // A panicking task (a bug) ends alone, as a tokio task would: its session is dropped, the loop goes on.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| future.as_mut().poll(&mut cx))) {
        Ok(Poll::Pending) => return,
        Ok(Poll::Ready(())) => {}
        Err(_) => tracing::error!("a session's task panicked: that session ends"),
    }
    let finished = slot.take();
    ALL.with(|all| {
        let mut all = all.borrow_mut();
        let i = task.index.get();
        if all.get(i).is_some_and(|t| Arc::ptr_eq(t, &task)) {
            all.swap_remove(i);
            if let Some(moved) = all.get(i) {
                moved.index.set(i);
            }
        }
    });
    // Dropped outside any borrow: a task's drop may drop sockets and wake other tasks. A drop that panics (after a
    // poll that panicked) ends the same way.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(finished)));
}

/// Drops every task of this worker.
fn drop_all() {
    let all = ALL.with(|all| std::mem::take(&mut *all.borrow_mut()));
    for task in &all {
        // SAFETY: on the worker's thread, from the loop: no poll of this task is under way.
        let future = unsafe { (*task.future.get()).take() };
        drop(future);
    }
    drop(all);
    let queued = RUN.with(|q| std::mem::take(&mut *q.borrow_mut()));
    drop(queued);
}

/// Runs the worker's loop until it is stopped; then drops its tasks.
pub(super) fn run(shared: Arc<Shared>, poll: mio::Poll) {
    SHARED.with(|s| *s.borrow_mut() = Some(shared.clone()));
    LOOP.with(|l| l.set(shared.id));
    let mut events: Vec<libc::epoll_event> = Vec::with_capacity(256);
    let epoll = std::os::fd::AsRawFd::as_raw_fd(&poll);
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
            let Some(task) = RUN.with(|q| q.borrow_mut().pop_front()) else { break };
            run_task(task);
        }
        let busy = RUN.with(|q| !q.borrow().is_empty()) || shared.pending.load(Ordering::Acquire);
        if let Err(e) = epoll_wait(epoll, &mut events, if busy { 0 } else { -1 }) {
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue 'turns;
            }
            tracing::error!(worker = shared.home, error = %e, "a worker's event loop failed: its sessions end");
            break;
        }
        for event in &events {
            let (token, bits) = (event.u64, event.events);
            if token != WAKE_TOKEN.0 as u64 {
                super::socket::ready(token, bits, &mut wakers);
            }
        }
        for w in wakers.drain(..) {
            w.wake();
        }
    }
    drop_all();
    SHARED.with(|s| *s.borrow_mut() = None);
    // The loop's `mio::Poll` (the epoll instance `events` came from) lives until here.
    drop(poll);
}

/// Waits for readiness on the epoll instance `epfd` (`timeout_ms`: 0 looks without waiting, -1 waits until some),
/// into `events` (up to its capacity). A raw system call, as `socket::Own::poll_read`'s recv: glibc's epoll_wait
/// is a cancellation point, wrapped in two calls that cost more than dispatching the events (pgsplit never cancels
/// threads). epoll_pwait with no signal mask is epoll_wait, on every architecture.
fn epoll_wait(epfd: std::os::fd::RawFd, events: &mut Vec<libc::epoll_event>, timeout_ms: i32) -> std::io::Result<()> {
    events.clear();
    let capacity = i32::try_from(events.capacity()).unwrap_or(i32::MAX);
    let no_mask = std::ptr::null::<libc::sigset_t>();
    // SAFETY: the kernel writes at most `capacity` events into the vector's buffer, which outlives the call.
    let n = unsafe { libc::syscall(libc::SYS_epoll_pwait, epfd, events.as_mut_ptr(), capacity, timeout_ms, no_mask, 8usize) };
    let n = usize::try_from(n).map_err(|_| std::io::Error::last_os_error())?;
    // SAFETY: the kernel initialised the first `n` events (n <= capacity).
    unsafe { events.set_len(n.min(events.capacity())) };
    Ok(())
}
