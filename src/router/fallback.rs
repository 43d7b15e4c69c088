//! The fallback when sqlparser rejects a text (SPEC §3.5): a token scan for `schema.name` pairs.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, Tokenizer, Word};

use super::{Analysis, Command, Name, ObjectKind};

/// How deep dollar-quoted bodies are scanned (a `DO` block's body, a function body inside it).
const MAX_BODY_DEPTH: usize = 2;

/// Scans tokens for `word . word` pairs; every pair is a candidate `schema.object` (the router keeps only routed schemas,
/// so alias-qualified columns such as `p.name` do not matter). String literals and comments are single tokens, so their
/// contents are never taken for names; dollar-quoted bodies (`DO $$ ... $$`) are scanned like the text around them,
/// since they may be the only place a routed name appears.
pub fn scan(sql: &str) -> Analysis {
    let Some(tokens) = tokenize(sql) else { return untokenizable(sql) };
    if let Some(a) = reset_time_zone(&tokens) {
        return a;
    }
    let mut names: Vec<Name> = Vec::new();
    collect(&tokens, &mut names, 0);
    let first_keyword = tokens.iter().find_map(|t| match t {
        Token::Word(w) => Some(w.keyword),
        _ => None,
    });
    let reads =
        matches!(first_keyword, Some(Keyword::SELECT | Keyword::SHOW | Keyword::EXPLAIN | Keyword::VALUES | Keyword::TABLE));
    let ddl = matches!(first_keyword, Some(Keyword::CREATE | Keyword::ALTER | Keyword::DROP | Keyword::DO | Keyword::IMPORT));
    let statements = tokens.iter().filter(|t| matches!(t, Token::SemiColon)).count().max(1);
    // Session state pgsplit cannot follow in a text it could not parse keeps the session on its connection.
    let pins = matches!(first_keyword, Some(Keyword::SET | Keyword::RESET | Keyword::DISCARD))
        || names.iter().any(|n| n.schema.is_none() && PINNING_WORDS.contains(&n.object.as_str()));
    scanned(names, !reads, ddl, pins, statements)
}

/// `RESET TIME ZONE` (PostgreSQL's spelling of `RESET timezone`, which sqlparser does not read): a session change
/// pgsplit follows like any RESET, back to the session's startup value.
fn reset_time_zone(tokens: &[Token]) -> Option<Analysis> {
    let words: Vec<&Token> = tokens.iter().filter(|t| !matches!(t, Token::SemiColon | Token::EOF)).collect();
    let is =
        |t: &Token, w: &str| matches!(t, Token::Word(word) if word.quote_style.is_none() && word.value.eq_ignore_ascii_case(w));
    let [reset, time, zone] = words.as_slice() else { return None };
    if !(is(reset, "reset") && is(time, "time") && is(zone, "zone")) {
        return None;
    }
    let reset = Command::ResetParam("timezone".into());
    Some(Analysis {
        command: reset.clone(),
        session_changes: vec![reset],
        fallback: false,
        ..scanned(Vec::new(), false, false, false, 1)
    })
}

/// What the token scan learned: names and flags, no session command (that needs the parse).
fn scanned(names: Vec<Name>, writes: bool, ddl: bool, pins: bool, statements: usize) -> Analysis {
    Analysis {
        names,
        command: Command::Other,
        session_changes: Vec::new(),
        hint: None,
        fallback: true,
        writes,
        ddl,
        pins,
        statements,
        own_transaction: false,
        frees_database: None,
        sequences: true,
        observes_sequences: true,
        calls_nextval: true,
        may_make_temp: true,
        plain: false,
        cacheable: false,
        keys: None,
        may_write: true,
        known_functions: false,
    }
}

/// Words that, in a text sqlparser rejected, may leave state on the server connection (see `commands::pins`).
const PINNING_WORDS: [&str; 9] = [
    "listen",
    "temp",
    "temporary",
    "prepare",
    "hold",
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
];

/// The text's tokens without white space, or `None` when even the tokenizer rejects it.
pub(super) fn tokenize(sql: &str) -> Option<Vec<Token>> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    Some(tokens.into_iter().filter(|t| !matches!(t, Token::Whitespace(_))).collect())
}

/// Adds every `a.b` pair and every other word of `tokens` to `names`, descending into dollar-quoted bodies.
fn collect(tokens: &[Token], names: &mut Vec<Name>, depth: usize) {
    let bodies = collect_words(tokens, names);
    if depth < MAX_BODY_DEPTH {
        for body in bodies {
            collect_body(body, names, depth + 1);
        }
    }
}

/// Adds the names of `tokens` themselves to `names`; returns the dollar-quoted bodies met, in order, for
/// `collect` to descend into.
fn collect_words<'t>(tokens: &'t [Token], names: &mut Vec<Name>) -> Vec<&'t str> {
    let fold = |v: &Word| if v.quote_style.is_some() { v.value.clone() } else { v.value.to_ascii_lowercase() };
    let mut bodies = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i..] {
            [Token::Word(a), Token::Period, Token::Word(b), rest @ ..] => {
                push_new(names, Name::new(Some(fold(a)), fold(b), ObjectKind::Relation));
                // `a.b.c` is db.schema.object or schema.table.column: the next pair is scanned too; a lone `b` is
                // the object of this pair, not an unqualified name.
                i += if matches!(rest.first(), Some(Token::Period)) { 2 } else { 3 };
            }
            // `SCHEMA s` (`CREATE EXTENSION ... SCHEMA s`, `ALTER DEFAULT PRIVILEGES IN SCHEMA s`) names the schema.
            [Token::Word(k), Token::Word(s), ..] if k.keyword == Keyword::SCHEMA && s.keyword != Keyword::IF => {
                push_new(names, Name::new(Some(fold(s)), String::new(), ObjectKind::Schema));
                i += 2;
            }
            // Every other word is a candidate unqualified name; the router keeps those the catalog finds through
            // search_path, so keywords and column names cost a lookup and nothing more.
            [Token::Word(w), ..] => {
                push_new(names, Name::new(None, fold(w), ObjectKind::Relation));
                i += 1;
            }
            [Token::DollarQuotedString(body), ..] => {
                bodies.push(body.value.as_str());
                i += 1;
            }
            _ => i += 1,
        }
    }
    bodies
}

/// Adds the names of a dollar-quoted body found at `depth` to `names`.
fn collect_body(body: &str, names: &mut Vec<Name>, depth: usize) {
    match tokenize(body) {
        Some(inner) => collect(&inner, names, depth),
        // A body the tokenizer rejects (plpgsql is not SQL) is still scanned for its `x.y` shapes.
        None => {
            for n in untokenizable(body).names {
                push_new(names, n);
            }
        }
    }
}

/// Adds `n` to `names` unless it is there already (first sighting keeps its place).
fn push_new(names: &mut Vec<Name>, n: Name) {
    if !names.contains(&n) {
        names.push(n);
    }
}

/// Text even the tokenizer rejects (an unterminated quote): PostgreSQL will reject it too, but never guess:
/// any `x.y` shape makes it a candidate for every schema-looking word.
fn untokenizable(sql: &str) -> Analysis {
    let mut names = Vec::new();
    for word in sql.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.')) {
        if let Some((s, o)) = word.split_once('.') {
            push_new(&mut names, Name::new(Some(s.to_ascii_lowercase()), o.to_ascii_lowercase(), ObjectKind::Relation));
        }
    }
    scanned(names, true, true, true, 1)
}
