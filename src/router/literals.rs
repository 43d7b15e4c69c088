//! The shape of a statement text for the route cache: numeric literals outside quotes, quoted identifiers, dollar
//! quotes and comments become `0`, so the simple protocol's `... WHERE id = 42` and `... WHERE id = 43` share one
//! analysis (SPEC §3.7: parse once per distinct text). Numbers never decide a route; strings (regclass names),
//! identifiers and comments (hints) are left exactly as written.

/// Byte classes for `shape_into`'s scan: one table load decides what a byte starts.
const PLAIN: u8 = 0;
const WORD: u8 = 1;
const DIGIT: u8 = 2;
const SPECIAL: u8 = 3;

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

/// The shape of `sql` (its numeric literals replaced by `0`) into a buffer the caller keeps: true, with the shape
/// in `out`, when `sql` has numeric literals; false (and `out` unspecified) when its shape is `sql` itself.
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
            WORD => {
                i += 1;
                while i < b.len() && CONTINUES_WORD[b[i] as usize] {
                    i += 1;
                }
            }
            DIGIT => {
                let end = i + b[i..].iter().position(|&c| !(c.is_ascii_digit() || c == b'.')).unwrap_or(b.len() - i);
                if !any {
                    any = true;
                    out.clear();
                }
                out.push_str(&sql[copied..i]);
                out.push('0');
                copied = end;
                i = end;
            }
            _ => {
                i = match b[i] {
                    b'\'' => skip_quoted(b, i, b'\'', i > 0 && matches!(b[i - 1], b'e' | b'E')),
                    b'"' => skip_quoted(b, i, b'"', false),
                    b'-' if b.get(i + 1) == Some(&b'-') => b[i..].iter().position(|&c| c == b'\n').map_or(b.len(), |p| i + p + 1),
                    b'/' if b.get(i + 1) == Some(&b'*') => skip_block_comment(b, i),
                    b'$' => skip_dollar(b, i),
                    _ => i + 1,
                }
            }
        }
    }
    if any {
        out.push_str(&sql[copied..]);
    }
    any
}

/// End of a quoted string or identifier starting at `start` (doubled quotes escape; E'' strings also backslash).
fn skip_quoted(b: &[u8], start: usize, quote: u8, backslash: bool) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        if backslash && b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == quote {
            if b.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

/// End of a (nested) block comment starting at `start`.
fn skip_block_comment(b: &[u8], start: usize) -> usize {
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
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    b.len()
}

/// End of a dollar-quoted string (`$$...$$`, `$tag$...$tag$`) at `start`, or just past a `$1` placeholder.
fn skip_dollar(b: &[u8], start: usize) -> usize {
    let tag_end = b[start + 1..].iter().position(|&c| !(c.is_ascii_alphanumeric() || c == b'_')).map(|p| start + 1 + p);
    match tag_end {
        Some(end) if b[end] == b'$' && !b[start + 1..end].first().is_some_and(u8::is_ascii_digit) => {
            let tag = &b[start..=end];
            let body = end + 1;
            b[body..].windows(tag.len()).position(|w| w == tag).map_or(b.len(), |p| body + p + tag.len())
        }
        // `$1`: a parameter, digits included.
        Some(end) => end,
        None => b.len(),
    }
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
    fn shape_into_reuses_its_buffer_and_says_whether_it_wrote_a_shape() {
        let mut out = String::from("left over from an earlier text");
        assert!(shape_into("select 1 from t where id = 22", &mut out));
        assert_eq!(out, "select 0 from t where id = 0");
        assert!(!shape_into("select x from t where id = $1", &mut out));
        assert!(shape_into("select 'a', 7", &mut out));
        assert_eq!(out, "select 'a', 0");
    }
}
