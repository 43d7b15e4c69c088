//! The client's encoding (`client_encoding`): PostgreSQL's names for it, and the text of a client message decoded
//! from it for routing. pgsplit forwards the client's bytes unchanged (the server converts them, as on a direct
//! connection); it only reads them, and reads them as the server will.
//!
//! | PostgreSQL encoding | read with |
//! |---|---|
//! | `UTF8`, `SQL_ASCII` (checked against a UTF8 server's encoding, as PostgreSQL does) | UTF-8 |
//! | `LATIN1` | ISO 8859-1: each byte is the code point of the same number |
//! | `LATIN2`–`LATIN4`, `LATIN6`–`LATIN10`, `ISO_8859_5`–`ISO_8859_8` | the ISO 8859 part |
//! | `LATIN5` (ISO 8859-9) | windows-1254, with 0x80–0x9F as the C1 controls ISO 8859-9 has there |
//! | `WIN866`, `WIN874`, `WIN1250`–`WIN1258`, `KOI8R`, `KOI8U` | the same code page |
//! | `EUC_JP`, `SJIS`, `EUC_KR`, `UHC`, `EUC_CN`, `GBK`, `GB18030`, `BIG5` | the multi-byte decoders of `encoding_rs` |
//! | `EUC_TW`, `EUC_JIS_2004`, `SHIFT_JIS_2004`, `JOHAB`, `MULE_INTERNAL` | ASCII only: a message with a non-ASCII byte is refused (0A000) |
//!
//! Text that is not valid in the encoding is refused with PostgreSQL's 22021 (`invalid byte sequence`), the error a
//! direct connection gives, and the session goes on.

use std::borrow::Cow;

use encoding_rs::Encoding;

