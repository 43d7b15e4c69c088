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
    /// The socket's file with its device and inode; `None` in the abstract namespace, which has no file.
    file: Option<(std::path::PathBuf, (u64, u64))>,
    /// The name clients connect to (`/tmp/.s.PGSQL.6432`, `@name/.s.PGSQL.6432`).
    name: String,
}

impl UnixListener {
    /// The next client.
    pub async fn accept(&self) -> std::io::Result<tokio::net::UnixStream> {
        self.listener.accept().await.map(|(stream, _)| stream)
    }

    /// The name clients connect to.
    pub fn name(&self) -> &str {
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

/// Listens at `dir`/.s.PGSQL.`port` (`unix_socket_dir`) with `backlog`, the file's mode set to `mode`
/// (`unix_socket_mode`); a `dir` starting with `@` names a socket in Linux's abstract namespace, as PgBouncer's.
///
/// A socket file nothing answers on is left over from a server that is gone, and is replaced. One that answers
/// belongs to a running server: that is an error (as PgBouncer's; PostgreSQL's lock file does the same), unless
/// `takeover` (`so_reuseport`: a restart beside the old instance), where the new socket is made under another name
/// and renamed over the old one, so that a connecting client finds one or the other, never nothing. The old
/// instance then leaves the file alone when it exits. Anything else at that name (a regular file) is never removed.
pub fn bind_unix(dir: &str, port: u16, backlog: u32, mode: u32, takeover: bool) -> std::io::Result<UnixListener> {
    let name = unix_socket_path(dir, port);
    if let Some(rest) = name.strip_prefix('@') {
        let listener = listen_unix(&socket2::SockAddr::unix(format!("\0{rest}"))?, backlog).map_err(|e| {
            let hint = if takeover { ": each instance needs its own unix_socket_dir in the abstract namespace" } else { "" };
            std::io::Error::new(e.kind(), format!("{name}: {e}{hint}"))
        })?;
        return Ok(UnixListener { listener, file: None, name });
    }
    let path = std::path::PathBuf::from(&name);
    let context = |e: std::io::Error| std::io::Error::new(e.kind(), format!("{name}: {e}"));
    let live = match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(context(e)),
        Ok(meta) => {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(context(std::io::Error::new(std::io::ErrorKind::AlreadyExists, "exists and is not a socket")));
            }
            match std::os::unix::net::UnixStream::connect(&path) {
                Ok(_) => true,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(&path).map_err(context)?;
                    false
                }
                Err(e) => return Err(context(e)),
            }
        }
    };
    let listener = match (live, takeover) {
        (false, _) => made_at(&path, &path, backlog, mode)?,
        (true, false) => {
            let e = std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another server listens on it (set a unix_socket_dir of its own, or so_reuseport to take over from \
                 a pgsplit being restarted)",
            );
            return Err(context(e));
        }
        (true, true) => {
            let fresh = std::path::PathBuf::from(format!("{name}.{}", std::process::id()));
            let _ = std::fs::remove_file(&fresh);
            let listener = made_at(&fresh, &path, backlog, mode)?;
            if let Err(e) = std::fs::rename(&fresh, &path) {
                let _ = std::fs::remove_file(&fresh);
                return Err(context(e));
            }
            listener
        }
    };
    let id = identity(&path).ok_or_else(|| context(std::io::Error::from(std::io::ErrorKind::NotFound)))?;
    Ok(UnixListener { listener, file: Some((path, id)), name })
}

/// A listening socket bound at `at` with `mode`, to be known as `name` (for errors).
fn made_at(at: &std::path::Path, name: &std::path::Path, backlog: u32, mode: u32) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let context = |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", name.display()));
    let listener = listen_unix(&socket2::SockAddr::unix(at).map_err(context)?, backlog).map_err(context)?;
    if let Err(e) = std::fs::set_permissions(at, std::fs::Permissions::from_mode(mode)) {
        let _ = std::fs::remove_file(at);
        return Err(context(e));
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
