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
