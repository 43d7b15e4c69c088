//! A pinned session between statements: the client's next message, or what the server sends unprompted on the
//! pinned connection (LISTEN's notifications, notices, parameter changes), relayed as it arrives.

use tokio::io::AsyncReadExt;

use crate::backend::relay;
use crate::backend::PooledConn;
use crate::client::Client;
use crate::protocol::framing::{self, Frame};

use super::machine::Machine;
use super::{errors, SessionError};

/// The client's next whole message (`None` when it closed between messages), relaying the pinned connection's
/// asynchronous messages meanwhile; with `drain` (a session at rest, and its user), the session's end if pgsplit
/// shuts down meanwhile.
pub async fn next_frame_or_notification(
    client: &mut Client,
    machine: &mut Machine<PooledConn>,
    mut drain: Option<(super::drain::Drained<'_>, &str)>,
) -> Result<Option<Frame>, SessionError> {
    loop {
        if let Some(f) = framing::next_frontend(&mut client.rbuf)? {
            return Ok(Some(f));
        }
        let Some(conn) = machine.pinned_idle().next() else { return Ok(client.read_frame().await?) };
        if client.rbuf.capacity() - client.rbuf.len() < 1024 {
            client.rbuf.reserve(8192);
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
            r = conn.fill() => match r {
                Ok(_) => {
                    if relay::unprompted(client, conn).await? {
                        // What the session kept on its pinned connection is gone with it: the client's session ends
                        // with the server's FATAL, as a direct connection would.
                        machine.drop_pinned_if(|c| c.is_broken());
                        return Err(SessionError::ServerEnded);
                    }
                }
                // The pinned connection is gone, and what the session kept there with it: the session ends.
                Err(e) => {
                    tracing::warn!(error = %e, "pinned server connection lost");
                    let lost = errors::session_connection_lost(conn.target_name(), Some(&e));
                    machine.drop_pinned_if(|c| c.is_broken());
                    return Err(SessionError::Fatal(lost));
                }
            },
        }
    }
}
