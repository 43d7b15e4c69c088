//! Sockets as configured (`config::Limits`): the listener (backlog, SO_REUSEPORT) and TCP keepalive on every client
//! and server connection.

use std::sync::RwLock;

use socket2::TcpKeepalive;
use tokio::net::{TcpListener, TcpSocket};

use crate::config::Limits;

/// Binds `addr` (the first of its addresses that binds) with SO_REUSEADDR, SO_REUSEPORT when asked, and `backlog`.
///
/// With `reuseport`, a new pgsplit can listen on the port while the old one drains (a restart that refuses no
/// client; the kernel hands the old listener's queue to the new one when `net.ipv4.tcp_migrate_req` is 1).
pub async fn bind(addr: &str, backlog: u32, reuseport: bool) -> std::io::Result<TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        if reuseport {
            socket.set_reuseport(true)?;
        }
        match socket.bind(a) {
            Ok(()) => return socket.listen(backlog),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, format!("{addr}: no address"))))
}

/// The keepalive every new connection gets (`tcp_keepalive` and its timings); `None`: the system's default (off). A
/// setting of the process, as PgBouncer's: one App serves a process, and the last one built or reloaded sets it.
static KEEPALIVE: RwLock<Option<TcpKeepalive>> = RwLock::new(None);

/// Sets the keepalive of connections made from now on (at start and at each reload).
pub fn set_keepalive(limits: &Limits) {
    let keepalive = limits.tcp_keepalive.then(|| {
        let mut k = TcpKeepalive::new();
        if let Some(t) = limits.tcp_keepidle {
            k = k.with_time(t);
        }
        if let Some(t) = limits.tcp_keepintvl {
            k = k.with_interval(t);
        }
        if let Some(n) = limits.tcp_keepcnt {
            k = k.with_retries(n);
        }
        k
    });
    *KEEPALIVE.write().unwrap_or_else(|e| e.into_inner()) = keepalive;
}

/// Turns keepalive on for a client or server connection, as configured; a socket that refuses is left as it is.
pub fn keepalive(socket: &crate::worker::Socket) {
    let keepalive = KEEPALIVE.read().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(k) = keepalive {
        if let Err(e) = socket.set_keepalive(&k) {
            // Once at warning level (a setting the system refuses fails on every connection), then quietly.
            static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            match WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                false => tracing::warn!(error = %e, "cannot set TCP keepalive (tcp_keepalive and its timings)"),
                true => tracing::debug!(error = %e, "cannot set TCP keepalive"),
            }
        }
    }
}

/// The name of the Unix-domain socket for `port` in `dir`, as PostgreSQL and PgBouncer name it (`.s.PGSQL.6432`).
pub fn unix_socket_path(dir: &str, port: u16) -> String {
    format!("{}/.s.PGSQL.{port}", dir.trim_end_matches('/'))
}

/// The Unix-domain listening socket (`unix_socket_dir`). Its file is removed when it is dropped, unless another
/// pgsplit has taken the name over meanwhile (`bind_unix`'s `takeover`).
pub struct UnixListener {
    listener: tokio::net::UnixListener,
    /// The file with its device and inode; `None` in the abstract namespace, which has no file.
    file: Option<(std::path::PathBuf, (u64, u64))>,
    /// The name clients connect to (`/tmp/.s.PGSQL.6432`, `@name/.s.PGSQL.6432`): what SHOW CLIENTS and the log
    /// show of its clients (an accepted socket would tell the name it was made under, before a takeover's rename).
    name: std::sync::Arc<str>,
}

impl UnixListener {
    /// The next client.
    pub async fn accept(&self) -> std::io::Result<tokio::net::UnixStream> {
        self.listener.accept().await.map(|(stream, _)| stream)
    }

    /// The name clients connect to.
    pub fn name(&self) -> &std::sync::Arc<str> {
        &self.name
    }
}

