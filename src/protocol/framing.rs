//! Message framing: split a byte stream into whole messages (tag + length + body) without copying, checking lengths first.

use bytes::{Buf, Bytes, BytesMut};

/// Startup-phase packets (StartupMessage, SSLRequest, CancelRequest) are small; PostgreSQL itself caps them at 10 000 bytes.
pub const MAX_STARTUP_LEN: usize = 10_000;
/// Largest message accepted from a server: PostgreSQL's own limit for a message is 1 GiB (a DataRow can be that big).
pub const MAX_MESSAGE_LEN: usize = 1 << 30;
/// Largest message accepted from a client (a statement, a Bind, a CopyData): pgsplit holds a message whole to route
/// it, so this bounds a client's read buffer. PostgreSQL accepts up to 1 GiB; statements of 64 MiB are far beyond
/// what applications send (COPY data comes in small messages).
pub const MAX_CLIENT_MESSAGE_LEN: usize = 64 << 20;
/// Cap for every client message before authentication ends (SCRAM's messages are a few hundred bytes; PostgreSQL
/// allows 65,535 for an authentication token): an anonymous connection holds at most this much.
pub const MAX_AUTH_MESSAGE_LEN: usize = 4096;
/// Cap for client messages that carry only names and small fields (Describe, Close, Execute, CopyFail, password).
const MAX_SMALL_LEN: usize = 1 << 20;

/// One whole protocol message: its tag and the complete frame bytes (tag, length, body), shared, never copied.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The message type byte.
    pub tag: u8,
    /// The full frame as received, so it can be relayed unchanged.
    pub bytes: Bytes,
}

impl Frame {
    /// The message body after the tag and length.
    pub fn body(&self) -> &[u8] {
        &self.bytes[5..]
    }
}

/// Why a byte stream could not be framed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The declared length is below the 4 bytes of the length field itself.
    #[error("invalid message length {len} for message type {tag:?}")]
    BadLength { tag: char, len: usize },
    /// The declared length exceeds what this message type may carry.
    #[error("message of type {tag:?} is too long ({len} bytes, limit {limit})")]
    TooLong { tag: char, len: usize, limit: usize },
    /// The client sent a message type that does not exist in protocol 3.0 (frontend side).
    #[error("invalid frontend message type {0:?}")]
    UnknownType(char),
}

/// Length limit for a frontend (client → pgsplit) message type; `None` for unknown types.
pub fn frontend_limit(tag: u8) -> Option<usize> {
    match tag {
        b'Q' | b'P' | b'B' | b'd' | b'F' => Some(MAX_CLIENT_MESSAGE_LEN),
        b'D' | b'C' | b'E' | b'f' | b'p' => Some(MAX_SMALL_LEN),
        b'S' | b'H' | b'X' | b'c' => Some(4),
        _ => None,
    }
}

/// Total size (tag included) of the first message in `buf` if it is complete, `Ok(None)` if more bytes are needed.
/// `limit` gives the largest allowed length field for a tag, `None` meaning the tag is not allowed.
pub fn peek_len(buf: &[u8], limit: impl Fn(u8) -> Option<usize>) -> Result<Option<usize>, FrameError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let tag = buf[0];
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    let max = limit(tag).ok_or(FrameError::UnknownType(tag as char))?;
    if len < 4 {
        return Err(FrameError::BadLength { tag: tag as char, len });
    }
    if len > max {
        return Err(FrameError::TooLong { tag: tag as char, len, limit: max });
    }
    if buf.len() < len + 1 {
        return Ok(None);
    }
    Ok(Some(len + 1))
}

/// Takes the first complete frontend message out of `buf`.
pub fn next_frontend(buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
    take(buf, frontend_limit)
}

/// Takes the first complete frontend message out of `buf`, refusing any longer than `max` (before authentication).
pub fn next_frontend_within(buf: &mut BytesMut, max: usize) -> Result<Option<Frame>, FrameError> {
    take(buf, |tag| frontend_limit(tag).map(|limit| limit.min(max)))
}

/// Takes the first complete backend (server → pgsplit) message out of `buf`; any tag is accepted.
pub fn next_backend(buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
    take(buf, |_| Some(MAX_MESSAGE_LEN))
}

fn take(buf: &mut BytesMut, limit: impl Fn(u8) -> Option<usize>) -> Result<Option<Frame>, FrameError> {
    match peek_len(buf, limit)? {
        None => Ok(None),
        Some(n) => {
            let bytes = buf.split_to(n).freeze();
            Ok(Some(Frame { tag: bytes[0], bytes }))
        }
    }
}

/// Takes a startup-phase packet (no tag: length then payload) out of `buf`; returns the payload after the length.
pub fn next_startup(buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len < 8 {
        return Err(FrameError::BadLength { tag: '\0', len });
    }
    if len > MAX_STARTUP_LEN {
        return Err(FrameError::TooLong { tag: '\0', len, limit: MAX_STARTUP_LEN });
    }
    if buf.len() < len {
        return Ok(None);
    }
    let mut packet = buf.split_to(len);
    packet.advance(4);
    Ok(Some(packet.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn frames_whole_messages_and_waits_for_partial_ones() {
        let mut wire = msg(b'Q', b"select 1\0");
        wire.extend_from_slice(&msg(b'S', b"")[..3]);
        let mut buf = BytesMut::from(&wire[..]);
        let f = next_frontend(&mut buf).unwrap().unwrap();
        assert_eq!(f.tag, b'Q');
        assert_eq!(f.body(), b"select 1\0");
        assert_eq!(next_frontend(&mut buf).unwrap().map(|f| f.tag), None);
        buf.extend_from_slice(&msg(b'S', b"")[3..]);
        assert_eq!(next_frontend(&mut buf).unwrap().map(|f| f.tag), Some(b'S'));
        assert!(buf.is_empty());
    }

    #[test]
    fn rejects_lengths_below_four_and_over_the_type_limit() {
        let mut buf = BytesMut::from(&[b'Q', 0, 0, 0, 3][..]);
        assert!(matches!(next_frontend(&mut buf), Err(FrameError::BadLength { .. })));
        let mut buf = BytesMut::from(&[b'Q', 0x7f, 0xff, 0xff, 0xff][..]);
        assert!(matches!(next_frontend(&mut buf), Err(FrameError::TooLong { .. })));
        let mut buf = BytesMut::from(&[b'S', 0, 0, 0, 9][..]);
        assert!(matches!(next_frontend(&mut buf), Err(FrameError::TooLong { .. })));
    }

    #[test]
    fn rejects_unknown_frontend_types() {
        let mut buf = BytesMut::from(&msg(b'z', b"")[..]);
        assert_eq!(next_frontend(&mut buf).unwrap_err(), FrameError::UnknownType('z'));
    }

    #[test]
    fn startup_packets_are_bounded() {
        let mut buf = BytesMut::from(&[0u8, 0, 0x30, 0x00][..]);
        assert!(matches!(next_startup(&mut buf), Err(FrameError::TooLong { .. })));
        let mut buf = BytesMut::from(&[0u8, 0, 0, 8, 4, 0xd2, 0x16, 0x2f][..]);
        assert_eq!(&next_startup(&mut buf).unwrap().unwrap()[..], &[4, 0xd2, 0x16, 0x2f]);
    }
}
