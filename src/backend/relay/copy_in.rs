//! COPY FROM STDIN within an exchange: the client's data forwarded as it arrives, and the Sync an extended batch
//! needs after it.

use crate::client::{Client, ClientError};
use crate::protocol::expect::{Expect, Reply};
use crate::protocol::framing;
use crate::session::machine::copy::{self, InCopy};

use super::{forward_buffered, read_either, RelayError, Sink, Step, REPLY_BUFFER_CAP};
use crate::backend::ServerConn;

/// Forwards the client's messages to the server during COPY FROM STDIN, in batches as they arrive, through the one
/// that ends the COPY (`machine::copy::in_copy_from_client`: CopyDone, CopyFail, or a message PostgreSQL refuses).
/// `Some(status)` when the server's replies relayed meanwhile reached ReadyForQuery (it ended the COPY early).
pub(super) async fn copy_from_client(client: &mut Client, conn: &mut ServerConn) -> Result<Option<u8>, RelayError> {
    loop {
        let mut off = 0;
        let mut done = false;
        loop {
            match framing::peek_len(&client.rbuf[off..], framing::frontend_limit) {
                Ok(Some(n)) => {
                    let tag = client.rbuf[off];
                    off += n;
                    if copy::in_copy_from_client(tag) == InCopy::ForwardLast {
                        done = true;
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(RelayError::Client(e.into())),
            }
        }
        if off > 0 {
            // The server answers CopyData only with notices and errors; past the cap they are relayed first.
            let data = client.rbuf.split_to(off).freeze();
            let mut sent = 0;
            while !conn.send_from(&data, &mut sent, REPLY_BUFFER_CAP).await? {
                if let Step::Ready(status) = forward_buffered(client, conn, Sink::Client).await? {
                    // The server ended the COPY and the exchange: it ignores CopyData from now on, but the rest of
                    // this chunk must still go, or the next message would be read as part of it.
                    conn.send_from(&data, &mut sent, usize::MAX).await?;
                    return Ok(Some(status));
                }
            }
        }
        if done {
            return Ok(None);
        }
        if client.fill().await? == 0 {
            return Err(RelayError::Client(ClientError::Gone));
        }
    }
}

/// Sync, as pgsplit sends it to end a batch the server would otherwise not answer.
const SYNC: [u8; 5] = [b'S', 0, 0, 0, 4];

/// After COPY FROM STDIN ended (the client's CopyDone or CopyFail went to the server) in an extended batch whose
/// Sync the server read during the COPY: PostgreSQL ignores Sync there, so it answers the batch only at the next
/// Sync. The client's next message is that Sync when it sends one (drivers send CopyDone and Sync together): it goes
/// to the server. Any other message cannot be answered before a Sync, so pgsplit sends one for it. The server's
/// replies are relayed meanwhile (CommandComplete, an error); `Some(status)` if a ReadyForQuery came first.
pub(super) async fn sync_after_copy(client: &mut Client, conn: &mut ServerConn) -> Result<Option<u8>, RelayError> {
    if !conn.expect.iter().any(|e| *e == Expect::Forward(Reply::Sync)) {
        return Ok(None);
    }
    loop {
        if let Step::Ready(status) = forward_buffered(client, conn, Sink::Client).await? {
            return Ok(Some(status));
        }
        match framing::peek_len(&client.rbuf, framing::frontend_limit) {
            Ok(Some(n)) => {
                if client.rbuf.first() == Some(&b'S') {
                    let sync = client.rbuf.split_to(n);
                    conn.send(&sync).await?;
                } else {
                    conn.send(&SYNC).await?;
                }
                return Ok(None);
            }
            Ok(None) => {}
            Err(e) => return Err(RelayError::Client(e.into())),
        }
        read_either(client, conn).await?;
    }
}
