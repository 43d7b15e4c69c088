//! The session cache's background work: the `SessionCache` log line every `stats_period`, and one LISTEN connection
//! per target that owns a cached table, so that writes made elsewhere (another pgsplit instance, psql, a job) evict
//! at once when the table's trigger notifies (README, *Session cache*).
//!
//! States of a target's listener: `Connecting` (a connection of the target's own login, outside its pool, which is
//! one smaller for it) → `Listening` (`LISTEN pgsplit_cache` answered: the target's tables are flushed, since
//! whatever was notified before is unknown; each NotificationResponse evicts its table) → on any error or a closed
//! connection the tables are flushed again and, after a pause that doubles up to 30 s, `Connecting`. While not
//! listening, entries live at most their TTL.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::{SessionCache, CHANNEL};
use crate::app::App;
use crate::backend::ServerConn;
use crate::router::TargetId;

/// The longest pause between two attempts to listen.
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// Starts the log line and the listeners the configuration asks for; the handles stop them.
pub fn start(app: &Arc<App>) -> Vec<JoinHandle<()>> {
    let Some(cache) = app.session_cache().cloned() else { return Vec::new() };
    let period = app.config().cache.as_ref().map_or(Duration::from_secs(60), |c| c.stats_period);
    let mut tasks = vec![tokio::spawn(super::log_every(cache.clone(), period))];
    if cache.listens() {
        for target in 0..app.backends().len() {
            if cache.owns(target) {
                tasks.push(tokio::spawn(listen(Arc::downgrade(app), cache.clone(), target)));
            }
        }
    }
    tasks
}

/// Listens on `target` until the App is gone.
async fn listen(app: std::sync::Weak<App>, cache: Arc<SessionCache>, target: TargetId) {
    let tables = cache.tables_of(target);
    let mut pause = Duration::from_secs(1);
    loop {
        let Some(spec) = app.upgrade().map(|a| a.backend(target).spec.clone()) else { return };
        let name = spec.name.clone();
        match ServerConn::connect(&spec).await {
            Ok(mut conn) => match conn.simple(&format!("LISTEN {CHANNEL}")).await {
                Ok(_) => {
                    cache.invalidate(&tables);
                    cache.set_listening(target, true);
                    tracing::info!(target = %name, channel = CHANNEL, "session cache: listening for writes");
                    pause = Duration::from_secs(1);
                    let e = notifications(&mut conn, &cache, target).await;
                    cache.set_listening(target, false);
                    cache.invalidate(&tables);
                    tracing::warn!(target = %name, error = %e, "session cache: notifications lost; entries live their TTL until listening again");
                }
                Err(e) => tracing::warn!(target = %name, error = %e, "session cache: LISTEN failed"),
            },
            Err(e) => tracing::warn!(target = %name, error = %e, "session cache: cannot connect to listen"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// Reads the connection's messages, evicting at each notification, until it fails.
async fn notifications(conn: &mut ServerConn, cache: &SessionCache, target: TargetId) -> crate::backend::BackendError {
    loop {
        match conn.read_frame().await {
            Ok(f) if f.tag == b'A' => match notification_payload(f.body()) {
                Some((channel, payload)) if channel == CHANNEL.as_bytes() => {
                    cache.notified(target, &String::from_utf8_lossy(payload))
                }
                Some(_) => {}
                None => cache.notified(target, ""),
            },
            Ok(f) if f.tag == b'E' => return crate::backend::conn::error_from_body(f.body()),
            // ParameterStatus, notices: nothing to do.
            Ok(_) => {}
            Err(e) => return e,
        }
    }
}

/// NotificationResponse: the sender's process id, the channel and the payload.
pub(crate) fn notification_payload(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = body.get(4..)?;
    let nul = memchr::memchr(0, rest)?;
    let channel = rest.get(..nul)?;
    let rest = rest.get(nul + 1..)?;
    let end = memchr::memchr(0, rest)?;
    Some((channel, rest.get(..end)?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_notification_gives_its_channel_and_payload() {
        let body = b"\0\0\0\x07pgsplit_cache\0config.sessions\0";
        assert_eq!(super::notification_payload(body), Some((&b"pgsplit_cache"[..], &b"config.sessions"[..])));
        assert_eq!(super::notification_payload(b"\0\0\0\x07chan"), None);
        assert_eq!(super::notification_payload(b"\0\0"), None);
    }
}
