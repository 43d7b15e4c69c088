//! Decoders for the few messages pgsplit reads: startup packets and the client messages routing needs. Every read is bounds-checked.

use std::collections::BTreeMap;

use std::borrow::Cow;

use bytes::Bytes;

use super::encoding::{ClientEncoding, TextError};

/// Protocol version 3.0 as sent in a StartupMessage.
pub const PROTOCOL_3_0: u32 = 196_608;
/// SSLRequest code.
pub const SSL_REQUEST: u32 = 80_877_103;
/// GSSENCRequest code.
pub const GSSENC_REQUEST: u32 = 80_877_104;
/// CancelRequest code.
pub const CANCEL_REQUEST: u32 = 80_877_102;

/// Why a message body could not be decoded.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The body ended before a field did.
    #[error("message is truncated")]
    Truncated,
    /// A string was not valid in the client's encoding (or one pgsplit cannot read).
    #[error(transparent)]
    Text(#[from] TextError),
    /// Bytes were left after the last field.
    #[error("trailing bytes in message")]
    Trailing,
    /// The startup packet asked for an unsupported protocol version.
    #[error("unsupported frontend protocol {0}.{1}")]
    Version(u16, u16),
}

/// The first packet of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    /// A StartupMessage with its parameters (user, database, options, ...) and the protocol's minor version (3.x:
    /// pgsplit speaks 3.0 and answers a newer minor with NegotiateProtocolVersion, as PostgreSQL 15 does).
    Params {
        /// Parameters by name, in the packet's order of names.
        params: BTreeMap<String, String>,
        /// The requested minor version of protocol 3.
        minor: u16,
    },
    /// The client asks to switch to TLS.
    SslRequest,
    /// The client asks for GSSAPI encryption (always declined).
    GssEncRequest,
    /// Cancel the query running for the session with this key.
    Cancel { pid: i32, secret: i32 },
}

/// Decodes a startup-phase payload (after its length field).
pub fn startup(payload: &[u8]) -> Result<Startup, DecodeError> {
    let mut r = Reader::new(payload);
    let code = r.u32()?;
    match code {
        SSL_REQUEST => Ok(Startup::SslRequest),
        GSSENC_REQUEST => Ok(Startup::GssEncRequest),
        CANCEL_REQUEST => Ok(Startup::Cancel { pid: r.i32()?, secret: r.i32()? }),
        code if code >> 16 == 3 => {
            let mut params = BTreeMap::new();
            loop {
                let key = r.text(ClientEncoding::UTF8)?;
                if key.is_empty() {
                    break;
                }
                let value = r.text(ClientEncoding::UTF8)?;
                params.insert(key.into_owned(), value.into_owned());
            }
            Ok(Startup::Params { params, minor: (code & 0xffff) as u16 })
        }
        other => Err(DecodeError::Version((other >> 16) as u16, (other & 0xffff) as u16)),
    }
}

/// The SQL bytes of a Query message body (read them with the client's encoding, `ClientEncoding::decode`).
#[inline]
pub fn query(body: &[u8]) -> Result<&[u8], DecodeError> {
    let mut r = Reader::new(body);
    let q = r.bytes_cstr()?;
    r.end()?;
    Ok(q)
}

/// A Parse message: statement name, SQL and declared parameter types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parse<'a> {
    /// Statement name; empty for the unnamed statement.
    pub name: Cow<'a, str>,
    /// SQL text.
    pub sql: Cow<'a, str>,
    /// Declared parameter type OIDs (0 = unspecified).
    pub param_types: Vec<u32>,
}

/// Decodes a Parse message body; names and text are in the client's encoding `enc`.
#[inline]
pub fn parse(body: &[u8], enc: ClientEncoding) -> Result<Parse<'_>, DecodeError> {
    let mut r = Reader::new(body);
    let name = r.text(enc)?;
    let sql = r.text(enc)?;
    let n = r.i16()?;
    let mut param_types = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n.max(0) {
        param_types.push(r.u32()?);
    }
    r.end()?;
    Ok(Parse { name, sql, param_types })
}

