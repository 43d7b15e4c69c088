//! A client's statement prepared and described on its own, between two exchanges, to compare its result row with
//! the one the client was given (`session::stale`).

use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};

use crate::protocol::{decode, encode};

use super::relay::{is_fatal, Exchange};
use super::{BackendError, ServerConn};

/// What preparing and describing a statement on its own found (`ServerConn::prepare_and_compare`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Described {
    /// Its result row has the expected shape; the statement is prepared on the connection.
    Same,
    /// Its result row has another shape; the statement is not kept on the connection.
    Changed,
    /// The server refused it: its ErrorResponse, whole.
    Failed(Bytes),
}

impl ServerConn {
    /// Whether nothing is in flight on the connection: no reply due, no error being skipped.
    #[inline]
    pub fn quiet(&self) -> bool {
        self.expect.is_empty() && !self.skipping
    }

    /// Prepares the statement `name` from `parse_body` and describes it, and compares the shape of its result row
    /// (`decode::row_shape`) with `expected`. Kept on the connection only when they agree: closed again otherwise,
    /// so that every client of the statement meets the same comparison here. Ends with Sync when `sync` (only
    /// outside a transaction: a failure then leaves nothing behind), else with Flush (inside a transaction or a
    /// flushed batch: a failure leaves the server skipping until the client's Sync, as the client's own message
    /// would have). Notices, notifications and parameter changes that arrive meanwhile go to `out`, for the client.
    pub async fn prepare_and_compare(
        &mut self,
        name: &Arc<str>,
        parse_body: &Bytes,
        expected: u64,
        sync: bool,
        out: &mut BytesMut,
    ) -> Result<Described, BackendError> {
        let mut request = BytesMut::with_capacity(parse_body.len() + name.len() + 32);
        if let Some(victim) = self.make_room_for(name) {
            encode::message(&mut request, b'C', |b| statement(b, &victim));
        }
        encode::message(&mut request, b'P', |b| b.extend_from_slice(parse_body));
        encode::message(&mut request, b'D', |b| statement(b, name));
        end(&mut request, sync);
        let mut conn = Exchange::start(self);
        let described = match own_messages(&mut conn, &request, sync, b"Tn", out).await? {
            Ok(Some(shape)) if shape == expected => {
                conn.prepared_here(name.clone(), parse_body.clone(), Arc::new(OnceLock::from(shape)));
                Described::Same
            }
            Ok(Some(_)) => {
                request.clear();
                encode::message(&mut request, b'C', |b| statement(b, name));
                end(&mut request, sync);
                match own_messages(&mut conn, &request, sync, b"3", out).await? {
                    Ok(_) => Described::Changed,
                    Err(error) => Described::Failed(error),
                }
            }
            Ok(None) => return Err(BackendError::Protocol("no answer to a Describe".into())),
            Err(error) => Described::Failed(error),
        };
        if matches!(described, Described::Failed(_)) {
            conn.skipping = !sync;
        }
        conn.done();
        Ok(described)
    }
}

/// Sends pgsplit's own extended messages and reads their answers: up to ReadyForQuery when they end with Sync,
/// else up to a message tagged in `last` or an error. Returns the shape of a Describe's answer if one came, or the
/// server's error, whole.
async fn own_messages(
    conn: &mut Exchange<'_>,
    request: &[u8],
    sync: bool,
    last: &[u8],
    out: &mut BytesMut,
) -> Result<Result<Option<u64>, Bytes>, BackendError> {
    conn.send(request).await?;
    let (mut shape, mut error) = (None, None);
    loop {
        let f = conn.read_frame().await?;
        match f.tag {
            b'1' | b'3' | b't' => {}
            b'T' | b'n' => shape = Some(decode::row_shape(f.tag, f.body())),
            // The server is ending the connection (a terminated backend, a shutdown): it is closed.
            b'E' if is_fatal(f.body()) => return Err(super::conn::error_from_body(f.body())),
            b'E' => error = Some(f.bytes.clone()),
            b'Z' => conn.status = f.body().first().copied().unwrap_or(b'I'),
            b'N' | b'A' | b'S' => out.extend_from_slice(&f.bytes),
            tag => return Err(BackendError::Protocol(format!("unexpected message '{}' from the server", char::from(tag)))),
        }
        let over = if sync { f.tag == b'Z' } else { error.is_some() || last.contains(&f.tag) };
        if over {
            return Ok(error.map_or(Ok(shape), Err));
        }
    }
}

/// A statement's name in a Describe or Close.
fn statement(b: &mut BytesMut, name: &str) {
    b.extend_from_slice(b"S");
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(&[0]);
}

/// Sync, or Flush.
fn end(b: &mut BytesMut, sync: bool) {
    encode::message(b, if sync { b'S' } else { b'H' }, |_| {});
}
