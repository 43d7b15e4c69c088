//! What pgsplit expects back from a server for each message of an extended-protocol batch it sent: replies to
//! messages pgsplit added are hidden, replies to messages it answered itself are injected at their place, and the
//! client sees exactly the sequence a direct connection would give it.

use std::sync::{Arc, OnceLock};

/// The reply a forwarded client message gets, by the message that ends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// ParseComplete; the server-side statement name, if named, is forgotten if the Parse fails.
    Parse(Option<Arc<str>>),
    /// BindComplete.
    Bind,
    /// ParameterDescription, then RowDescription or NoData.
    Describe,
    /// DataRows, then CommandComplete, EmptyQueryResponse or PortalSuspended (COPY in between).
    Execute,
    /// CloseComplete.
    Close,
    /// ReadyForQuery.
    Sync,
}

impl Reply {
    /// Whether a server message with `tag` is the last one of this reply.
    pub fn ends_with(&self, tag: u8) -> bool {
        match self {
            Reply::Parse(_) => tag == b'1',
            Reply::Bind => tag == b'2',
            Reply::Describe => tag == b'T' || tag == b'n',
            Reply::Execute => matches!(tag, b'C' | b'I' | b's'),
            Reply::Close => tag == b'3',
            Reply::Sync => tag == b'Z',
        }
    }
}

/// One entry of the queue, in the order the messages were sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// A client message sent on: its replies go to the client.
    Forward(Reply),
    /// A message pgsplit added (the Parse of a statement this connection lacked, the Close of an evicted one): its
    /// one reply is hidden. `statement` is forgotten by the connection if the server refuses the Parse.
    Hide {
        /// Server-side name of a statement this Parse creates.
        statement: Option<Arc<str>>,
    },
    /// A Describe pgsplit added after a client's named Parse: its replies (ParameterDescription, then RowDescription
    /// or NoData) are hidden, and the shape of the statement's result row (`decode::row_shape`) goes into the cell,
    /// the client's `Prepared::shape` (see `session::stale`).
    Shape(Arc<OnceLock<u64>>),
    /// A client message pgsplit answered itself (a Parse the connection already has, a Close of a client name):
    /// this tag-only reply goes to the client at its place.
    Inject(u8),
}

impl Expect {
    /// The server-side statement an entry creates, which an error before its reply undoes.
    pub fn creates(&self) -> Option<&Arc<str>> {
        match self {
            Expect::Forward(Reply::Parse(s)) | Expect::Hide { statement: s } => s.as_ref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_end_with_their_last_message() {
        assert!(Reply::Describe.ends_with(b'n') && !Reply::Describe.ends_with(b't'));
        assert!(Reply::Execute.ends_with(b's') && !Reply::Execute.ends_with(b'D'));
        assert!(Reply::Sync.ends_with(b'Z'));
        let s: Arc<str> = Arc::from("pgsplit_1");
        assert_eq!(Expect::Hide { statement: Some(s.clone()) }.creates(), Some(&s));
        assert_eq!(Expect::Inject(b'1').creates(), None);
    }
}
