//! A pinned session between statements: the client's next message, or what the server sends unprompted on the
//! pinned connection (LISTEN's notifications, notices, parameter changes), relayed as it arrives.

use std::collections::HashMap;

use bytes::Buf;
use tokio::io::AsyncReadExt;

use crate::backend::{PooledConn, ServerConn};
use crate::protocol::framing::{self, Frame, MAX_MESSAGE_LEN};
use crate::protocol::{codes, encode::PgError};
use crate::router::TargetId;

use super::client::Client;
use super::SessionError;

/// The client's next whole message (`None` when it closed between messages), relaying the pinned connection's
/// asynchronous messages meanwhile; with `drain` (a session at rest, and its user), the session's end if pgsplit
/// shuts down meanwhile.
pub async fn next_frame_or_notification(
    client: &mut Client,
    pins: &mut HashMap<TargetId, Option<PooledConn>>,
    mut drain: Option<(super::drain::Drained<'_>, &str)>,
) -> Result<Option<Frame>, SessionError> {
    loop {
        if let Some(f) = framing::next_frontend(&mut client.rbuf)? {
            return Ok(Some(f));
        }
        let Some(pooled) = pins.values_mut().flatten().next() else { return client.read_frame().await };
        let conn: &mut ServerConn = pooled;
        if client.rbuf.capacity() - client.rbuf.len() < 1024 {
            client.rbuf.reserve(8192);
        }
        if conn.rbuf.capacity() - conn.rbuf.len() < 1024 {
            conn.rbuf.reserve(8192);
        }
        let drained = async {
            match drain.as_mut() {
                Some((d, _)) => d.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = drained => return super::drain::closing(drain.as_ref().map_or("", |(_, user)| user)),
            r = client.stream.read_buf(&mut client.rbuf) => {
                if r? == 0 {
                    return if client.rbuf.is_empty() { Ok(None) } else { Err(SessionError::ClientGone) };
                }
            }
            r = conn.stream.read_buf(&mut conn.rbuf) => match r {
                Ok(n) if n > 0 => relay_unprompted(client, conn).await?,
                // The pinned connection is gone; the session learns of it at its next statement.
                _ => {
                    conn.broken = true;
                    let err = PgError::error(codes::CONNECTION_FAILURE, "the pinned server connection closed");
                    tracing::warn!(error = %err, "pinned server connection lost");
                    for slot in pins.values_mut() {
                        if slot.as_ref().is_some_and(|c| c.broken) {
                            slot.take();
                        }
                    }
                }
            },
        }
    }
}

/// Relays complete NotificationResponse, NoticeResponse and ParameterStatus messages; anything else from an idle
/// connection breaks it.
async fn relay_unprompted(client: &mut Client, conn: &mut ServerConn) -> Result<(), SessionError> {
    let mut off = 0;
    while let Ok(Some(n)) = framing::peek_len(&conn.rbuf[off..], |_| Some(MAX_MESSAGE_LEN)) {
        if !matches!(conn.rbuf[off], b'A' | b'N' | b'S') {
            conn.broken = true;
            break;
        }
        off += n;
    }
    if off > 0 {
        client.write_raw(&conn.rbuf[..off]).await?;
        conn.rbuf.advance(off);
    }
    Ok(())
}
