//! Encoders for the messages pgsplit itself sends to clients, each writing into a buffer the caller owns.

use bytes::{BufMut, Bytes, BytesMut};

/// Severity of an ErrorResponse pgsplit raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The statement failed; the session goes on.
    Error,
    /// The session ends after this message.
    Fatal,
    /// Sent as a NoticeResponse: nothing failed, the client is told something it should know.
    Warning,
    /// A NoticeResponse that informs (SQLSTATE 00000): the admin console's SHOW HELP.
    Notice,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
            Severity::Warning => "WARNING",
            Severity::Notice => "NOTICE",
        }
    }
}

/// An error pgsplit reports to a client as an ErrorResponse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgError {
    /// ERROR keeps the session, FATAL ends it.
    pub severity: Severity,
    /// The SQLSTATE clients and drivers act on.
    pub code: &'static str,
    /// The primary human-readable message.
    pub message: String,
    /// Optional detail, e.g. which relations live where.
    pub detail: Option<String>,
    /// Optional hint on what to do instead.
    pub hint: Option<String>,
    /// Why pgsplit refused the statement (a short label for logs and metrics, e.g. `cross_target`); empty when
    /// the error is not a refusal of pgsplit's own. Never sent to the client.
    pub cause: &'static str,
}

impl PgError {
    /// An ERROR-level error with the given SQLSTATE and message.
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        PgError { severity: Severity::Error, code, message: message.into(), detail: None, hint: None, cause: "" }
    }

    /// A FATAL error: the connection ends after it.
    pub fn fatal(code: &'static str, message: impl Into<String>) -> Self {
        PgError { severity: Severity::Fatal, code, message: message.into(), detail: None, hint: None, cause: "" }
    }

    /// A WARNING sent as a NoticeResponse.
    pub fn notice(code: &'static str, message: impl Into<String>) -> Self {
        PgError { severity: Severity::Warning, code, message: message.into(), detail: None, hint: None, cause: "" }
    }

    /// A NOTICE (SQLSTATE 00000) with a detail, as PgBouncer's console answers SHOW HELP.
    pub fn info_notice(message: impl Into<String>, detail: String) -> Self {
        PgError {
            severity: Severity::Notice,
            code: "00000",
            message: message.into(),
            detail: Some(detail),
            hint: None,
            cause: "",
        }
    }

    /// The same error, FATAL: it ends the session (a login that cannot go on).
    pub fn into_fatal(mut self) -> Self {
        self.severity = Severity::Fatal;
        self
    }

    /// Adds a DETAIL field.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds a HINT field.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Labels the refusal's cause (logs and `pgsplit_refusals_total{reason}`).
    pub fn because(mut self, cause: &'static str) -> Self {
        self.cause = cause;
        self
    }

    /// Writes the ErrorResponse message (NoticeResponse for a warning).
    pub fn encode(&self, buf: &mut BytesMut) {
        let tag = if matches!(self.severity, Severity::Warning | Severity::Notice) { b'N' } else { b'E' };
        message(buf, tag, |b| {
            let sev = self.severity.as_str();
            field(b, b'S', sev);
            field(b, b'V', sev);
            field(b, b'C', self.code);
            field(b, b'M', &self.message);
            if let Some(d) = &self.detail {
                field(b, b'D', d);
            }
            if let Some(h) = &self.hint {
                field(b, b'H', h);
            }
            b.put_u8(0);
        });
    }
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.severity.as_str(), self.code, self.message)?;
        if let Some(d) = &self.detail {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}

fn field(buf: &mut BytesMut, code: u8, value: &str) {
    buf.put_u8(code);
    cstr(buf, value);
}

fn cstr(buf: &mut BytesMut, s: &str) {
    // A NUL inside would end the field early; drop it rather than corrupt the frame.
    buf.extend(s.bytes().filter(|&b| b != 0));
    buf.put_u8(0);
}

