//! What statements do to the session rather than which objects they name: transaction control, SET/RESET and
//! friends, DDL that stales the catalog, writes, and what pins a session to its server connection. sqlparser AST
//! matching, like `analyze`.

use sqlparser::ast::{
    ContextModifier, DiscardObject, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectName, Query, Reset, SelectItem,
    Set, SetExpr, Statement, UnaryOperator, Value,
};

use sqlparser::tokenizer::Token;

use super::analyze::{fold, name_of, parts, string_literal};
use super::{Command, ObjectKind};

/// Session-level advisory lock functions: their locks outlive the transaction, so the session keeps its connection.
pub const SESSION_LOCK_FUNCTIONS: [&str; 4] =
    ["pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock", "pg_try_advisory_lock_shared"];

/// Whether a statement leaves state on its server connection that cannot be replayed elsewhere (SPEC §4 "Pinning"):
/// LISTEN, temporary tables, cursors WITH HOLD, SQL-level PREPARE. (Session advisory locks are found by the walk.)
pub fn pins(st: &Statement) -> bool {
    match st {
        Statement::LISTEN { .. } | Statement::Prepare { .. } => true,
        Statement::CreateTable(t) => t.temporary,
        Statement::CreateView(v) => v.temporary,
        Statement::CreateSequence { temporary, .. } => *temporary,
        Statement::Query(q) => matches!(q.body.as_ref(), SetExpr::Select(s) if s.into.as_ref().is_some_and(|i| i.temporary)),
        Statement::Declare { stmts } => stmts.iter().any(|d| d.hold == Some(true)),
        // Session state pgsplit does not replay: the role, the session's transaction defaults.
        Statement::Set(Set::SetRole { .. } | Set::SetSessionAuthorization(_)) => true,
        Statement::Set(Set::SetTransaction { session: true, .. }) => true,
        st @ Statement::Set(_) => unfollowed_set(st),
        _ => false,
    }
}

/// Whether a statement begins or ends a transaction (the text then runs as it is on a transaction pooler).
pub fn controls_transaction(st: &Statement) -> bool {
    matches!(st, Statement::StartTransaction { .. } | Statement::Commit { .. } | Statement::Rollback { savepoint: None, .. })
}

/// Whether a text starts with a statement PostgreSQL refuses inside a transaction block, or with transaction
/// control (for texts sqlparser rejected). A word scan of the text's start: comments and case do not matter.
pub fn outside_transaction_block(sql: &str) -> bool {
    // CREATE UNIQUE INDEX CONCURRENTLY is CREATE INDEX CONCURRENTLY here.
    let words: Vec<String> = leading_words(sql, 4).into_iter().filter(|x| x != "unique").collect();
    let w = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    match w(0) {
        "vacuum" | "begin" | "commit" | "end" | "abort" => true,
        "start" => w(1) == "transaction",
        // ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] x stays inside the transaction.
        "rollback" => !words.iter().skip(1).any(|x| x == "to"),
        "create" | "drop" | "alter" if matches!(w(1), "database" | "tablespace" | "subscription" | "system") => true,
        "create" | "drop" => w(1) == "index" && w(2) == "concurrently",
        "reindex" => words.iter().skip(1).any(|x| matches!(x.as_str(), "concurrently" | "system" | "database")),
        "discard" => w(1) == "all",
        "prepare" => w(1) == "transaction",
        _ => false,
    }
}

/// Whether a text starts with CREATE, ALTER or DROP DATABASE: a cheap test on the first byte first.
pub fn acts_on_a_database(sql: &str) -> bool {
    matches!(sql.trim_start().as_bytes().first(), Some(b'c' | b'C' | b'a' | b'A' | b'd' | b'D' | b'/' | b'-'))
        && matches!(leading_words(sql, 2).as_slice(), [verb, what] if what == "database" && matches!(verb.as_str(), "create" | "alter" | "drop"))
}

/// The database a text needs free of other users, which PostgreSQL refuses to act on while anyone is connected to
/// it: `DROP DATABASE [IF EXISTS] x`, `ALTER DATABASE x RENAME TO ...` or `SET TABLESPACE ...`, and the template
/// of `CREATE DATABASE ... TEMPLATE [=] x`. Names are folded as PostgreSQL folds them (quoted ones kept).
pub fn database_to_free(sql: &str) -> Option<String> {
    let words = leading_words(sql, 2);
    if words.get(1).map(String::as_str) != Some("database") {
        return None;
    }
    let tokens = super::fallback::tokenize(sql)?;
    let word = |i: usize| match tokens.get(i) {
        Some(Token::Word(w)) if w.quote_style.is_none() => Some(w.value.to_lowercase()),
        Some(Token::Word(w)) => Some(w.value.clone()),
        _ => None,
    };
    let keyword = |i: usize, k: &str| matches!(tokens.get(i), Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(k));
    match words.first().map(String::as_str) {
        Some("drop") if keyword(2, "if") && keyword(3, "exists") => word(4),
        Some("drop") => word(2),
        Some("alter") if keyword(3, "rename") || (keyword(3, "set") && keyword(4, "tablespace")) => word(2),
        Some("create") => {
            let at = (3..tokens.len()).find(|&i| keyword(i, "template"))?;
            let at = if matches!(tokens.get(at + 1), Some(Token::Eq)) { at + 2 } else { at + 1 };
            word(at)
        }
        _ => None,
    }
}