/// The statement name at the start of a Parse message body (nothing else is decoded or checked).
#[inline]
pub fn parse_name(body: &[u8], enc: ClientEncoding) -> Result<Cow<'_, str>, DecodeError> {
    Reader::new(body).text(enc)
}

/// Statement name and SQL bytes of a Parse message body as the client sent them (in its encoding).
#[inline]
pub fn parse_raw(body: &[u8]) -> Result<(&[u8], &[u8]), DecodeError> {
    let mut r = Reader::new(body);
    Ok((r.bytes_cstr()?, r.bytes_cstr()?))
}

/// Statement name and SQL text of a Parse message body, without decoding the parameter types that follow.
#[inline]
pub fn parse_sql(body: &[u8], enc: ClientEncoding) -> Result<(Cow<'_, str>, Cow<'_, str>), DecodeError> {
    let mut r = Reader::new(body);
    Ok((r.text(enc)?, r.text(enc)?))
}

/// The portal and statement names at the start of a Bind message body.
#[inline]
pub fn bind_names(body: &[u8], enc: ClientEncoding) -> Result<(Cow<'_, str>, Cow<'_, str>), DecodeError> {
    let mut r = Reader::new(body);
    Ok((r.text(enc)?, r.text(enc)?))
}

/// The portal and statement names at the start of a Bind message body, as the client sent them.
#[inline]
pub fn bind_raw(body: &[u8]) -> Result<(&[u8], &[u8]), DecodeError> {
    let mut r = Reader::new(body);
    Ok((r.bytes_cstr()?, r.bytes_cstr()?))
}

/// Kind (`b'S'` statement or `b'P'` portal) and name of a Describe or Close message body.
#[inline]
pub fn describe_or_close(body: &[u8], enc: ClientEncoding) -> Result<(u8, Cow<'_, str>), DecodeError> {
    let mut r = Reader::new(body);
    let kind = r.u8()?;
    let name = r.text(enc)?;
    r.end()?;
    Ok((kind, name))
}

/// Kind and name of a Describe or Close message body, the name as the client sent it.
#[inline]
pub fn describe_or_close_raw(body: &[u8]) -> Result<(u8, &[u8]), DecodeError> {
    let mut r = Reader::new(body);
    let kind = r.u8()?;
    let name = r.bytes_cstr()?;
    r.end()?;
    Ok((kind, name))
}

/// The shape of a statement's result row, from a Describe's answer (RowDescription or NoData): what PostgreSQL
/// compares when it refuses to run a cached plan whose result changed — each column's name, type, length and type
/// modifier (not the table and column numbers a RowDescription also carries). A body that does not decode counts
/// whole.
pub fn row_shape(tag: u8, body: &[u8]) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = foldhash::fast::FixedState::with_seed(0x726f_7773_6861_7065).build_hasher();
    h.write_u8(tag);
    if tag != b'T' || row_columns(body, &mut h).is_err() {
        h.write(body);
    }
    h.finish()
}

/// Hashes the columns of a RowDescription body as `row_shape` says.
fn row_columns(body: &[u8], h: &mut impl std::hash::Hasher) -> Result<(), DecodeError> {
    let mut r = Reader::new(body);
    let n = r.i16()?;
    h.write_i16(n);
    for _ in 0..n.max(0) {
        h.write(r.bytes_cstr()?);
        let (_table, _column) = (r.u32()?, r.i16()?);
        h.write_u32(r.u32()?);
        h.write_i16(r.i16()?);
        h.write_i32(r.i32()?);
        let _format = r.i16()?;
    }
    r.end()
}

/// Portal name of an Execute message body.
#[inline]
pub fn execute_portal(body: &[u8], enc: ClientEncoding) -> Result<Cow<'_, str>, DecodeError> {
    let mut r = Reader::new(body);
    let name = r.text(enc)?;
    r.i32()?;
    r.end()?;
    Ok(name)
}

