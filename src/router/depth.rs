//! The depth guard: which statement texts sqlparser may build a tree for without overflowing a stack.
//!
//! sqlparser parses a chain of binary operators (`1+1+1+...`, `a OR b OR ...`, `'a'||'a'||...`) or of set
//! operations (`SELECT 1 UNION ALL SELECT 1 ...`) in a loop, but the tree it builds is as deep as the chain, and
//! walking, printing and dropping that tree recurse once per level: 35,000 terms overflow a 2 MiB stack and abort
//! the whole process. Nesting by parentheses, subqueries and function calls is already bounded by sqlparser's own
//! recursion limit (50 levels: deeper texts are a parse error and go to the token scan).
//!
//! So before parsing, the tokens that can lengthen such a chain are counted; a text with more than
//! `MAX_CHAIN_TOKENS` of them is never parsed: the token scan (`fallback`) routes it by the names it contains, as it
//! routes any text sqlparser rejects, and PostgreSQL answers it as it would on a direct connection (it runs, or the
//! server's own `54001 stack depth limit exceeded`).

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, Tokenizer};

/// Most chain-lengthening tokens (operators, `AND`/`OR`/`UNION`/..., subscripts) a parsed text may hold. Each adds at
/// most one level to sqlparser's tree; parsing, walking and dropping a level takes well under 128 bytes of stack
/// in a release build, so 2,000 levels fit in an eighth of a 2 MiB worker stack (this file's tests run them on a
/// 256 KiB one; tests/hostile.rs sends the texts that used to abort the process). Real statements stay far below: an ORM's 600-element `IN` list is one level (a list, not a
/// chain), a 600-condition `AND` chain is 600.
pub const MAX_CHAIN_TOKENS: usize = 2_000;

/// Whether `sql` may hold a chain deeper than `MAX_CHAIN_TOKENS`: if so, it must not be given to sqlparser's parser.
/// Texts shorter than the limit cannot (every such token takes at least one byte), so the common case costs one
/// length comparison; longer ones are tokenized (sqlparser's tokenizer is a loop, safe on any input).
pub fn too_deep_to_parse(sql: &str) -> bool {
    if sql.len() <= MAX_CHAIN_TOKENS {
        return false;
    }
    let mut tokenizer = Tokenizer::new(&PostgreSqlDialect {}, sql);
    let Ok(tokens) = tokenizer.tokenize() else {
        // sqlparser's parser would reject it at the same place: the token scan handles such texts already.
        return false;
    };
    tokens.iter().filter(|t| lengthens_chain(t)).count() > MAX_CHAIN_TOKENS
}

