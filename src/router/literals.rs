//! The shape of a statement text for the route cache: numeric literals outside quotes, quoted identifiers, dollar
//! quotes and comments become `0`, so the simple protocol's `... WHERE id = 42` and `... WHERE id = 43` share one
//! analysis (SPEC §3.7: parse once per distinct text). Numbers never decide a route; strings (regclass names),
//! identifiers and comments (hints) are left exactly as written.

/// Byte classes for `shape_into`'s scan: one table load decides what a byte starts.
const PLAIN: u8 = 0;
const WORD: u8 = 1;
const DIGIT: u8 = 2;
const SPECIAL: u8 = 3;
/// A byte no statement worth sharing an analysis holds (control characters, a backslash outside quotes): the text
/// is not shaped at all.
const ODD: u8 = 4;

const CLASS: [u8; 256] = {
    let mut t = [PLAIN; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = if b.is_ascii_digit() {
            DIGIT
        } else if b.is_ascii_alphabetic() || b == b'_' || b >= 0x80 {
            WORD
        } else if matches!(b, b'\'' | b'"' | b'-' | b'/' | b'$') {
            SPECIAL
        } else if (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b == 0x7f || b == b'\\' {
            ODD
        } else {
            PLAIN
        };
        c += 1;
    }
    t
};

/// Bytes that continue a word: letters, digits, `_`, `$`, non-ASCII.
const CONTINUES_WORD: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = matches!(CLASS[c], WORD | DIGIT) || c == b'$' as usize;
        c += 1;
    }
    t
};

/// Digits in a shaped number at most: longer numbers are left as written, so that no text parses only once shaped
/// (sqlparser reads some numbers, a type's length, into a `u64`).
const MAX_DIGITS: usize = 18;

/// The shape of `sql` (its numeric literals replaced by `0`) into a buffer the caller keeps: true, with the shape
/// in `out`, when `sql` has numeric literals; false (and `out` unspecified) when its shape is `sql` itself.
///
/// The shape must read exactly like the text to the tokenizer, but for the numbers' values: a text and its shape
/// share one cached analysis. So the scan is conservative. Only a number standing alone is shaped (`42`, `3.5`;
/// not `t.5`, `8x_`, `1e5`, `0x1F`, `1..2`, or more than `MAX_DIGITS` digits), and a text with anything the scan
/// might read differently from sqlparser (an unterminated quote, comment or dollar body, a backslash in a string,
/// a control character, an odd dollar tag) is not shaped at all.
pub fn shape_into(sql: &str, out: &mut String) -> bool {
    let b = sql.as_bytes();
    let mut any = false;
    // Start of the bytes not yet copied to `out`.
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        match CLASS[b[i] as usize] {
            PLAIN => i += 1,
            // A word, digits inside it included (t1, col2, $ too: a$1).
            WORD => i = skip_word(b, i + 1),
            DIGIT => {
                let end = number_end(b, i);
                let glued = (i > 0 && b[i - 1] == b'.') || b.get(end).is_some_and(|&c| c == b'.' || CONTINUES_WORD[c as usize]);
                if glued || end - i > MAX_DIGITS + 1 {
                    // Part of a longer token: left as written, all of it.
                    i = skip_glued(b, end);
                    continue;
                }
                if !any {
                    any = true;
                    out.clear();
                }
                out.push_str(&sql[copied..i]);
                out.push('0');
                copied = end;
                i = end;
            }
            SPECIAL => {
                let next = match b[i] {
                    b'\'' => skip_quoted(b, i, b'\''),
                    b'"' => skip_quoted(b, i, b'"'),
                    b'-' if b.get(i + 1) == Some(&b'-') => {
                        Some(b[i..].iter().position(|&c| c == b'\n').map_or(b.len(), |p| i + p + 1))
                    }
                    b'/' if b.get(i + 1) == Some(&b'*') => skip_block_comment(b, i),
                    b'$' => skip_dollar(b, i),
                    _ => Some(i + 1),
                };
                let Some(next) = next else { return false };
                i = next;
            }
            _ => return false,
        }
    }
    if any {
        out.push_str(&sql[copied..]);
    }
    any
}

/// End of the word whose rest starts at `i`.
fn skip_word(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && CONTINUES_WORD[b[i] as usize] {
        i += 1;
    }
    i
}

/// End of the number starting at `start`: digits, then at most one `.` and its digits.
fn number_end(b: &[u8], start: usize) -> usize {
    let digits = |from: usize| b[from..].iter().position(|c| !c.is_ascii_digit()).map_or(b.len(), |p| from + p);
    let end = digits(start);
    if b.get(end) == Some(&b'.') {
        digits(end + 1)
    } else {
        end
    }
}

/// End of a token that a number is glued into (`8x_`, `1.2.3`, `t.5`): word bytes and dots.
fn skip_glued(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i] == b'.' || CONTINUES_WORD[b[i] as usize]) {
        i += 1;
    }
    i
}

