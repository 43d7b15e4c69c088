//! The fallback when sqlparser rejects a text (SPEC §3.5): a token scan for `schema.name` pairs.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, Tokenizer};

use super::{Analysis, Command, Name, ObjectKind};

/// Scans tokens for `word . word` pairs; every pair is a candidate `schema.object` (the router keeps only routed schemas,
/// so alias-qualified columns such as `p.name` do not matter). String literals and comments are single tokens, so their
/// contents are never taken for names.
pub fn scan(sql: &str) -> Analysis {
    let dialect = PostgreSqlDialect {};
    let tokens: Vec<Token> = match Tokenizer::new(&dialect, sql).tokenize() {
        Ok(t) => t.into_iter().filter(|t| !matches!(t, Token::Whitespace(_))).collect(),
        Err(_) => return untokenizable(sql),
    };
    let fold = |v: &sqlparser::tokenizer::Word| if v.quote_style.is_some() { v.value.clone() } else { v.value.to_lowercase() };
    let mut names: Vec<Name> = Vec::new();
    let mut push = |n: Name| {
        if !names.contains(&n) {
            names.push(n);
        }
    };
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i..] {
            [Token::Word(a), Token::Period, Token::Word(b), ..] => {
                push(Name::new(Some(fold(a)), fold(b), ObjectKind::Relation));
                // `a.b.c` is db.schema.object or schema.table.column: the next pair is scanned too.
                i += 2;
            }
            // Every other word is a candidate unqualified name; the router keeps those the catalog finds through
            // search_path, so keywords and column names cost a lookup and nothing more.
            [Token::Word(w), ..] => {
                push(Name::new(None, fold(w), ObjectKind::Relation));
                i += 1;
            }
            _ => i += 1,
        }
    }
    let first_keyword = tokens.iter().find_map(|t| match t {
        Token::Word(w) => Some(w.keyword),
        _ => None,
    });
    let reads =
        matches!(first_keyword, Some(Keyword::SELECT | Keyword::SHOW | Keyword::EXPLAIN | Keyword::VALUES | Keyword::TABLE));
    let ddl = matches!(first_keyword, Some(Keyword::CREATE | Keyword::ALTER | Keyword::DROP | Keyword::DO | Keyword::IMPORT));
    let statements = tokens.iter().filter(|t| matches!(t, Token::SemiColon)).count().max(1);
    Analysis {
        names,
        command: Command::Other,
        session_changes: Vec::new(),
        hint: None,
        fallback: true,
        writes: !reads,
        ddl,
        statements,
    }
}

/// Text even the tokenizer rejects (an unterminated quote): PostgreSQL will reject it too, but never guess:
/// any `x.y` shape makes it a candidate for every schema-looking word.
fn untokenizable(sql: &str) -> Analysis {
    let mut names = Vec::new();
    for word in sql.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.')) {
        if let Some((s, o)) = word.split_once('.') {
            let n = Name::new(Some(s.to_lowercase()), o.to_lowercase(), ObjectKind::Relation);
            if !names.contains(&n) {
                names.push(n);
            }
        }
    }
    Analysis {
        names,
        command: Command::Other,
        session_changes: Vec::new(),
        hint: None,
        fallback: true,
        writes: true,
        ddl: true,
        statements: 1,
    }
}