/// Whether a token can add a level to a left-leaning chain: any operator or punctuation other than the list and
/// grouping marks, and the keywords that act as infix operators or join set operations.
fn lengthens_chain(token: &Token) -> bool {
    match token {
        Token::Word(w) => matches!(
            w.keyword,
            Keyword::AND
                | Keyword::OR
                | Keyword::XOR
                | Keyword::NOT
                | Keyword::IS
                | Keyword::IN
                | Keyword::LIKE
                | Keyword::ILIKE
                | Keyword::SIMILAR
                | Keyword::BETWEEN
                | Keyword::OVERLAPS
                | Keyword::COLLATE
                | Keyword::AT
                | Keyword::UNION
                | Keyword::EXCEPT
                | Keyword::INTERSECT
                | Keyword::MINUS
                | Keyword::OPERATOR
                | Keyword::NOTNULL
                | Keyword::REGEXP
                | Keyword::RLIKE
                | Keyword::MEMBER
                | Keyword::GLOB
                | Keyword::MATCH
                | Keyword::DIV
        ),
        Token::Whitespace(_)
        | Token::Number(..)
        | Token::Char(_)
        | Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::DollarQuotedString(_)
        | Token::NationalStringLiteral(_)
        | Token::EscapedStringLiteral(_)
        | Token::UnicodeStringLiteral(_)
        | Token::HexStringLiteral(_)
        | Token::Comma
        | Token::SemiColon
        | Token::LParen
        | Token::RParen
        | Token::Period
        | Token::Placeholder(_)
        | Token::EOF => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::Analysis;

    fn chain(first: &str, sep: &str, term: &str, n: usize) -> String {
        let mut s = String::from(first);
        for i in 0..n {
            if i > 0 {
                s.push_str(sep);
            }
            s.push_str(term);
        }
        s
    }

    /// Runs `f` on a thread with `stack` bytes of stack: an overflow aborts the test binary, so passing proves the
    /// margin.
    fn on_stack<T: Send + 'static>(stack: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new().stack_size(stack).spawn(f).expect("spawn").join().expect("no panic")
    }

    #[test]
    fn short_texts_are_never_tokenized_twice_and_pass() {
        assert!(!too_deep_to_parse("select 1+1+1"));
        assert!(!too_deep_to_parse(&chain("select ", "+", "1", MAX_CHAIN_TOKENS / 2)));
    }

    #[test]
    fn long_chains_of_operators_and_set_operations_are_too_deep() {
        for text in [
            chain("select ", "+", "1", 35_000),
            chain("select * from workspace.t where ", " OR ", "id=1", 50_000),
            chain("select ", "||", "'a'", 50_000),
            chain("", " UNION ALL ", "SELECT 1", 100_000),
            chain("select x", "", "::int", 5_000),
            chain("select a", "", "[1]", 5_000),
            chain("select 1", "", " notnull", 200_000),
            chain("select 'a'", "", " regexp 'a'", 50_000),
            chain("select 1", "", " rlike 'a'", 50_000),
        ] {
            assert!(too_deep_to_parse(&text), "{}", &text[..40]);
        }
    }

    #[test]
    fn wide_but_shallow_texts_are_parsed() {
        let values = chain("insert into workspace.t values ", ", ", "(1, 'a, b', 2.5, $1)", 5_000);
        let in_list = chain("select * from workspace.t where id in (", ", ", "1", 20_000) + ")";
        let columns = chain("select ", ", ", "t.a", 5_000) + " from workspace.t t";
        for text in [values, in_list, columns] {
            assert!(!too_deep_to_parse(&text), "{}", &text[..40]);
            assert!(!Analysis::of(&text).fallback, "{}", &text[..40]);
        }
    }

    #[test]
    fn deep_texts_are_routed_by_the_token_scan_on_a_small_stack() {
        let texts = [
            chain("select ", "+", "1", 35_000),
            chain("select * from workspace.t where ", " OR ", "id=1", 50_000),
            chain("select ", "||", "'a'", 50_000),
            chain("", " UNION ALL ", "SELECT 1 FROM reference.r", 100_000),
            chain("select 1", "", " notnull", 200_000),
        ];
        let analyses = on_stack(256 * 1024, move || texts.iter().map(|t| Analysis::of(t)).collect::<Vec<_>>());
        assert!(analyses.iter().all(|a| a.fallback));
        assert_eq!(analyses[1].names.iter().filter(|n| n.schema.as_deref() == Some("workspace")).count(), 1);
        assert_eq!(analyses[3].names.iter().filter(|n| n.schema.as_deref() == Some("reference")).count(), 1);
    }

    #[test]
    fn the_deepest_text_admitted_is_parsed_walked_and_dropped_within_a_fraction_of_a_worker_stack() {
        // Every kind of chain at the limit, parsed (not scanned), on an eighth of tokio's 2 MiB worker stack.
        let n = MAX_CHAIN_TOKENS;
        let texts = [
            chain("select ", "+", "1", n),
            chain("select * from workspace.t where ", " OR ", "id=1", n / 2 - 1),
            chain("select ", "||", "'a'", n),
            chain("", " UNION ALL ", "SELECT 1", n),
            chain("select * from workspace.t where ", " AND ", "(id = 1 OR id = 2)", n / 4 - 1),
            chain("set search_path = ", "||", "'a'", n),
        ];
        let parsed = on_stack(256 * 1024, move || {
            texts.iter().map(|t| (too_deep_to_parse(t), Analysis::of(t).fallback)).collect::<Vec<_>>()
        });
        for (i, (deep, fallback)) in parsed.into_iter().enumerate() {
            assert!(!deep, "text {i} counted as too deep");
            assert!(!fallback, "text {i} was not parsed");
        }
    }
}
