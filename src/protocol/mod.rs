//! The PostgreSQL v3 wire protocol as pgsplit needs it: framing, the few messages it decodes, and the ones it builds. No I/O here.

pub mod codes;
pub mod decode;
pub mod encode;
pub mod encoding;
pub mod expect;
pub mod framing;

pub use framing::{Frame, FrameError};

/// Transaction status byte carried by ReadyForQuery.
pub const STATUS_IDLE: u8 = b'I';
/// In a transaction block.
pub const STATUS_IN_TX: u8 = b'T';
/// In a failed transaction block.
pub const STATUS_FAILED: u8 = b'E';
