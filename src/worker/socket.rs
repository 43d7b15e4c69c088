//! A TCP or Unix-domain stream socket that is served by whichever event loop polls it: a worker's own loop (`exec.rs`) on a worker
//! thread, tokio's reactor anywhere else (the main runtime, tests). A socket moves when it is polled on another
//! thread than the one it is registered with: a client handed from the accept loop to its worker, a server
//! connection taken from another worker's idle stack or opened on the main thread, a connection the main thread
//! borrows for a catalog read. Moving deregisters it there and registers it here; it stays open throughout.
//!
//! On a worker, readiness is kept per socket (in a slot whose address is its epoll token) as tokio keeps it: set by the loop's
//! events, cleared when a read or write would block or was short (edge-triggered epoll reports new data, so a short
//! read means the buffer is drained); a closed or failed socket stays ready for good, so its end is always read.

use std::cell::Cell;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::exec::{proceed, this_loop, Shared, SHARED};

const READABLE: u8 = 1;
const WRITABLE: u8 = 2;
const READ_CLOSED: u8 = 4;
const WRITE_CLOSED: u8 = 8;

/// One registered socket's readiness and the tasks waiting for it. It lives in a box of its own, owned by the
/// socket's `Registration`; its address is the socket's token, so an event reaches it without a table. Only its
/// worker's thread touches it: the socket's methods after `Socket::here` checked the thread, the loop's dispatch,
/// and its freeing (a socket leaving its worker from another thread hands the box to the worker to free).
struct IoSlot {
    ready: Cell<u8>,
    reader: Cell<Option<Waker>>,
    writer: Cell<Option<Waker>>,
}

/// Frees the slot at `token`, once its socket is deregistered (called by its worker for a socket that left it from
/// another thread, after any event batch that could name it has been dispatched).
pub(super) fn free_slot(token: usize) {
    // SAFETY: `token` came from `Box::into_raw` in `Registration::drop`, handed to this worker exactly once; the
    // socket is deregistered, and the events of the batch that may still have named it were dispatched before the
    // inbox that carries this token was drained.
    drop(unsafe { Box::from_raw(token as *mut IoSlot) });
}

/// Records `event`'s readiness on its socket and collects the wakers to wake (woken after the whole batch).
pub(super) fn ready(token: u64, events: u32, wakers: &mut Vec<Waker>) {
    // SAFETY: a token other than the waker's is the address of a live `IoSlot` of this worker: it is freed only
    // after its socket is deregistered, on this thread, between two batches (`free_slot`, `Registration::drop`).
    let slot = unsafe { &*(token as usize as *const IoSlot) };
    // The epoll flags read as mio reads them (`mio::event::Event`'s is_readable, is_read_closed, ...).
    let has = |flag: libc::c_int| events & flag as u32 != 0;
    let mut bits = 0;
    if has(libc::EPOLLIN) || has(libc::EPOLLPRI) {
        bits |= READABLE;
    }
    if has(libc::EPOLLOUT) {
        bits |= WRITABLE;
    }
    if has(libc::EPOLLHUP) || has(libc::EPOLLIN) && has(libc::EPOLLRDHUP) {
        bits |= READ_CLOSED;
    }
    if has(libc::EPOLLHUP) || has(libc::EPOLLOUT) && has(libc::EPOLLERR) || events == libc::EPOLLERR as u32 {
        bits |= WRITE_CLOSED;
    }
    if has(libc::EPOLLERR) {
        bits |= READ_CLOSED | WRITE_CLOSED;
    }
    slot.ready.set(slot.ready.get() | bits);
    if bits & (READABLE | READ_CLOSED) != 0 {
        wakers.extend(slot.reader.take());
    }
    if bits & (WRITABLE | WRITE_CLOSED) != 0 {
        wakers.extend(slot.writer.take());
    }
}