/// How a client's text is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientEncoding {
    /// PostgreSQL's name for it, as ParameterStatus reports it.
    name: &'static str,
    reader: Reader,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reader {
    Utf8,
    Latin1,
    /// A code page whose 0x80–0x9F `encoding_rs` reads as windows characters where PostgreSQL has C1 controls.
    C1(&'static Encoding),
    Rs(&'static Encoding),
    AsciiOnly,
}

/// Why a client's text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// Bytes that are not a character of the encoding (SQLSTATE 22021).
    #[error("invalid byte sequence for encoding \"{encoding}\": {bytes}")]
    Invalid {
        /// The encoding's name.
        encoding: &'static str,
        /// The first offending bytes, as PostgreSQL shows them (`0xe9 0x20`).
        bytes: String,
    },
    /// Non-ASCII text in an encoding pgsplit cannot read (SQLSTATE 0A000).
    #[error("pgsplit cannot read non-ASCII text in client_encoding \"{0}\"; use UTF8")]
    Unreadable(&'static str),
}

impl TextError {
    /// The SQLSTATE PostgreSQL (or, for what only pgsplit cannot do, feature_not_supported) gives.
    pub fn code(&self) -> &'static str {
        match self {
            TextError::Invalid { .. } => super::codes::CHARACTER_NOT_IN_REPERTOIRE,
            TextError::Unreadable(_) => super::codes::FEATURE_NOT_SUPPORTED,
        }
    }
}

impl Default for ClientEncoding {
    fn default() -> Self {
        ClientEncoding::UTF8
    }
}

/// PostgreSQL's encoding names and their aliases (`pg_encname_tbl`), in the form PostgreSQL compares them: lower
/// case, without the characters that are not letters or digits. Each maps to the canonical name and its reader.
const NAMES: &[(&str, &str)] = &[
    ("abc", "WIN1258"),
    ("alt", "WIN866"),
    ("big5", "BIG5"),
    ("euccn", "EUC_CN"),
    ("eucjis2004", "EUC_JIS_2004"),
    ("eucjp", "EUC_JP"),
    ("euckr", "EUC_KR"),
    ("euctw", "EUC_TW"),
    ("gb18030", "GB18030"),
    ("gbk", "GBK"),
    ("iso88591", "LATIN1"),
    ("iso885910", "LATIN6"),
    ("iso885913", "LATIN7"),
    ("iso885914", "LATIN8"),
    ("iso885915", "LATIN9"),
    ("iso885916", "LATIN10"),
    ("iso88592", "LATIN2"),
    ("iso88593", "LATIN3"),
    ("iso88594", "LATIN4"),
    ("iso88595", "ISO_8859_5"),
    ("iso88596", "ISO_8859_6"),
    ("iso88597", "ISO_8859_7"),
    ("iso88598", "ISO_8859_8"),
    ("iso88599", "LATIN5"),
    ("johab", "JOHAB"),
    ("koi8", "KOI8R"),
    ("koi8r", "KOI8R"),
    ("koi8u", "KOI8U"),
    ("latin1", "LATIN1"),
    ("latin10", "LATIN10"),
    ("latin2", "LATIN2"),
    ("latin3", "LATIN3"),
    ("latin4", "LATIN4"),
    ("latin5", "LATIN5"),
    ("latin6", "LATIN6"),
    ("latin7", "LATIN7"),
    ("latin8", "LATIN8"),
    ("latin9", "LATIN9"),
    ("mskanji", "SJIS"),
    ("muleinternal", "MULE_INTERNAL"),
    ("shiftjis", "SJIS"),
    ("shiftjis2004", "SHIFT_JIS_2004"),
    ("sjis", "SJIS"),
    ("sqlascii", "SQL_ASCII"),
    ("tcvn", "WIN1258"),
    ("tcvn5712", "WIN1258"),
    ("uhc", "UHC"),
    ("unicode", "UTF8"),
    ("utf8", "UTF8"),
    ("vscii", "WIN1258"),
    ("win", "WIN1251"),
    ("win1250", "WIN1250"),
    ("win1251", "WIN1251"),
    ("win1252", "WIN1252"),
    ("win1253", "WIN1253"),
    ("win1254", "WIN1254"),
    ("win1255", "WIN1255"),
    ("win1256", "WIN1256"),
    ("win1257", "WIN1257"),
    ("win1258", "WIN1258"),
    ("win866", "WIN866"),
    ("win874", "WIN874"),
    ("win932", "SJIS"),
    ("win936", "GBK"),
    ("win949", "UHC"),
    ("win950", "BIG5"),
    ("windows1250", "WIN1250"),
    ("windows1251", "WIN1251"),
    ("windows1252", "WIN1252"),
    ("windows1253", "WIN1253"),
    ("windows1254", "WIN1254"),
    ("windows1255", "WIN1255"),
    ("windows1256", "WIN1256"),
    ("windows1257", "WIN1257"),
    ("windows1258", "WIN1258"),
    ("windows866", "WIN866"),
    ("windows874", "WIN874"),
    ("windows932", "SJIS"),
    ("windows936", "GBK"),
    ("windows949", "UHC"),
    ("windows950", "BIG5"),
];

impl ClientEncoding {
    /// UTF8, PostgreSQL's default for a UTF8 database.
    pub const UTF8: ClientEncoding = ClientEncoding { name: "UTF8", reader: Reader::Utf8 };

    /// The encoding PostgreSQL means by `name` (any case, any punctuation: `utf-8`, `Latin1`, `ISO-8859-5`), or
    /// `None` when PostgreSQL does not know it either (it refuses such a value with 22023).
    pub fn from_name(name: &str) -> Option<ClientEncoding> {
        let clean: String = name.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect();
        let canonical = NAMES.iter().find(|(alias, _)| *alias == clean)?.1;
        let rs = |label: &[u8]| Encoding::for_label(label).map(Reader::Rs);
        let reader = match canonical {
            "UTF8" | "SQL_ASCII" => Reader::Utf8,
            "LATIN1" => Reader::Latin1,
            "LATIN5" => Reader::C1(encoding_rs::WINDOWS_1254),
            "LATIN2" => rs(b"iso-8859-2")?,
            "LATIN3" => rs(b"iso-8859-3")?,
            "LATIN4" => rs(b"iso-8859-4")?,
            "LATIN6" => rs(b"iso-8859-10")?,
            "LATIN7" => rs(b"iso-8859-13")?,
            "LATIN8" => rs(b"iso-8859-14")?,
            "LATIN9" => rs(b"iso-8859-15")?,
            "LATIN10" => rs(b"iso-8859-16")?,
            "ISO_8859_5" => rs(b"iso-8859-5")?,
            "ISO_8859_6" => rs(b"iso-8859-6")?,
            "ISO_8859_7" => rs(b"iso-8859-7")?,
            "ISO_8859_8" => rs(b"iso-8859-8")?,
            "WIN866" => rs(b"ibm866")?,
            "WIN874" => rs(b"windows-874")?,
            "WIN1250" => rs(b"windows-1250")?,
            "WIN1251" => rs(b"windows-1251")?,
            "WIN1252" => rs(b"windows-1252")?,
            "WIN1253" => rs(b"windows-1253")?,
            "WIN1254" => rs(b"windows-1254")?,
            "WIN1255" => rs(b"windows-1255")?,
            "WIN1256" => rs(b"windows-1256")?,
            "WIN1257" => rs(b"windows-1257")?,
            "WIN1258" => rs(b"windows-1258")?,
            "KOI8R" => rs(b"koi8-r")?,
            "KOI8U" => rs(b"koi8-u")?,
            "EUC_JP" => rs(b"euc-jp")?,
            "SJIS" => rs(b"shift_jis")?,
            "EUC_KR" | "UHC" => rs(b"euc-kr")?,
            "EUC_CN" | "GBK" => rs(b"gbk")?,
            "GB18030" => rs(b"gb18030")?,
            "BIG5" => rs(b"big5")?,
            _ => Reader::AsciiOnly,
        };
        Some(ClientEncoding { name: canonical, reader })
    }

    /// PostgreSQL's name for the encoding (`UTF8`, `LATIN1`), as ParameterStatus reports it.
    pub fn name(self) -> &'static str {
        self.name
    }

    /// Whether the encoding reads text as UTF-8 (no conversion between client and a UTF8 server).
    pub fn is_utf8(self) -> bool {
        self.reader == Reader::Utf8
    }

    /// The text `bytes` carry in this encoding: borrowed when it is UTF-8 already (always so for ASCII).
    #[inline]
    pub fn decode(self, bytes: &[u8]) -> Result<Cow<'_, str>, TextError> {
        // The common case, a UTF8 client: one validation, nothing else (every message's names and SQL pass here).
        if self.reader == Reader::Utf8 {
            return utf8(bytes).map(Cow::Borrowed);
        }
        self.decode_other(bytes)
    }

    /// `decode` for the encodings that are not read as UTF-8.
    fn decode_other(self, bytes: &[u8]) -> Result<Cow<'_, str>, TextError> {
        if let Ok(s) = std::str::from_utf8(bytes) {
            if s.is_ascii() {
                return Ok(Cow::Borrowed(s));
            }
        }
        match self.reader {
            Reader::Utf8 => utf8(bytes).map(Cow::Borrowed),
            Reader::Latin1 => Ok(Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect())),
            Reader::C1(enc) => {
                let mut out = String::with_capacity(bytes.len() + bytes.len() / 2);
                for run in bytes.split_inclusive(|b| (0x80..=0x9f).contains(b)) {
                    let (text, c1) = match run.split_last() {
                        Some((&b, head)) if (0x80..=0x9f).contains(&b) => (head, Some(char::from(b))),
                        _ => (run, None),
                    };
                    out.push_str(
                        &enc.decode_without_bom_handling_and_without_replacement(text).ok_or_else(|| self.invalid(bytes, 0))?,
                    );
                    out.extend(c1);
                }
                Ok(Cow::Owned(out))
            }
            Reader::Rs(enc) => match enc.decode_without_bom_handling_and_without_replacement(bytes) {
                Some(text) => Ok(Cow::Owned(text.into_owned())),
                None => Err(self.invalid(bytes, first_invalid(enc, bytes))),
            },
            Reader::AsciiOnly => Err(TextError::Unreadable(self.name)),
        }
    }

    /// The 22021 error for `bytes`, showing up to two bytes from `at` as PostgreSQL does.
    fn invalid(self, bytes: &[u8], at: usize) -> TextError {
        let shown = bytes.get(at..).unwrap_or_default().iter().take(2).map(|b| format!("0x{b:02x}"));
        TextError::Invalid { encoding: self.name, bytes: shown.collect::<Vec<_>>().join(" ") }
    }
}