/// End of a quoted string or identifier starting at `start` (doubled quotes escape); `None` when it is
/// unterminated or holds a backslash (an `E''` string's escape, read differently whether or not an `E` precedes).
fn skip_quoted(b: &[u8], start: usize, quote: u8) -> Option<usize> {
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == b'\\' {
            return None;
        }
        if b[i] == quote {
            if b.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

/// End of a (nested) block comment starting at `start`; `None` when it is unterminated.
fn skip_block_comment(b: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i + 1 < b.len() {
        match (b[i], b[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// End of a dollar-quoted string (`$$...$$`, `$tag$...$tag$`) at `start`, or just past a `$1` placeholder;
/// `None` when the body is unterminated or the tag is one the scan might read differently from sqlparser (non-ASCII,
/// `$1$`, `$1x`).
fn skip_dollar(b: &[u8], start: usize) -> Option<usize> {
    let end = b[start + 1..].iter().position(|&c| !(c.is_ascii_alphanumeric() || c == b'_')).map_or(b.len(), |p| start + 1 + p);
    let tag = &b[start + 1..end];
    let next = b.get(end).copied();
    if next.is_some_and(|c| c >= 0x80) {
        return None;
    }
    if tag.first().is_some_and(u8::is_ascii_digit) {
        // `$1`: a parameter, digits only, standing alone.
        return (tag.iter().all(u8::is_ascii_digit) && next != Some(b'$')).then_some(end);
    }
    if next != Some(b'$') {
        return Some(end);
    }
    let delimiter = &b[start..=end];
    let body = end + 1;
    b[body..].windows(delimiter.len()).position(|w| w == delimiter).map(|p| body + p + delimiter.len())
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::shape_into;

    /// `sql`'s shape; borrowed when it has no literals.
    fn shape(sql: &str) -> Cow<'_, str> {
        let mut out = String::new();
        if shape_into(sql, &mut out) {
            Cow::Owned(out)
        } else {
            Cow::Borrowed(sql)
        }
    }

    #[test]
    fn numbers_become_zero_and_everything_else_stays() {
        assert_eq!(shape("select * from t where id = 42 and v > 3.5"), "select * from t where id = 0 and v > 0");
        assert_eq!(
            shape("select abalance from pgbench_accounts where aid = 81234;"),
            "select abalance from pgbench_accounts where aid = 0;"
        );
        assert_eq!(shape("select 1 from t1 where c2 = $1 limit 10"), "select 0 from t1 where c2 = $1 limit 0");
        assert_eq!(shape("select x from t where id in (1, 2, 3)"), "select x from t where id in (0, 0, 0)");
    }

    #[test]
    fn quotes_comments_and_dollar_bodies_are_untouched() {
        for sql in [
            "select nextval('workspace.seq2')",
            "select * from \"Table 2\"",
            "/* pgsplit: target=data2 */ select x",
            "select x -- 5\nfrom t",
            "do $$ begin perform 1; end $$",
            "do $f1$ select 2 $f1$",
            "select e'it\\'s 3'",
            "select 'it''s 4'",
        ] {
            assert!(matches!(shape(sql), std::borrow::Cow::Borrowed(_)), "{sql} -> {}", shape(sql));
        }
        assert_eq!(shape("select '7', 8 /* 9 */"), "select '7', 0 /* 9 */");
    }

    #[test]
    fn numbers_glued_to_a_word_a_dot_or_too_long_stay_as_written() {
        assert_eq!(shape("select 8x_, 0x1F, 1e5, t.5, 1.2.3, 1..2, 7"), "select 8x_, 0x1F, 1e5, t.5, 1.2.3, 1..2, 0");
        assert_eq!(shape("select 123456789012345678901234567890, 12"), "select 123456789012345678901234567890, 0");
        assert_eq!(shape("select 3., 4.25"), "select 0, 0");
    }

    #[test]
    fn texts_the_scan_might_read_unlike_sqlparser_are_not_shaped() {
        for sql in [
            "select 'unterminated 1",
            "select \"unterminated 1",
            "select 1 /* unterminated",
            "select $$ unterminated 1",
            "select e'\\'' , 1, '",
            "select 1, \u{0}",
            "select 1 \\ 2",
            "select $1$ 2 $1$",
            "select $1x, 2",
            "select $\u{e9}$ 3 $\u{e9}$",
        ] {
            assert!(matches!(shape(sql), std::borrow::Cow::Borrowed(_)), "{sql:?} -> {:?}", shape(sql));
        }
        assert_eq!(shape("select $1, $tag$ 5 $tag$, 6"), "select $1, $tag$ 5 $tag$, 0");
    }

    #[test]
    fn shape_into_reuses_its_buffer_and_says_whether_it_wrote_a_shape() {
        let mut out = String::from("left over from an earlier text");
        assert!(shape_into("select 1 from t where id = 22", &mut out));
        assert_eq!(out, "select 0 from t where id = 0");
        assert!(!shape_into("select x from t where id = $1", &mut out));
        assert!(shape_into("select 'a', 7", &mut out));
        assert_eq!(out, "select 'a', 0");
    }
}
