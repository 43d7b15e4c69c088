//! A client's statement prepared and described on its own, between two exchanges, to compare its result row with
//! the one the client was given (`session::stale`).

use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};

use crate::protocol::{decode, encode};

use super::relay::Exchange;
use super::{BackendError, ServerConn};

/// What preparing and describing a statement on its own gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Described {
    /// The shape of its result row (`decode::row_shape`); the statement is prepared on the connection.
    Shape(u64),
    /// The server refused it: its ErrorResponse, whole.
    Failed(Bytes),
}

impl ServerConn {
    /// Whether nothing is in flight on the connection: no reply due, no error being skipped.
    #[inline]
    pub fn quiet(&self) -> bool {
        self.expect.is_empty() && !self.skipping
    }

    /// Prepares the statement `name` from `parse_body` and describes it. Ends with Sync when `sync` (only outside a
    /// transaction: a failure then leaves nothing behind), else with Flush (inside a transaction or a flushed batch:
    /// a failure leaves the server skipping until the client's Sync, as the client's own message would have).
    /// Notices, notifications and parameter changes that arrive meanwhile are appended to `out`, for the client.
    pub async fn prepare_and_describe(
        &mut self,
        name: &Arc<str>,
        parse_body: &Bytes,
        sync: bool,
        out: &mut BytesMut,
    ) -> Result<Described, BackendError> {
        let mut request = BytesMut::with_capacity(parse_body.len() + name.len() + 32);
        let statement = |b: &mut BytesMut, name: &str| {
            b.extend_from_slice(b"S");
            b.extend_from_slice(name.as_bytes());
            b.extend_from_slice(&[0]);
        };
        if let Some(victim) = self.make_room_for(name) {
            encode::message(&mut request, b'C', |b| statement(b, &victim));
        }
        encode::message(&mut request, b'P', |b| b.extend_from_slice(parse_body));
        encode::message(&mut request, b'D', |b| statement(b, name));
        encode::message(&mut request, if sync { b'S' } else { b'H' }, |_| {});
        let mut conn = Exchange::start(self);
        conn.send(&request).await?;
        let mut result = None;
        loop {
            let f = conn.read_frame().await?;
            match f.tag {
                b'1' | b'3' | b't' => {}
                b'T' | b'n' => result = Some(Described::Shape(decode::row_shape(f.tag, f.body()))),
                // The server is ending the connection (a terminated backend, a shutdown): it is closed.
                b'E' if is_fatal(f.body()) => return Err(super::conn::error_from_body(f.body())),
                b'E' => result = Some(Described::Failed(f.bytes.clone())),
                b'Z' => conn.status = f.body().first().copied().unwrap_or(b'I'),
                b'N' | b'A' | b'S' => out.extend_from_slice(&f.bytes),
                tag => return Err(BackendError::Protocol(format!("unexpected message '{}' from the server", char::from(tag)))),
            }
            let over = if sync { f.tag == b'Z' } else { result.is_some() };
            if over {
                break;
            }
        }
        let result = result.ok_or_else(|| BackendError::Protocol("no answer to a Describe".into()))?;
        match &result {
            Described::Shape(shape) => conn.prepared_here(name.clone(), parse_body.clone(), Arc::new(OnceLock::from(*shape))),
            Described::Failed(_) => conn.skipping = !sync,
        }
        conn.done();
        Ok(result)
    }
}

/// Whether an ErrorResponse body has severity FATAL or PANIC.
fn is_fatal(body: &[u8]) -> bool {
    decode::error_field_bytes(body).any(|(code, v)| code == b'S' && matches!(v, b"FATAL" | b"PANIC"))
}
