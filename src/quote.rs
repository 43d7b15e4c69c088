//! Quoting for the SQL text pgsplit writes itself (session settings replayed on a server connection): every name
//! and value that came from a client goes through here, so no client input can add a statement (SPEC §7).

/// A string as an SQL literal that means the same whatever the server's `standard_conforming_strings`: PostgreSQL's
/// own `quote_literal` (quotes doubled; a text with a backslash becomes an `E'...'` string with backslashes doubled,
/// since in a plain literal a backslash escapes the closing quote when that setting is off).
///
/// The text is ASCII whatever the value: a non-ASCII character is written as an `E'...'` escape (`\u00e9`), so the
/// server reads the same value whatever the connection's `client_encoding` when pgsplit replays it.
pub fn literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 3);
    if value.contains('\\') || !value.is_ascii() {
        out.push('E');
    }
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c if c.is_ascii() => out.push(c),
            c if u32::from(c) <= 0xffff => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push_str(&format!("\\U{:08x}", u32::from(c))),
        }
    }
    out.push('\'');
    out
}

/// A name as a quoted SQL identifier (`"` doubled), so it is never read as a keyword or as more than one word.
pub fn ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A configuration parameter name (`work_mem`, `app.tenant`) as SQL: each dotted part a quoted identifier, as
/// `SET` and `RESET` take it.
pub fn guc_name(name: &str) -> String {
    name.split('.').map(ident).collect::<Vec<_>>().join(".")
}

/// `schema.name` as PostgreSQL reads a qualified name: each part folded to lower case unless double-quoted (`""`
/// inside quotes is one `"`). `None` unless there are exactly two non-empty parts.
pub fn split_qualified(text: &str) -> Option<(String, String)> {
    let mut parts = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    '"' => break,
                    c => part.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' || c == '"' {
                    break;
                }
                part.extend(c.to_lowercase());
                chars.next();
            }
        }
        if part.is_empty() {
            return None;
        }
        parts.push(part);
        match chars.next() {
            None => break,
            Some('.') => {}
            Some(_) => return None,
        }
    }
    let [schema, name]: [String; 2] = parts.try_into().ok()?;
    Some((schema, name))
}

/// Why PostgreSQL refuses a configuration parameter name, if it does: a name is one or more dot-separated simple
/// identifiers (a letter, `_` or a non-ASCII character first; then also digits and `$`), as PostgreSQL's
/// `valid_custom_variable_name` checks for custom names and as every built-in name is. Names pgsplit cannot check
/// further (unknown built-ins) are left to the server.
pub fn valid_guc_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|part| {
            let mut bytes = part.bytes();
            bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b >= 0x80)
                && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::tokenizer::{Token, Tokenizer};

    fn tokens(sql: &str) -> Vec<Token> {
        Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize()
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .into_iter()
            .filter(|t| !matches!(t, Token::Whitespace(_)))
            .collect()
    }

    #[test]
    fn qualified_names_fold_as_postgresql_reads_them() {
        assert_eq!(split_qualified("Config.Sessions"), Some(("config".into(), "sessions".into())));
        assert_eq!(split_qualified("\"My\"\"S\".\"T.x\""), Some(("My\"S".into(), "T.x".into())));
        for bad in ["sessions", "a.b.c", ".b", "a.", "\"a", "a.\"\"", "a b.c\"d"] {
            assert_eq!(split_qualified(bad), None, "{bad}");
        }
    }

    #[test]
    fn literals_are_safe_with_either_string_setting() {
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal("a\\'; drop table t; --"), "E'a\\\\''; drop table t; --'");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(guc_name("app.x\"; drop"), "\"app\".\"x\"\"; drop\"");
        // Non-ASCII text is written in ASCII escapes, read the same in every client_encoding.
        assert_eq!(literal("café's"), "E'caf\\u00e9''s'");
        assert_eq!(literal("a\\🎉"), "E'a\\\\\\U0001f389'");
    }

    #[test]
    fn parameter_names_are_checked_as_postgresql_checks_them() {
        for ok in ["work_mem", "application_name", "app.tenant_id", "a.b.c", "_x.y$", "é.x"] {
            assert!(valid_guc_name(ok), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "application_name to 'x'; create table t(id int); set x.y",
            "a.",
            ".a",
            "1a",
            "a.1b",
            "a-b",
            "a;b",
            "x.$y",
        ] {
            assert!(!valid_guc_name(bad), "{bad}");
        }
    }

    proptest! {
        /// Whatever the text, a quoted literal is one string token and a quoted name one identifier per part.
        #[test]
        fn any_text_quotes_to_one_token(s in "\\PC*") {
            let lit = literal(&s);
            let t = tokens(&lit);
            prop_assert_eq!(t.len(), 1, "{}", lit);
            match &t[0] {
                Token::SingleQuotedString(v) | Token::EscapedStringLiteral(v) => prop_assert_eq!(v, &s),
                other => prop_assert!(false, "{:?}", other),
            }
            let id = ident(&s);
            let t = tokens(&id);
            prop_assert_eq!(t.len(), 1, "{}", id);
            prop_assert!(matches!(&t[0], Token::Word(w) if w.quote_style == Some('"') && w.value == s));
        }
    }
}