/// Writes a message with `tag`, letting `body` fill it in, then patches the length.
pub fn message(buf: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    buf.put_u8(tag);
    let at = buf.len();
    buf.put_u32(0);
    body(buf);
    let len = (buf.len() - at) as u32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// AuthenticationOk.
/// A Query message carrying `sql` as it is (bytes in the client's encoding, or pgsplit's own ASCII text).
pub fn query(sql: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(sql.len() + 6);
    message(&mut buf, b'Q', |b| {
        b.extend_from_slice(sql);
        b.put_u8(0);
    });
    buf.freeze()
}

pub fn auth_ok(buf: &mut BytesMut) {
    message(buf, b'R', |b| b.put_i32(0));
}

/// AuthenticationSASL offering the given mechanisms.
pub fn auth_sasl(buf: &mut BytesMut, mechanisms: &[&str]) {
    message(buf, b'R', |b| {
        b.put_i32(10);
        for m in mechanisms {
            cstr(b, m);
        }
        b.put_u8(0);
    });
}

/// AuthenticationSASLContinue (11) or AuthenticationSASLFinal (12) with its data.
pub fn auth_sasl_data(buf: &mut BytesMut, code: i32, data: &[u8]) {
    message(buf, b'R', |b| {
        b.put_i32(code);
        b.extend_from_slice(data);
    });
}

/// AuthenticationMD5Password with its salt.
pub fn auth_md5(buf: &mut BytesMut, salt: [u8; 4]) {
    message(buf, b'R', |b| {
        b.put_i32(5);
        b.extend_from_slice(&salt);
    });
}

/// NegotiateProtocolVersion: the newest protocol version pgsplit speaks and the protocol options it did not
/// recognize.
pub fn negotiate_protocol_version(buf: &mut BytesMut, version: u32, unrecognized: &[String]) {
    message(buf, b'v', |b| {
        b.extend_from_slice(&version.to_be_bytes());
        b.extend_from_slice(&(unrecognized.len() as u32).to_be_bytes());
        for o in unrecognized {
            cstr(b, o);
        }
    });
}

/// ParameterStatus.
pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    message(buf, b'S', |b| {
        cstr(b, name);
        cstr(b, value);
    });
}

/// BackendKeyData: pgsplit's own key for the client, never a server's.
pub fn backend_key_data(buf: &mut BytesMut, pid: i32, secret: i32) {
    message(buf, b'K', |b| {
        b.put_i32(pid);
        b.put_i32(secret);
    });
}

/// ReadyForQuery with a transaction status byte.
pub fn ready_for_query(buf: &mut BytesMut, status: u8) {
    message(buf, b'Z', |b| b.put_u8(status));
}

/// CommandComplete with its tag.
pub fn command_complete(buf: &mut BytesMut, tag: &str) {
    message(buf, b'C', |b| cstr(b, tag));
}

/// EmptyQueryResponse.
pub fn empty_query(buf: &mut BytesMut) {
    message(buf, b'I', |_| {});
}

/// RowDescription for columns of the given (name, type OID, type size), in text format (the admin console).
pub fn typed_row_description(buf: &mut BytesMut, columns: &[(&str, u32, i16)]) {
    message(buf, b'T', |b| {
        b.put_i16(columns.len() as i16);
        for (name, oid, size) in columns {
            cstr(b, name);
            b.put_i32(0); // table oid
            b.put_i16(0); // column number
            b.put_u32(*oid);
            b.put_i16(*size);
            b.put_i32(-1);
            b.put_i16(0); // text format
        }
    });
}

/// RowDescription for text columns (used by pgsplit's own result sets).
pub fn row_description(buf: &mut BytesMut, columns: &[&str]) {
    message(buf, b'T', |b| {
        b.put_i16(columns.len() as i16);
        for c in columns {
            cstr(b, c);
            b.put_i32(0); // table oid
            b.put_i16(0); // column number
            b.put_u32(25); // text
            b.put_i16(-1);
            b.put_i32(-1);
            b.put_i16(0); // text format
        }
    });
}

/// DataRow of text values; `None` is SQL NULL.
pub fn data_row(buf: &mut BytesMut, values: &[Option<&str>]) {
    message(buf, b'D', |b| {
        b.put_i16(values.len() as i16);
        for v in values {
            match v {
                Some(s) => {
                    b.put_i32(s.len() as i32);
                    b.extend_from_slice(s.as_bytes());
                }
                None => b.put_i32(-1),
            }
        }
    });
}

/// ParseComplete, BindComplete, CloseComplete, NoData: tag-only messages.
pub fn tag_only(buf: &mut BytesMut, tag: u8) {
    message(buf, tag, |_| {});
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_carries_code_message_and_detail() {
        let mut buf = BytesMut::new();
        PgError::error("0A000", "cross").with_detail("a on x").encode(&mut buf);
        assert_eq!(buf[0], b'E');
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        assert_eq!(len + 1, buf.len());
        let body = &buf[5..];
        assert!(body.windows(6).any(|w| w == b"C0A000"));
        assert!(body.windows(7).any(|w| w == b"Da on x"));
        assert_eq!(*body.last().unwrap(), 0);
    }

    #[test]
    fn ready_for_query_is_six_bytes() {
        let mut buf = BytesMut::new();
        ready_for_query(&mut buf, b'I');
        assert_eq!(&buf[..], &[b'Z', 0, 0, 0, 5, b'I']);
    }
}