/// UTF-8 text, or the 22021 error PostgreSQL gives for it.
#[inline]
pub fn utf8(bytes: &[u8]) -> Result<&str, TextError> {
    // Most statements are ASCII: checked a word at a time, a third of the full validation's instructions.
    if bytes.is_ascii() {
        // SAFETY: every byte is ASCII, and ASCII is valid UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s),
        Err(e) => Err(invalid_utf8(bytes, e.valid_up_to())),
    }
}

#[cold]
fn invalid_utf8(bytes: &[u8], at: usize) -> TextError {
    ClientEncoding::UTF8.invalid(bytes, at)
}

/// Where the first byte `enc` cannot read starts (0 when it cannot be found more precisely).
fn first_invalid(enc: &'static Encoding, bytes: &[u8]) -> usize {
    let mut decoder = enc.new_decoder_without_bom_handling();
    let mut out = String::with_capacity(bytes.len() * 3 + 16);
    match decoder.decode_to_string_without_replacement(bytes, &mut out, true) {
        (encoding_rs::DecoderResult::Malformed(len, after), read) => read.saturating_sub(usize::from(len) + usize::from(after)),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_as_postgresql_reads_them() {
        for (given, canonical) in [
            ("utf-8", "UTF8"),
            ("Unicode", "UTF8"),
            ("latin1", "LATIN1"),
            ("ISO-8859-1", "LATIN1"),
            ("iso_8859_5", "ISO_8859_5"),
            ("koi8", "KOI8R"),
            ("win", "WIN1251"),
            ("Shift-JIS", "SJIS"),
            ("sql_ascii", "SQL_ASCII"),
            ("johab", "JOHAB"),
        ] {
            assert_eq!(ClientEncoding::from_name(given).map(ClientEncoding::name), Some(canonical), "{given}");
        }
        assert_eq!(ClientEncoding::from_name("klingon"), None);
        assert_eq!(ClientEncoding::from_name(""), None);
    }

    #[test]
    fn text_is_decoded_from_the_clients_encoding() {
        let enc = |n| ClientEncoding::from_name(n).unwrap();
        assert_eq!(enc("LATIN1").decode(b"caf\xe9").unwrap(), "café");
        assert_eq!(enc("LATIN1").decode(b"\x80").unwrap(), "\u{80}");
        assert_eq!(enc("LATIN5").decode(b"\xdd\x80").unwrap(), "İ\u{80}");
        assert_eq!(enc("KOI8R").decode(b"\xf4\xc1\xc2").unwrap(), "Таб");
        assert_eq!(enc("WIN1251").decode(b"\xd2\xe0\xe1").unwrap(), "Таб");
        // Shift_JIS: the second byte of 表 is 0x5c, a backslash in ASCII.
        assert_eq!(enc("SJIS").decode(b"'\x95\x5c'").unwrap(), "'表'");
        assert_eq!(enc("UTF8").decode("é".as_bytes()).unwrap(), "é");
        assert!(matches!(enc("UTF8").decode(b"ab\xff"), Err(TextError::Invalid { bytes, .. }) if bytes == "0xff"));
        assert!(matches!(enc("EUC_JP").decode(b"a\xa4"), Err(TextError::Invalid { .. })));
        assert_eq!(enc("JOHAB").decode(b"select 1").unwrap(), "select 1");
        assert_eq!(enc("JOHAB").decode(b"select '\x88\x61'"), Err(TextError::Unreadable("JOHAB")));
        // ASCII is borrowed in every encoding.
        assert!(matches!(enc("KOI8R").decode(b"select 1"), Ok(Cow::Borrowed(_))));
    }
}
