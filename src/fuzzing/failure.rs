//! Why the session target's client failed: every way a run can go wrong short of a panic inside pgsplit, each a crash
//! that `SessionHarness::run` reports with this text.

use bytes::Bytes;

use crate::protocol::decode::DecodeError;
use crate::protocol::framing::FrameError;

/// What the fuzzed (or the well-behaved) client saw go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A socket operation of the client failed.
    #[error("{what}: {source}")]
    Io {
        /// Which operation.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// The harness's accept loop ended, so no session task can be watched.
    #[error("the accept loop ended")]
    AcceptLoopEnded,
    /// An SSLRequest or GSSENCRequest was answered with something other than `N`.
    #[error("TLS or GSS request answered {0:?}")]
    EncryptionAnswer(char),
    /// The login succeeded when it should have been refused, or the other way round.
    #[error("login {outcome} for {login:?}")]
    LoginOutcome {
        /// `succeeded` or `refused`.
        outcome: &'static str,
        /// What the client sent.
        login: super::script::Login,
    },
    /// The well-behaved client's login was refused.
    #[error("login refused")]
    LoginRefused,
    /// The connection ended during login without a FATAL error.
    #[error("connection ended during login without a FATAL error")]
    LoginEnded,
    /// A SCRAM step failed on what the server sent.
    #[error("{step}: {source}")]
    Scram {
        /// Which step, as the message reads.
        step: &'static str,
        /// postgres-protocol's error.
        source: std::io::Error,
    },
    /// A message no login expects.
    #[error("unexpected message {0:?} during login")]
    UnexpectedDuringLogin(char),
    /// The well-behaved client's query got no answer.
    #[error("{0:?} not answered")]
    NotAnswered(&'static str),
    /// The probe got no answer and no FATAL error explained why.
    #[error("the connection ended without a FATAL error")]
    EndedWithoutFatal,
    /// The client closed its side and pgsplit kept the connection open.
    #[error("pgsplit did not close the connection after the client closed its side")]
    NotClosed,
    /// The session task ended without a panic but with an error (cancelled).
    #[error("session task failed: {0}")]
    SessionTask(tokio::task::JoinError),
    /// The session task went on after its client closed the connection.
    #[error("the session did not end after its client closed the connection")]
    SessionNotEnded,
    /// The client's reader task failed.
    #[error("reader failed: {0}")]
    Reader(tokio::task::JoinError),
    /// The bytes to the client do not frame as server messages.
    #[error("desync: {0}")]
    Framing(FrameError),
    /// A message type only clients send.
    #[error("desync: message type {0:?} is not a server message")]
    NotServerMessage(char),
    /// A message after a FATAL error.
    #[error("desync: message {0:?} after a FATAL error")]
    AfterFatal(char),
    /// A ReadyForQuery whose status is not `I`, `T` or `E`.
    #[error("desync: ReadyForQuery with status {0:?}")]
    ReadyStatus(Bytes),
    /// An ErrorResponse or NoticeResponse whose fields do not decode.
    #[error("desync: bad error fields: {0}")]
    ErrorFields(DecodeError),
    /// The connection ended inside a message (this many bytes of it).
    #[error("desync: the connection ended inside a message ({0} bytes)")]
    EndedInsideMessage(usize),
}

impl Failure {
    /// The client's socket operation `what` failed.
    pub fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> Failure {
        move |source| Failure::Io { what, source }
    }

    /// SCRAM `step` failed.
    pub fn scram(step: &'static str) -> impl FnOnce(std::io::Error) -> Failure {
        move |source| Failure::Scram { step, source }
    }
}