/// Splits a SASLInitialResponse body into mechanism and initial data.
pub fn sasl_initial(body: &[u8]) -> Result<(&str, &[u8]), DecodeError> {
    let mut r = Reader::new(body);
    let mech = r.cstr()?;
    let len = r.i32()?;
    let data = if len < 0 { &[][..] } else { r.take(len as usize)? };
    r.end()?;
    Ok((mech, data))
}

/// A ParameterStatus body from a server: name and value.
pub fn parameter_status(body: &[u8]) -> Result<(&str, &str), DecodeError> {
    let mut r = Reader::new(body);
    let n = r.cstr()?;
    let v = r.cstr()?;
    Ok((n, v))
}

/// The fields of an ErrorResponse or NoticeResponse body as they are (code, value bytes), without copying; ends at
/// the terminator or at the first field without one (a malformed body yields what precedes it).
pub fn error_field_bytes(body: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut rest = body;
    std::iter::from_fn(move || {
        let (&code, tail) = rest.split_first()?;
        if code == 0 {
            return None;
        }
        let end = memchr::memchr(0, tail)?;
        let (value, after) = tail.split_at(end);
        rest = after.get(1..).unwrap_or_default();
        Some((code, value))
    })
}

/// Fields of an ErrorResponse/NoticeResponse body as (code, value) pairs.
pub fn error_fields(body: &[u8]) -> Result<Vec<(u8, String)>, DecodeError> {
    let mut r = Reader::new(body);
    let mut out = Vec::new();
    loop {
        let code = r.u8()?;
        if code == 0 {
            return Ok(out);
        }
        let v = r.bytes_cstr()?;
        out.push((code, String::from_utf8_lossy(v).into_owned()));
    }
}

/// Copies a body's bytes into an owned `Bytes` only when needed by a caller.
pub fn owned(body: &[u8]) -> Bytes {
    Bytes::copy_from_slice(body)
}