impl Drop for UnixListener {
    fn drop(&mut self) {
        if let Some((path, id)) = &self.file {
            if identity(path) == Some(*id) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// A file's device and inode (not following a symbolic link).
fn identity(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// What is at a socket's name before it is made.
enum Found {
    /// Nothing, or a socket file nothing answers on (left by a server that is gone; removed).
    Free,
    /// A socket a server answers on, made by this user.
    Ours,
    /// A socket a server answers on, made by another user.
    Theirs,
}

/// Listens at `dir`/.s.PGSQL.`port` (`unix_socket_dir`) with `backlog`, the file's mode set to `mode`
/// (`unix_socket_mode`); a `dir` starting with `@` names a socket in Linux's abstract namespace, as PgBouncer's
/// (which has no file, hence no mode: any local user may connect, and authenticates as over TCP).
///
/// A socket file nothing answers on is left over from a server that is gone, and is replaced. One that answers
/// belongs to a running server: that is an error (as PgBouncer's; PostgreSQL's lock file does the same), unless
/// `takeover` (`so_reuseport`: a restart beside the old instance) and the file is this user's: the new socket is
/// then made under another name and renamed over the old one, so that a connecting client finds one or the other,
/// never nothing, and the old instance leaves the file alone when it exits. Anything else at that name (a regular
/// file, a symbolic link) is never removed.
pub fn bind_unix(dir: &str, port: u16, backlog: u32, mode: u32, takeover: bool) -> std::io::Result<UnixListener> {
    use std::io::{Error, ErrorKind};
    let name = unix_socket_path(dir, port);
    if let Some(rest) = name.strip_prefix('@') {
        let listener = listen_unix(&socket2::SockAddr::unix(format!("\0{rest}"))?, backlog).map_err(|e| match takeover {
            true => Error::new(e.kind(), format!("{e} (each instance needs its own unix_socket_dir in the abstract namespace)")),
            false => e,
        })?;
        return Ok(UnixListener { listener, file: None, name: name.into() });
    }
    let path = std::path::PathBuf::from(&name);
    let listener = match (found_at(&path)?, takeover) {
        (Found::Free, _) => made_at(&path, backlog, mode)?,
        (Found::Ours, true) => {
            let fresh = std::path::PathBuf::from(format!("{name}.{}", std::process::id()));
            let context = |e: Error| Error::new(e.kind(), format!("{}: {e}", fresh.display()));
            match std::fs::remove_file(&fresh) {
                Err(e) if e.kind() != ErrorKind::NotFound => return Err(context(e)),
                _ => {}
            }
            let listener = made_at(&fresh, backlog, mode).map_err(context)?;
            if let Err(e) = std::fs::rename(&fresh, &path) {
                let _ = std::fs::remove_file(&fresh);
                return Err(e);
            }
            listener
        }
        (Found::Ours, false) => {
            let e = "another server listens on it (give each its own unix_socket_dir; so_reuseport takes over from a \
                     pgsplit being restarted)";
            return Err(Error::new(ErrorKind::AddrInUse, e));
        }
        (Found::Theirs, _) => {
            return Err(Error::new(ErrorKind::AddrInUse, "a server of another user listens on it"));
        }
    };
    let id = identity(&path).ok_or_else(|| Error::from(ErrorKind::NotFound))?;
    Ok(UnixListener { listener, file: Some((path, id)), name: name.into() })
}

/// Whether a server answers at `path`; a socket file nothing answers on is removed. The probe does not block: a
/// server whose backlog is full is busy, not gone.
fn found_at(path: &std::path::Path) -> std::io::Result<Found> {
    use std::io::{Error, ErrorKind};
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Found::Free),
        other => other?,
    };
    if !meta.file_type().is_socket() {
        return Err(Error::new(ErrorKind::AlreadyExists, "exists and is not a socket"));
    }
    let probe = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
    probe.set_nonblocking(true)?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let live = if meta.uid() == unsafe { libc::geteuid() } { Found::Ours } else { Found::Theirs };
    match probe.connect(&socket2::SockAddr::unix(path)?) {
        Ok(()) => Ok(live),
        Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(live),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            std::fs::remove_file(path)?;
            Ok(Found::Free)
        }
        Err(e) => Err(e),
    }
}

/// A listening socket bound at `at` with `mode`.
fn made_at(at: &std::path::Path, backlog: u32, mode: u32) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let listener = listen_unix(&socket2::SockAddr::unix(at)?, backlog)?;
    if let Err(e) = std::fs::set_permissions(at, std::fs::Permissions::from_mode(mode)) {
        let _ = std::fs::remove_file(at);
        return Err(e);
    }
    Ok(listener)
}

/// A non-blocking Unix-domain stream socket bound to `addr` and listening with `backlog`.
fn listen_unix(addr: &socket2::SockAddr, backlog: u32) -> std::io::Result<tokio::net::UnixListener> {
    let socket = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
    socket.bind(addr)?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    socket.set_nonblocking(true)?;
    tokio::net::UnixListener::from_std(std::os::unix::net::UnixListener::from(std::os::fd::OwnedFd::from(socket)))
}