/// The first `n` words of a text, lower case, after white space and comments (`--`, `/* */`).
fn leading_words(sql: &str, n: usize) -> Vec<String> {
    let mut rest = sql;
    let mut words = Vec::new();
    while words.len() < n {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.split_once("*/").map_or("", |(_, after)| after);
        } else {
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            if end == 0 {
                break;
            }
            words.push(rest[..end].to_ascii_lowercase());
            rest = &rest[end..];
        }
    }
    words
}

/// Whether a statement may change data or schema (used to refuse guesses).
pub fn writes(st: &Statement) -> bool {
    match st {
        Statement::Query(_) => false,
        Statement::Copy { to, .. } => !to,
        Statement::StartTransaction { .. } | Statement::Commit { .. } | Statement::Rollback { .. } => false,
        Statement::Set(_) | Statement::ShowVariable { .. } => false,
        // EXPLAIN ANALYZE runs its statement; EXPLAIN of a write without it counts as one too (conservative: the
        // ANALYZE option has several spellings, `EXPLAIN (ANALYZE on, ...)` among them).
        Statement::Explain { statement, .. } => writes(statement),
        _ => true,
    }
}

/// Whether a statement may change what the catalog snapshot holds (relations, functions, schemas).
pub fn changes_catalog(st: &Statement) -> bool {
    !matches!(
        st,
        Statement::Query(_)
            | Statement::Insert(_)
            | Statement::Update(_)
            | Statement::Delete(_)
            | Statement::Merge(_)
            | Statement::Copy { .. }
            | Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
            | Statement::Set(_)
            | Statement::Reset(_)
            | Statement::ShowVariable { .. }
            | Statement::Explain { .. }
            | Statement::Prepare { .. }
            | Statement::Execute { .. }
            | Statement::Deallocate { .. }
            | Statement::Discard { .. }
            | Statement::Declare { .. }
            | Statement::Fetch { .. }
            | Statement::Close { .. }
            | Statement::Call(_)
            | Statement::LISTEN { .. }
            | Statement::UNLISTEN { .. }
            | Statement::NOTIFY { .. }
            | Statement::Lock(_)
            | Statement::Truncate(_)
            | Statement::Analyze(_)
            | Statement::Vacuum(_)
            | Statement::Comment { .. }
            | Statement::Grant(_)
            | Statement::Revoke(_)
    )
}

pub fn command(st: &Statement) -> Command {
    match st {
        Statement::StartTransaction { .. } => Command::Begin,
        Statement::Commit { chain: false, .. } => Command::Commit,
        Statement::Rollback { chain: false, savepoint: None } => Command::Rollback,
        Statement::Rollback { chain: false, savepoint: Some(_) } => Command::Holdable("ROLLBACK"),
        Statement::Savepoint { .. } => Command::Holdable("SAVEPOINT"),
        Statement::ReleaseSavepoint { .. } => Command::Holdable("RELEASE"),
        Statement::Set(Set::SingleAssignment { scope: Some(ContextModifier::Local), .. })
        | Statement::Set(Set::SetTimeZone { local: true, .. }) => Command::Holdable("SET"),
        Statement::Set(Set::SingleAssignment { scope: None, variable, values, .. }) if is_target_var(variable) => {
            match values.as_slice() {
                [v] => match v {
                    Expr::Value(val) => match &val.value {
                        Value::SingleQuotedString(s) => Command::SetTarget(s.clone()),
                        _ => Command::Other,
                    },
                    Expr::Identifier(i) => Command::SetTarget(fold(i)),
                    _ => Command::Other,
                },
                _ => Command::Other,
            }
        }
        Statement::Set(Set::SingleAssignment { scope: None | Some(ContextModifier::Session), variable, values, .. }) => {
            let name = parts(variable).join(".");
            match values.as_slice() {
                [v] if is_keyword(v, "default") => Command::ResetParam(name),
                [] => Command::Other,
                vs => match set_value_sql(vs) {
                    Some(value) => Command::SetParam { name, value },
                    None => Command::Other,
                },
            }
        }
        // SET NAMES is `SET client_encoding`.
        Statement::Set(Set::SetNames { charset_name, collation_name: None }) => {
            Command::SetParam { name: "client_encoding".into(), value: crate::quote::literal(&fold(charset_name)) }
        }
        Statement::Set(Set::SetNamesDefault {}) => Command::ResetParam("client_encoding".into()),
        // SET TIME ZONE LOCAL | DEFAULT resets it; a value is the same as `SET timezone TO value`.
        Statement::Set(Set::SetTimeZone { local: false, value })
            if is_keyword(value, "local") || is_keyword(value, "default") =>
        {
            Command::ResetParam("timezone".into())
        }
        Statement::Set(Set::SetTimeZone { local: false, value }) => match set_value_sql(std::slice::from_ref(value)) {
            Some(value) => Command::SetParam { name: "timezone".into(), value },
            None => Command::Other,
        },
        Statement::Reset(r) => match &r.reset {
            Reset::ConfigurationParameter(p) if is_target_var(p) => Command::ResetTarget,
            Reset::ConfigurationParameter(p) => Command::ResetParam(parts(p).join(".")),
            Reset::ALL => Command::ResetAll,
            Reset::SessionAuthorization => Command::Other,
        },
        Statement::Discard { object_type: DiscardObject::ALL } => Command::DiscardAll,
        Statement::Deallocate { name, .. } if name.quote_style.is_none() && name.value.eq_ignore_ascii_case("all") => {
            Command::Deallocate(None)
        }
        Statement::Deallocate { name, .. } => Command::Deallocate(Some(fold(name))),
        Statement::Query(q) => set_config(q).unwrap_or(Command::Other),
        _ => Command::Other,
    }
}