/// A bounds-checked cursor over a message body.
struct Reader<'a> {
    /// Remaining unread bytes.
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn i16(&mut self) -> Result<i16, DecodeError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(self.u32()? as i32)
    }

    #[inline]
    fn bytes_cstr(&mut self) -> Result<&'a [u8], DecodeError> {
        let end = memchr::memchr(0, self.buf).ok_or(DecodeError::Truncated)?;
        let s = &self.buf[..end];
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }

    fn cstr(&mut self) -> Result<&'a str, DecodeError> {
        Ok(super::encoding::utf8(self.bytes_cstr()?)?)
    }

    /// A string in the client's encoding.
    #[inline]
    fn text(&mut self, enc: ClientEncoding) -> Result<Cow<'a, str>, DecodeError> {
        Ok(enc.decode(self.bytes_cstr()?)?)
    }

    fn end(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_fields_are_read_as_sent_and_a_malformed_body_yields_what_precedes_the_fault() {
        let body = b"SFATAL\0C57P01\0M\xe9t\xe9\0\0";
        let fields: Vec<(u8, &[u8])> = error_field_bytes(body).collect();
        assert_eq!(fields, vec![(b'S', &b"FATAL"[..]), (b'C', &b"57P01"[..]), (b'M', &b"\xe9t\xe9"[..])]);
        assert_eq!(error_field_bytes(b"SERROR\0Cunterminated").count(), 1);
        assert_eq!(error_field_bytes(b"").count(), 0);
        assert_eq!(error_field_bytes(b"\0SERROR\0\0").count(), 0);
    }

    #[test]
    fn decodes_startup_parameters() {
        let mut p = PROTOCOL_3_0.to_be_bytes().to_vec();
        p.extend_from_slice(b"user\0app\0database\0handled\0\0");
        let Startup::Params { params: m, minor: 0 } = startup(&p).unwrap() else { panic!("not params") };
        assert_eq!(m["user"], "app");
        assert_eq!(m["database"], "handled");
    }

    #[test]
    fn rejects_truncated_and_unknown_startups() {
        let mut p = PROTOCOL_3_0.to_be_bytes().to_vec();
        p.extend_from_slice(b"user\0app");
        assert_eq!(startup(&p), Err(DecodeError::Truncated));
        assert_eq!(startup(&[0, 2, 0, 0]), Err(DecodeError::Version(2, 0)));
    }

    #[test]
    fn a_newer_minor_of_protocol_3_is_decoded_for_negotiation() {
        let mut p = (PROTOCOL_3_0 + 2).to_be_bytes().to_vec();
        p.extend_from_slice(b"user\0app\0_pq_.x\0y\0\0");
        let Startup::Params { params, minor: 2 } = startup(&p).unwrap() else { panic!("not 3.2 params") };
        assert_eq!(params["_pq_.x"], "y");
    }

    #[test]
    fn query_without_terminator_is_truncated_not_overread() {
        assert_eq!(query(b"select 1"), Err(DecodeError::Truncated));
        assert_eq!(query(b"select 1\0x"), Err(DecodeError::Trailing));
        assert_eq!(query(b"select 1\0"), Ok(&b"select 1"[..]));
    }

    #[test]
    fn parse_with_short_parameter_list_is_an_error() {
        let mut b = b"s1\0select $1\0".to_vec();
        b.extend_from_slice(&2i16.to_be_bytes());
        b.extend_from_slice(&23u32.to_be_bytes());
        assert_eq!(parse(&b, ClientEncoding::UTF8), Err(DecodeError::Truncated));
        b.extend_from_slice(&25u32.to_be_bytes());
        let p = parse(&b, ClientEncoding::UTF8).unwrap();
        assert_eq!((&*p.name, &*p.sql, p.param_types), ("s1", "select $1", vec![23, 25]));
    }

    #[test]
    fn names_and_text_are_read_in_the_clients_encoding() {
        let latin1 = ClientEncoding::from_name("LATIN1").unwrap();
        let p = parse(b"caf\xe9\0select '\xe9'\0\0\0", latin1).unwrap();
        assert_eq!((&*p.name, &*p.sql), ("café", "select 'é'"));
        assert!(matches!(
            parse(b"caf\xe9\0select 1\0\0\0", ClientEncoding::UTF8),
            Err(DecodeError::Text(TextError::Invalid { .. }))
        ));
        assert_eq!(bind_raw(b"p\0caf\xe9\0rest"), Ok((&b"p"[..], &b"caf\xe9"[..])));
    }

    #[test]
    fn a_row_shape_is_names_types_lengths_and_modifiers_only() {
        let column = |name: &str, table: u32, ty: u32, typmod: i32| {
            let mut c = name.as_bytes().to_vec();
            c.push(0);
            c.extend_from_slice(&table.to_be_bytes());
            c.extend_from_slice(&1i16.to_be_bytes());
            c.extend_from_slice(&ty.to_be_bytes());
            c.extend_from_slice(&(-1i16).to_be_bytes());
            c.extend_from_slice(&typmod.to_be_bytes());
            c.extend_from_slice(&0i16.to_be_bytes());
            c
        };
        let row = |columns: &[Vec<u8>]| [&(columns.len() as i16).to_be_bytes()[..], &columns.concat()].concat();
        let int_v = row(&[column("v", 16405, 23, -1)]);
        assert_eq!(row_shape(b'T', &int_v), row_shape(b'T', &row(&[column("v", 99999, 23, -1)])), "another table");
        assert_ne!(row_shape(b'T', &int_v), row_shape(b'T', &row(&[column("v", 16405, 25, -1)])), "another type");
        assert_ne!(row_shape(b'T', &int_v), row_shape(b'T', &row(&[column("w", 16405, 23, -1)])), "another name");
        assert_ne!(row_shape(b'T', &int_v), row_shape(b'T', &row(&[column("v", 16405, 23, 8)])), "another modifier");
        assert_ne!(row_shape(b'T', &row(&[])), row_shape(b'n', b""), "no columns is not no data");
        assert_ne!(row_shape(b'T', &int_v[..5]), row_shape(b'T', &int_v[..6]), "a truncated body counts whole");
    }
}
