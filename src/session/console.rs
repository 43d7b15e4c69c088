//! The admin console's wire loop (SPEC §6): reads the client's frames, runs each Query through `admin::execute`,
//! and writes its answers; the commands themselves live in `crate::admin`.

use bytes::BytesMut;

use crate::admin::{self, Answer, Reply};
use crate::protocol::encode;
use crate::protocol::{decode, STATUS_IDLE};

use super::machine::console::{Console, Step};
use super::{errors, Session, SessionError};

impl Session {
    /// Serves an admin console session until the client leaves (its transitions: `machine::console`).
    pub(super) async fn run_admin(&mut self) -> Result<(), SessionError> {
        let mut console = Console::default();
        loop {
            // Ends with FATAL 57P01 when pgsplit shuts down, like any session at rest.
            let Some(frame) = self.next_frame_or_drain().await? else { return Ok(()) };
            match console.on(frame.tag) {
                Step::Execute => {
                    let sql = decode::query(frame.body())
                        .and_then(|q| Ok(crate::protocol::encoding::utf8(q)?))
                        .map_err(|e| SessionError::Fatal(errors::invalid_query(e)))?;
                    let reply = admin::execute(&self.app, &self.user, sql).await;
                    write_reply(&mut self.client.wbuf, &reply);
                }
                Step::Ready => encode::ready_for_query(&mut self.client.wbuf, STATUS_IDLE),
                Step::Refuse => errors::console_simple_only().encode(&mut self.client.wbuf),
                Step::Ignore => {}
                Step::End => return Ok(()),
                Step::Unexpected => return Err(SessionError::unexpected_message(frame.tag)),
            }
            self.client.flush().await?;
        }
    }
}

/// Writes a Query's answers, its error if one ended it, and ReadyForQuery.
fn write_reply(buf: &mut BytesMut, reply: &Reply) {
    for answer in &reply.answers {
        match answer {
            Answer::Rows(t) => {
                let columns: Vec<(&str, u32, i16)> = t.columns.iter().map(|(n, ty)| (*n, ty.oid(), ty.size())).collect();
                encode::typed_row_description(buf, &columns);
                for row in &t.rows {
                    let values: Vec<Option<&str>> = row.iter().map(|v| v.as_deref()).collect();
                    encode::data_row(buf, &values);
                }
                encode::command_complete(buf, "SHOW");
            }
            Answer::Notice(message, detail) => {
                crate::protocol::encode::PgError::info_notice(*message, detail.clone()).encode(buf);
                encode::command_complete(buf, "SHOW");
            }
            Answer::Done(tag) => encode::command_complete(buf, tag),
            Answer::Empty => encode::empty_query(buf),
        }
    }
    if let Some(e) = &reply.error {
        e.encode(buf);
    }
    encode::ready_for_query(buf, STATUS_IDLE);
}