/// Whether `e` is the unquoted word `word` (`DEFAULT`, `LOCAL`), which `SET` reads as a keyword.
fn is_keyword(e: &Expr, word: &str) -> bool {
    matches!(e, Expr::Identifier(i) if i.quote_style.is_none() && i.value.eq_ignore_ascii_case(word))
}

/// The value of `SET name TO v1, v2, ...` as SQL text pgsplit writes itself when it replays the setting on another
/// server connection: each element rebuilt from what the server read — an identifier folded, a string as it reads,
/// a boolean — as a quoted literal, a signed number as its checked digits (PostgreSQL reads a quoted `'010'` as
/// octal, the number `010` as ten), never the client's text. `None` for anything else (`SET TIME ZONE INTERVAL '1'
/// HOUR`): such a setting is not followed, and the session keeps its server connection (`unfollowed_set`).
pub fn set_value_sql(values: &[Expr]) -> Option<String> {
    let items = values.iter().map(set_value_item).collect::<Option<Vec<String>>>()?;
    Some(items.join(", "))
}

/// One element of a SET value as SQL text: a quoted literal, or a number made of digits, `.`, `_` and an exponent.
fn set_value_item(e: &Expr) -> Option<String> {
    let number = |n: &str, sign: &str| {
        let digits = n.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'e' | b'E' | b'+' | b'-'));
        (digits && n.bytes().next().is_some_and(|b| b.is_ascii_digit() || b == b'.')).then(|| format!("{sign}{n}"))
    };
    match e {
        Expr::Identifier(i) => Some(crate::quote::literal(&fold(i))),
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s) | Value::UnicodeStringLiteral(s) => {
                Some(crate::quote::literal(s))
            }
            Value::DollarQuotedString(d) => Some(crate::quote::literal(&d.value)),
            Value::Number(n, _) => number(n, ""),
            Value::Boolean(b) => Some(crate::quote::literal(&b.to_string())),
            _ => None,
        },
        Expr::UnaryOp { op: op @ (UnaryOperator::Minus | UnaryOperator::Plus), expr } => match expr.as_ref() {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => number(n, if matches!(op, UnaryOperator::Minus) { "-" } else { "" }),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// Whether a statement sets a session parameter in a form pgsplit cannot replay (`set_value_sql` is `None`): the
/// session then keeps its server connection, where the setting lives.
pub fn unfollowed_set(st: &Statement) -> bool {
    matches!(
        st,
        Statement::Set(
            Set::SingleAssignment { scope: None | Some(ContextModifier::Session), .. } | Set::SetTimeZone { local: false, .. }
        )
    ) && matches!(command(st), Command::Other)
        && !matches!(st, Statement::Set(Set::SingleAssignment { values, .. }) if values.is_empty())
}

/// `SELECT set_config('name', 'value', false)` (session-wide; `true` is transaction-local and not followed).
fn set_config(q: &Query) -> Option<Command> {
    let SetExpr::Select(select) = q.body.as_ref() else { return None };
    if !select.from.is_empty() || select.projection.len() != 1 {
        return None;
    }
    let (SelectItem::UnnamedExpr(Expr::Function(f)) | SelectItem::ExprWithAlias { expr: Expr::Function(f), .. }) =
        &select.projection[0]
    else {
        return None;
    };
    let n = name_of(&f.name, ObjectKind::Function)?;
    if n.object != "set_config" || n.schema.as_deref().is_some_and(|s| s != "pg_catalog") {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else { return None };
    let args: Vec<&Expr> = list
        .args
        .iter()
        .filter_map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect();
    let [name, value, local] = args.as_slice() else { return None };
    let is_local = match local {
        Expr::Value(v) => matches!(v.value, Value::Boolean(true)),
        _ => return None,
    };
    let (name, value) = (string_literal(name)?.to_ascii_lowercase(), string_literal(value)?);
    if is_local {
        return None;
    }
    let value = if name == "search_path" {
        super::resolve::search_path_sql(&super::resolve::parse_search_path(value))
    } else {
        crate::quote::literal(value)
    };
    Some(Command::SetParam { name, value })
}

pub fn is_target_var(name: &ObjectName) -> bool {
    parts(name) == ["pgsplit", "target"]
}
