//! A request's future in a block of the thread's own: the session's task stays small while its client is idle
//! (a request's routing, checkout and exchange take ~3 KB only while the request runs), and a request costs no
//! malloc and free of that size (glibc's path for a block past its thread cache costs ~500 instructions each way;
//! a box per request was measured at +1,066 per transaction). Blocks go back to the list of the thread that drops
//! them; a thread keeps `SPARE_MAX` at most.

use std::alloc::Layout;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll};

/// Size of a block: futures up to this size are recycled, larger ones allocated as they come.
const BLOCK: usize = 4096;
/// Alignment of a block.
const ALIGN: usize = 16;
/// Most spare blocks a thread keeps.
const SPARE_MAX: usize = 256;

/// A thread's spare blocks, freed when the thread ends.
struct Spares(Vec<NonNull<u8>>);

impl Drop for Spares {
    fn drop(&mut self) {
        for block in self.0.drain(..) {
            // SAFETY: every spare block was allocated with `block_layout()` and is unused.
            unsafe { std::alloc::dealloc(block.as_ptr(), block_layout()) };
        }
    }
}

thread_local! {
    static SPARE: RefCell<Spares> = const { RefCell::new(Spares(Vec::new())) };
}

fn block_layout() -> Layout {
    // BLOCK and ALIGN are valid (ALIGN a power of two, BLOCK a multiple of it).
    match Layout::from_size_align(BLOCK, ALIGN) {
        Ok(l) => l,
        Err(_) => Layout::new::<[u128; BLOCK / 16]>(),
    }
}

/// A future stored in a recycled block (or a box when it does not fit one).
pub struct Recycled<F: Future> {
    inner: Place<F>,
}

enum Place<F> {
    Block(NonNull<F>),
    Boxed(Pin<Box<F>>),
}

// SAFETY: the block is owned by this value alone, as a Box would be; it is sent with the future it holds.
unsafe impl<F: Future + Send> Send for Recycled<F> {}

impl<F: Future> Recycled<F> {
    /// Stores the future `make` makes in a block from this thread's spares, or a new one. The future is made in
    /// its block (not made, then moved: a request's future is ~3 KB, nearly all of it unused until it runs).
    #[inline(always)]
    pub fn new(make: impl FnOnce() -> F) -> Recycled<F> {
        if std::mem::size_of::<F>() > BLOCK || std::mem::align_of::<F>() > ALIGN {
            return Recycled { inner: Place::Boxed(Box::pin(make())) };
        }
        let block = SPARE.try_with(|s| s.borrow_mut().0.pop()).ok().flatten().or_else(|| {
            // SAFETY: the layout has a non-zero size.
            NonNull::new(unsafe { std::alloc::alloc(block_layout()) })
        });
        match block {
            Some(block) => {
                let ptr = block.cast::<F>();
                // SAFETY: the block is BLOCK bytes aligned to ALIGN, enough for F (checked above), and unused.
                unsafe { ptr.as_ptr().write(make()) };
                Recycled { inner: Place::Block(ptr) }
            }
            None => Recycled { inner: Place::Boxed(Box::pin(make())) },
        }
    }
}

impl<F: Future> Future for Recycled<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: the future never moves out of its block or box while `Recycled` lives (`Recycled` itself may move:
        // it holds only a pointer), and it is dropped in place.
        match &mut unsafe { self.get_unchecked_mut() }.inner {
            Place::Block(ptr) => unsafe { Pin::new_unchecked(ptr.as_mut()) }.poll(cx),
            Place::Boxed(b) => b.as_mut().poll(cx),
        }
    }
}

impl<F: Future> Drop for Recycled<F> {
    fn drop(&mut self) {
        if let Place::Block(ptr) = self.inner {
            // SAFETY: the block holds an initialized F, dropped once here; the block is then unused.
            unsafe { std::ptr::drop_in_place(ptr.as_ptr()) };
            let block = ptr.cast::<u8>();
            let kept = SPARE
                .try_with(|s| {
                    let mut s = s.borrow_mut();
                    (s.0.len() < SPARE_MAX).then(|| s.0.push(block)).is_some()
                })
                .unwrap_or(false);
            if !kept {
                // SAFETY: the block was allocated with `block_layout()` and is no longer used.
                unsafe { std::alloc::dealloc(block.as_ptr(), block_layout()) };
            }
        }
    }
}