/// Sends `buf` on `fd` (a raw system call, as `recv` above; MSG_NOSIGNAL: a closed peer is an EPIPE error, never a
/// signal).
fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: sendto reads at most `buf.len()` bytes of `buf`, which outlives the call; no address is passed.
    let n = unsafe { libc::syscall(libc::SYS_sendto, fd, buf.as_ptr(), buf.len(), libc::MSG_NOSIGNAL, 0usize, 0usize) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Sends `bufs` on `fd` in one system call (sendmsg, MSG_NOSIGNAL).
fn send_vectored(fd: RawFd, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: an all-zero msghdr is valid (no address, no control data); IoSlice is ABI-compatible with iovec on
    // Unix, and sendmsg only reads the `msg_iovlen` slices of `bufs`, which outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len().min(1024) as _;
    let n = unsafe { libc::syscall(libc::SYS_sendmsg, fd, &msg as *const libc::msghdr, libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// A socket's place in a worker's loop; leaving it (dropped, on whichever thread) deregisters the descriptor and
/// frees the slot, on the worker.
struct Registration {
    slot: std::ptr::NonNull<IoSlot>,
    fd: RawFd,
    shared: Arc<Shared>,
}

// SAFETY: the slot is touched only on its worker's thread (see `IoSlot`): through `Own`'s polling methods, which
// `Socket` calls with `&mut` after checking the thread; elsewhere a registration is only moved, shared for what does
// not touch the slot (`set_nodelay`, `peer_addr`), or dropped, and its drop hands the slot to the worker.
unsafe impl Send for Registration {}
unsafe impl Sync for Registration {}

impl Drop for Registration {
    fn drop(&mut self) {
        if self.shared.registry.deregister(&mut mio::unix::SourceFd(&self.fd)).is_err() {
            // Still registered, as far as is known: an event may yet name the slot, so it is left allocated.
            return;
        }
        let token = self.slot.as_ptr() as usize;
        if this_loop() == self.shared.id {
            // No event batch is being dispatched while a task runs: the slot can go now.
            free_slot(token);
        } else {
            self.shared.free_later(token);
        }
    }
}

/// A connected socket outside any loop, TCP or Unix-domain (a client of `unix_socket_dir`): the I/O goes through the
/// descriptor alike. Its kind is asked of the socket when it matters (per connection, never per message).
struct Plain(std::os::fd::OwnedFd);

impl Plain {
    fn tcp(tcp: std::net::TcpStream) -> Plain {
        Plain(tcp.into())
    }

    fn unix(unix: std::os::unix::net::UnixStream) -> Plain {
        Plain(unix.into())
    }

    fn is_unix(&self) -> bool {
        socket2::SockRef::from(&self.0).domain().is_ok_and(|d| d == socket2::Domain::UNIX)
    }

    fn set_nonblocking(&self) -> io::Result<()> {
        socket2::SockRef::from(&self.0).set_nonblocking(true)
    }

    fn shutdown_write(&self) -> io::Result<()> {
        socket2::SockRef::from(&self.0).shutdown(std::net::Shutdown::Write)
    }

    /// The TCP socket; `None` for a Unix-domain one.
    fn tcp_ref(&self) -> Option<socket2::SockRef<'_>> {
        (!self.is_unix()).then(|| socket2::SockRef::from(&self.0))
    }
}

impl AsRawFd for Plain {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl Plain {
    /// The socket on tokio's reactor.
    fn into_tokio(self) -> io::Result<State> {
        self.set_nonblocking()?;
        Ok(match self.is_unix() {
            false => State::Tokio(tokio::net::TcpStream::from_std(self.0.into())?),
            true => State::TokioUnix(tokio::net::UnixStream::from_std(self.0.into())?),
        })
    }
}

// A Unix-domain socket on tokio's reactor is polled out of line: the workers' paths never take it, and its code
// inlined beside the TCP socket's made them longer (benches/callgrind.sh, extended, 1 client: 11,996 instructions
// per transaction inlined, 11,914 out of line, 11,849 before the Unix-domain socket existed).

#[cold]
#[inline(never)]
fn unix_read(u: &mut tokio::net::UnixStream, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
    Pin::new(u).poll_read(cx, buf)
}

#[cold]
#[inline(never)]
fn unix_write(u: &mut tokio::net::UnixStream, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
    Pin::new(u).poll_write_vectored(cx, bufs)
}

#[cold]
#[inline(never)]
fn unix_read_ready(u: &tokio::net::UnixStream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    u.poll_read_ready(cx)
}

/// A socket registered with this worker's loop (`reg` first: it is deregistered before the socket closes).
struct Own {
    reg: Registration,
    io: Plain,
}

impl Own {
    /// Registers `tcp` with the calling worker's loop.
    fn register(tcp: Plain) -> io::Result<Own> {
        let Some(shared) = SHARED.with(|s| s.borrow().clone()) else {
            return Err(io::Error::other("not on a worker thread"));
        };
        tcp.set_nonblocking()?;
        let slot = Box::new(IoSlot { ready: Cell::new(READABLE | WRITABLE), reader: Cell::new(None), writer: Cell::new(None) });
        let slot = std::ptr::NonNull::from(Box::leak(slot));
        let fd = tcp.as_raw_fd();
        let interest = mio::Interest::READABLE | mio::Interest::WRITABLE;
        // Owned by the registration from here: a failed register frees it (nothing can name it yet).
        let reg = Registration { slot, fd, shared };
        reg.shared.registry.register(&mut mio::unix::SourceFd(&fd), mio::Token(slot.as_ptr() as usize), interest)?;
        Ok(Own { reg, io: tcp })
    }

    /// The socket, out of the loop.
    fn into_std(self) -> Plain {
        let Own { reg, io } = self;
        drop(reg);
        io
    }

    /// The socket's slot (only on its worker's thread: `Socket::here` checked it).
    #[inline]
    fn slot(&self) -> &IoSlot {
        // SAFETY: the slot lives as long as the registration, and this runs on the worker's thread.
        unsafe { self.reg.slot.as_ref() }
    }

    /// Whether the socket may be `bit`-ready; when not, `cx`'s waker waits for it.
    #[inline]
    fn ready_or_wait(&self, bit: u8, cx: &mut Context<'_>) -> bool {
        let slot = self.slot();
        let closed = if bit == READABLE { READ_CLOSED } else { WRITE_CLOSED };
        if slot.ready.get() & (bit | closed) != 0 {
            return true;
        }
        let waiter = if bit == READABLE { &slot.reader } else { &slot.writer };
        let waker = match waiter.take() {
            Some(w) if w.will_wake(cx.waker()) => w,
            _ => cx.waker().clone(),
        };
        waiter.set(Some(waker));
        false
    }

    /// Clears `bit` (a read or write would block or was short); an event sets it again.
    #[inline]
    fn clear(&self, bit: u8) {
        let slot = self.slot();
        slot.ready.set(slot.ready.get() & !bit);
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !proceed(cx) {
            return Poll::Pending;
        }
        loop {
            if !self.ready_or_wait(READABLE, cx) {
                return Poll::Pending;
            }
            // SAFETY: recv writes at most `dst.len()` bytes into `dst`, memory of `buf`'s unfilled part, and the
            // bytes it reports written are then marked initialized and filled; the descriptor is this socket's.
            let dst = unsafe { buf.unfilled_mut() };
            let len = dst.len();
            // A raw system call: glibc's recv is a cancellation point, wrapped in two calls that cost more than
            // the rest of this function (pgsplit never cancels threads).
            let n = unsafe { libc::syscall(libc::SYS_recvfrom, self.reg.fd, dst.as_mut_ptr(), len, 0, 0usize, 0usize) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => self.clear(READABLE),
                    io::ErrorKind::Interrupted => {}
                    _ => return Poll::Ready(Err(e)),
                }
                continue;
            }
            let n = n as usize;
            if n > 0 && n < len {
                self.clear(READABLE);
            }
            // SAFETY: recv initialized the first `n` bytes of the unfilled part.
            unsafe { buf.assume_init(n) };
            buf.advance(n);
            return Poll::Ready(Ok(()));
        }
    }

    fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        write: impl Fn(RawFd) -> io::Result<usize>,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        if !proceed(cx) {
            return Poll::Pending;
        }
        loop {
            if !self.ready_or_wait(WRITABLE, cx) {
                return Poll::Pending;
            }
            match write(self.reg.fd) {
                Ok(n) => {
                    if n < len {
                        self.clear(WRITABLE);
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.clear(WRITABLE),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Whether the socket is readable (or closed); when not, `cx`'s waker waits for it.
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.ready_or_wait(READABLE, cx) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
}

/// Where a socket is registered.
enum State {
    /// Nowhere yet (just accepted and handed over, or between two loops).
    Loose(Plain),
    /// With a worker's loop.
    Own(Own),
    /// With tokio's reactor.
    Tokio(tokio::net::TcpStream),
    /// A Unix-domain socket with tokio's reactor.
    TokioUnix(tokio::net::UnixStream),
    /// Moving failed half-way; every use is an error.
    Gone,
}

/// A TCP or Unix-domain socket, plain; TLS wraps it (`crate::stream::Stream`).
pub struct Socket {
    state: State,
}

impl From<tokio::net::TcpStream> for Socket {
    fn from(tcp: tokio::net::TcpStream) -> Socket {
        Socket { state: State::Tokio(tcp) }
    }
}

impl From<std::net::TcpStream> for Socket {
    /// A socket registered nowhere yet: the loop of the thread that first polls it takes it.
    fn from(tcp: std::net::TcpStream) -> Socket {
        Socket { state: State::Loose(Plain::tcp(tcp)) }
    }
}

impl From<std::os::unix::net::UnixStream> for Socket {
    /// A Unix-domain socket registered nowhere yet, as a TCP one.
    fn from(unix: std::os::unix::net::UnixStream) -> Socket {
        Socket { state: State::Loose(Plain::unix(unix)) }
    }
}

impl From<tokio::net::UnixStream> for Socket {
    fn from(unix: tokio::net::UnixStream) -> Socket {
        Socket { state: State::TokioUnix(unix) }
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the socket was lost moving between threads")
}

impl Socket {
    /// Opens a connection (on the main runtime's reactor; the first worker to poll it takes it over).
    pub async fn connect(host: &str, port: u16) -> io::Result<Socket> {
        Ok(Socket::from(tokio::net::TcpStream::connect((host, port)).await?))
    }

    /// Registers the socket with the calling thread's loop unless it is registered there already.
    #[inline]
    pub fn here(&mut self) -> io::Result<()> {
        let at = this_loop();
        match &self.state {
            State::Own(o) if o.reg.shared.id == at => Ok(()),
            State::Tokio(_) | State::TokioUnix(_) if at == 0 => Ok(()),
            _ => self.move_to(at),
        }
    }

    #[cold]
    fn move_to(&mut self, at: u32) -> io::Result<()> {
        let tcp = match std::mem::replace(&mut self.state, State::Gone) {
            State::Loose(tcp) => tcp,
            State::Own(own) => own.into_std(),
            State::Tokio(tcp) => Plain::tcp(tcp.into_std()?),
            State::TokioUnix(unix) => Plain::unix(unix.into_std()?),
            State::Gone => return Err(gone()),
        };
        self.state = if at == 0 {
            if tokio::runtime::Handle::try_current().is_err() {
                // No reactor on this thread (a plain thread dropping or checking a connection): left loose.
                State::Loose(tcp)
            } else {
                tcp.into_tokio()?
            }
        } else {
            State::Own(Own::register(tcp)?)
        };
        Ok(())
    }

    /// Waits until the socket is readable (or closed) without reading.
    pub fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Err(e) = self.here() {
            return Poll::Ready(Err(e));
        }
        match &self.state {
            State::Own(o) => o.poll_read_ready(cx),
            State::Tokio(t) => t.poll_read_ready(cx),
            State::TokioUnix(u) => unix_read_ready(u, cx),
            State::Loose(_) | State::Gone => Poll::Ready(Err(gone())),
        }
    }

    /// The TCP socket, wherever it is registered; `None` for a Unix-domain one, or a lost one.
    fn std_tcp(&self) -> Result<Option<socket2::SockRef<'_>>, io::Error> {
        Ok(match &self.state {
            State::Loose(p) => p.tcp_ref(),
            State::Own(o) => o.io.tcp_ref(),
            State::Tokio(t) => Some(socket2::SockRef::from(t)),
            State::TokioUnix(_) => None,
            State::Gone => return Err(gone()),
        })
    }

    /// Whether this is a Unix-domain socket (a client of `unix_socket_dir`).
    pub fn is_unix(&self) -> bool {
        match &self.state {
            State::Loose(p) | State::Own(Own { io: p, .. }) => p.is_unix(),
            State::Tokio(_) => false,
            State::TokioUnix(_) => true,
            State::Gone => false,
        }
    }

    /// Disables Nagle's algorithm (nothing to do on a Unix-domain socket).
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        match self.std_tcp()? {
            Some(t) => t.set_tcp_nodelay(on),
            None => Ok(()),
        }
    }

    /// Turns TCP keepalive on, with `keepalive`'s timings (nothing to do on a Unix-domain socket).
    pub fn set_keepalive(&self, keepalive: &socket2::TcpKeepalive) -> io::Result<()> {
        match self.std_tcp()? {
            Some(t) => t.set_tcp_keepalive(keepalive),
            None => Ok(()),
        }
    }

    /// This end's address; an error for a Unix-domain socket, which has none.
    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.ip_addr(socket2::Socket::local_addr)
    }

    /// The peer's address; an error for a Unix-domain socket, which has none.
    pub fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.ip_addr(socket2::Socket::peer_addr)
    }

    fn ip_addr(&self, which: fn(&socket2::Socket) -> io::Result<socket2::SockAddr>) -> io::Result<std::net::SocketAddr> {
        let Some(t) = self.std_tcp()? else {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "a Unix-domain socket has no IP address"));
        };
        which(&t)?.as_socket().ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "not an IP address"))
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        match &self.state {
            State::Loose(p) => p.as_raw_fd(),
            State::Own(o) => o.io.as_raw_fd(),
            State::Tokio(t) => t.as_raw_fd(),
            State::TokioUnix(u) => u.as_raw_fd(),
            State::Gone => -1,
        }
    }
}

