//! What a request adds to its target's PgBouncer-style figures (SHOW STATS): its bytes each way, and the
//! transaction it ended.

use crate::backend::relay::RelayError;
use crate::protocol::STATUS_IDLE;
use crate::router::TargetId;

use super::state::Payload;
use super::Session;

/// The bytes of a client's request as sent to the target.
#[inline]
pub(super) fn request_bytes(payload: &Payload<'_>) -> u64 {
    let n: usize = match payload {
        Payload::Raw(bytes) => bytes.len(),
        Payload::Batch(frames) => frames.iter().map(|f| f.bytes.len()).sum(),
    };
    n as u64
}

impl Session {
    /// Counts a request's bytes each way, and the transaction when it ended (PgBouncer's SHOW STATS figures).
    #[inline]
    pub(super) fn count_traffic(
        &mut self,
        target: TargetId,
        sent: u64,
        replied: u64,
        result: &Result<u8, RelayError>,
        started: std::time::Instant,
        ended: std::time::Instant,
    ) {
        let stats = &self.app.backend(target).stats;
        stats.traffic(sent, replied);
        match result {
            Ok(STATUS_IDLE) => stats.transaction(self.xact_began.take().unwrap_or(started), ended),
            Ok(_) => {
                self.xact_began.get_or_insert(started);
            }
            Err(_) => self.xact_began = None,
        }
    }
}