impl AsyncRead for Socket {
    #[inline]
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = this.here() {
            return Poll::Ready(Err(e));
        }
        match &mut this.state {
            State::Own(o) => o.poll_read(cx, buf),
            State::Tokio(t) => Pin::new(t).poll_read(cx, buf),
            State::TokioUnix(u) => unix_read(u, cx, buf),
            State::Loose(_) | State::Gone => Poll::Ready(Err(gone())),
        }
    }
}

impl AsyncWrite for Socket {
    #[inline]
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Err(e) = this.here() {
            return Poll::Ready(Err(e));
        }
        match &mut this.state {
            State::Own(o) => o.poll_write(cx, |fd| send(fd, buf), buf.len()),
            State::Tokio(t) => Pin::new(t).poll_write(cx, buf),
            State::TokioUnix(u) => unix_write(u, cx, &[io::IoSlice::new(buf)]),
            State::Loose(_) | State::Gone => Poll::Ready(Err(gone())),
        }
    }

    #[inline]
    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Err(e) = this.here() {
            return Poll::Ready(Err(e));
        }
        match &mut this.state {
            State::Own(o) => {
                // What one sendmsg may send (`send_vectored` passes 1,024 slices at most): a short count means a
                // full buffer only against that.
                let len = bufs.iter().take(1024).map(|b| b.len()).sum();
                o.poll_write(cx, |fd| send_vectored(fd, bufs), len)
            }
            State::Tokio(t) => Pin::new(t).poll_write_vectored(cx, bufs),
            State::TokioUnix(u) => unix_write(u, cx, bufs),
            State::Loose(_) | State::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match &mut this.state {
            State::Tokio(t) => Pin::new(t).poll_shutdown(cx),
            State::TokioUnix(u) => Pin::new(u).poll_shutdown(cx),
            State::Own(o) => Poll::Ready(o.io.shutdown_write()),
            State::Loose(t) => Poll::Ready(t.shutdown_write()),
            State::Gone => Poll::Ready(Ok(())),
        }
    }
}
