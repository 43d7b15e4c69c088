//! The router: pure, synchronous decisions of which target runs a statement (SPEC §3). No I/O, no statics.
//!
//! A statement's text is analysed once (`analyze`, or the `fallback` token scan when sqlparser
//! rejects it) into the names it touches; the analysis is cached by text (`cache`) and resolved
//! against the routing table and the session's view on every use (`decide`).

pub mod analyze;
pub mod cache;
pub mod commands;
pub mod depth;
pub mod fallback;
pub mod hint;
pub mod keys;
pub mod literals;
pub mod memo;
pub mod resolve;

use std::collections::HashMap;
use std::sync::Arc;

pub use crate::catalog::Catalog;
pub use cache::RouteCache;
pub use memo::DecisionMemo;
pub use resolve::{parse_search_path, Resolved};

/// Index of a target in the routing table's `targets`.
pub type TargetId = usize;

/// What the router knows of the configuration: target names and which schema each owns.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    /// Target names in configuration order; a `TargetId` indexes this.
    pub targets: Vec<String>,
    /// Routed schema (as PostgreSQL names it, after case folding) → owning target.
    pub schemas: HashMap<String, TargetId>,
    /// Where statements that touch no routed schema go.
    pub default_target: TargetId,
}

impl RoutingTable {
    /// The id of a target by name.
    pub fn target_id(&self, name: &str) -> Option<TargetId> {
        self.targets.iter().position(|t| t == name)
    }

    /// The name of a target.
    pub fn name(&self, id: TargetId) -> &str {
        self.targets.get(id).map(String::as_str).unwrap_or("?")
    }
}

/// What kind of object a name refers to; schemas route by themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// A table, view, sequence, index or other relation.
    Relation,
    /// A function or procedure.
    Function,
    /// A schema itself (`CREATE SCHEMA workspace`, `GRANT ... IN SCHEMA workspace`).
    Schema,
}

/// One object a statement names, case-folded as PostgreSQL does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Name {
    /// Schema qualifier, if written (for `ObjectKind::Schema`, the schema itself).
    pub schema: Option<String>,
    /// Object name (empty for a schema).
    pub object: String,
    /// Relation, function or schema.
    pub kind: ObjectKind,
    /// The statement creates this object (`CREATE TABLE t`, `CREATE VIEW v`, `CREATE FUNCTION f`): an unqualified
    /// name that does not exist yet resolves to the first existing schema of search_path, as PostgreSQL does.
    pub created: bool,
}

impl Name {
    /// A name as written in the statement (not created by it).
    pub fn new(schema: Option<String>, object: impl Into<String>, kind: ObjectKind) -> Name {
        Name { schema, object: object.into(), kind, created: false }
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.schema, self.kind) {
            (Some(s), ObjectKind::Schema) => write!(f, "schema {s}"),
            (Some(s), _) => write!(f, "{s}.{}", self.object),
            (None, _) => f.write_str(&self.object),
        }
    }
}

/// Transaction control and session commands the session must see, for single-statement texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Anything else: route it.
    Other,
    /// `BEGIN` / `START TRANSACTION` (the text is replayed when the transaction binds).
    Begin,
    /// `COMMIT` / `END`.
    Commit,
    /// `ROLLBACK` / `ABORT` (not to a savepoint).
    Rollback,
    /// `SET pgsplit.target = 'x'`: a session routing default.
    SetTarget(String),
    /// `RESET pgsplit.target`.
    ResetTarget,
    /// `SET [SESSION] name = value` / `TO value`, or `SELECT set_config('name', 'value', false)`: session state the
    /// client expects on every server connection it uses. `value` is SQL text, ready for `SET name TO value`.
    SetParam {
        /// Parameter name, lower case.
        name: String,
        /// The value as SQL text (identifiers and literals as written).
        value: String,
    },
    /// `RESET name` or `SET name TO DEFAULT`.
    ResetParam(String),
    /// `RESET ALL`.
    ResetAll,
    /// `DISCARD ALL`.
    DiscardAll,
    /// `DEALLOCATE [PREPARE] name`, or `ALL` (`None`).
    Deallocate(Option<String>),
    /// A statement that only matters inside the transaction it runs in (`SAVEPOINT`, `RELEASE`, `ROLLBACK TO`,
    /// `SET LOCAL`): before the transaction has a target it is held and replayed there. The tag it completes with.
    Holdable(&'static str),
}

impl Command {
    /// Whether the command changes session parameters that must follow the client to other server connections.
    pub fn changes_session(&self) -> bool {
        matches!(
            self,
            Command::SetParam { .. }
                | Command::ResetParam(_)
                | Command::ResetAll
                | Command::DiscardAll
                | Command::Deallocate(None)
        )
    }

    /// Whether the command drops every prepared statement of the server connection it runs on.
    pub fn forgets_prepared(&self) -> bool {
        matches!(self, Command::DiscardAll | Command::Deallocate(None))
    }
}

/// Everything the router learned from a statement text, independent of any session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    /// Every object named, in order of first appearance, without duplicates.
    pub names: Vec<Name>,
    /// Session-relevant command, for single-statement texts.
    pub command: Command,
    /// Every statement of the text that changes session state (`SetParam`, `ResetParam`, `ResetAll`, `DiscardAll`,
    /// `DEALLOCATE ALL`), in order: the session follows them once the server has accepted the text.
    pub session_changes: Vec<Command>,
    /// Target named by a leading `/* pgsplit: target=x */` comment.
    pub hint: Option<String>,
    /// True when sqlparser rejected the text and the token scan produced `names`.
    pub fallback: bool,
    /// True when the text may write (DML, DDL, COPY FROM, unknown statements in fallback).
    pub writes: bool,
    /// True when the text changes the catalog (CREATE, ALTER, DROP, ...): the catalog is refreshed after it runs.
    pub ddl: bool,
    /// True when the text leaves state on its server connection that cannot be replayed on another (LISTEN,
    /// temporary tables, session advisory locks, cursors WITH HOLD, SQL PREPARE): the session keeps the connection.
    pub pins: bool,
    /// Number of statements in the text.
    pub statements: usize,
    /// The text must run as it is, never inside a transaction pgsplit opens around it: it controls transactions
    /// itself (BEGIN, COMMIT, ROLLBACK, ... AND CHAIN) or PostgreSQL refuses it inside a transaction block
    /// (VACUUM, CREATE DATABASE, ... CONCURRENTLY). See `session::pooler`.
    pub own_transaction: bool,
    /// The database the text needs free of other users (DROP DATABASE, ALTER DATABASE ... RENAME, the template of
    /// CREATE DATABASE): pgsplit closes its idle connections to it first (`commands::database_to_free`).
    pub frees_database: Option<Box<str>>,
    /// Running the text may call `nextval` or `setval`, leaving sequence state (`currval`, `lastval`) in the server
    /// session: it calls them (their first argument shows in `names` as a relation), writes (column defaults,
    /// triggers), calls a function other than the plain built-ins, or sqlparser rejected it. Worked out once per
    /// text (`Analysis::of`). A view whose query calls nextval is not seen.
    pub sequences: bool,
    /// Running the text may read sequence state (`currval`, `lastval`): it calls them, calls a function other than
    /// the plain built-ins, or sqlparser rejected it. Worked out once per text (`Analysis::of`).
    pub observes_sequences: bool,
    /// The text calls the built-in `nextval` or `setval` itself.
    pub calls_nextval: bool,
    /// Running the text may create a temporary object pgsplit cannot see in it: it calls a function or procedure
    /// other than the plain built-ins (whose body may `CREATE TEMP TABLE`), or sqlparser rejected it (a `DO`
    /// block). The session looks for temporary objects before the connection goes back (`Session::temp_check`).
    /// Worked out once per text (`Analysis::of`). A trigger a write fires is not seen.
    pub may_make_temp: bool,
    /// A read that leaves nothing behind in its transaction: no write, DDL, session change or pin, parsed (not
    /// scanned), no hint, only `PLAIN_FUNCTIONS`, and none of `NOT_PLAIN_WORDS` (data-modifying CTEs, SELECT INTO,
    /// row locks, EXPLAIN ANALYZE). Worked out once per text (`Analysis::of`).
    pub plain: bool,
    /// A read (as `plain`, but for its functions) whose reply depends only on the data it reads and the session's
    /// settings: one statement that calls only `CACHEABLE_FUNCTIONS` (never `now()`, `random()`, `current_user`, ...) and names no
    /// time-dependent literal (`'now'`, `'today'`): the session cache may answer it (`cache`).
    pub cacheable: bool,
    /// For one statement on one table: the values its WHERE clause (or an INSERT's single row) fixes columns to,
    /// for the session cache's eviction by key (`keys`). `None` for anything else.
    pub keys: Option<Box<keys::Keys>>,
    /// Running the text may change rows: it writes (DML, COPY FROM, DDL), sqlparser rejected it, it calls a function
    /// other than the plain and cacheable built-ins (which may write), or it holds a word that may make it write
    /// (`EXECUTE` of a prepared statement, `CALL`, a data-modifying CTE). The session cache evicts for it.
    pub may_write: bool,
    /// Every function the text calls is a plain or cacheable built-in (`PLAIN_FUNCTIONS`, `CACHEABLE_FUNCTIONS`).
    pub known_functions: bool,
}

impl Analysis {
    /// Analyses a statement text: hint, then sqlparser, then the fallback scan.
    pub fn of(sql: &str) -> Analysis {
        let hint = hint::leading_target(sql);
        // A text whose tree would be too deep to walk and drop safely is never parsed (`depth`).
        let parsed = if depth::too_deep_to_parse(sql) { None } else { analyze::parse(sql).ok() };
        let mut a = parsed.unwrap_or_else(|| fallback::scan(sql));
        a.hint = hint;
        a.own_transaction |= commands::outside_transaction_block(sql);
        if a.own_transaction {
            a.frees_database = commands::database_to_free(sql).map(String::into_boxed_str);
        }
        // nextval, setval, currval and lastval, as parsed (they are not among `names`' functions).
        let sequence_functions = a.calls_nextval || a.observes_sequences;
        let unknown_functions = a.fallback || !a.calls_only_plain_functions();
        a.sequences = a.calls_nextval || a.writes || unknown_functions;
        a.observes_sequences = a.observes_sequences || unknown_functions;
        a.may_make_temp = unknown_functions;
        let read = a.command == Command::Other
            && !a.writes
            && !a.ddl
            && !a.pins
            && !a.fallback
            && a.hint.is_none()
            && a.session_changes.is_empty()
            && !has_word(sql, NOT_PLAIN_WORDS);
        a.plain = read && a.calls_only_plain_functions();
        a.known_functions = a.names.iter().all(|n| n.kind != ObjectKind::Function || cacheable_function(n) || plain_function(n));
        a.cacheable = read
            && !sequence_functions
            && a.statements == 1
            && a.names.iter().all(|n| n.kind != ObjectKind::Function || cacheable_function(n))
            && !time_literal(sql)
            && !has_word(sql, analyze::REGCLASS_FUNCTIONS);
        // Transaction control and session commands change no rows.
        a.may_write = a.command == Command::Other
            && (a.writes || a.ddl || a.fallback || sequence_functions || !a.known_functions || has_word(sql, WRITING_WORDS));
        a
    }

    /// Whether every function the text calls is one of `PLAIN_FUNCTIONS` (built-ins that leave nothing behind).
    pub fn calls_only_plain_functions(&self) -> bool {
        self.names.iter().all(|n| {
            n.kind != ObjectKind::Function
                || (n.schema.as_deref().is_none_or(|s| s == "pg_catalog") && PLAIN_FUNCTIONS.contains(&n.object.as_str()))
        })
    }

    /// Approximate heap bytes held, for the byte-bounded cache.
    pub fn heap_bytes(&self) -> usize {
        let names: usize = self
            .names
            .iter()
            .map(|n| std::mem::size_of::<Name>() + n.object.len() + n.schema.as_ref().map_or(0, String::len))
            .sum();
        names
            + self.hint.as_ref().map_or(0, String::len)
            + self.frees_database.as_ref().map_or(0, |d| d.len())
            + std::mem::size_of::<Self>()
    }
}

/// The parts of a session the router reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionView<'a> {
    /// The session's search_path, schemas in order (case-folded).
    pub search_path: &'a [String],
    /// The session default set by `SET pgsplit.target`.
    pub target_hint: Option<TargetId>,
}

/// Why the router chose a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The statement's routed relations all live on the target.
    Relations,
    /// A leading `/* pgsplit: target=... */` comment.
    Hint,
    /// The session's `SET pgsplit.target`.
    SessionHint,
    /// No routed relation: the configured default target.
    Default,
    /// sqlparser rejected the text; the token scan found the routed names.
    Fallback,
}

impl Reason {
    /// The word used in `pgsplit route` output, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Relations => "relations",
            Reason::Hint => "hint",
            Reason::SessionHint => "session_hint",
            Reason::Default => "default",
            Reason::Fallback => "fallback",
        }
    }
}

/// A routing decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Where the statement runs.
    pub target: TargetId,
    /// Why.
    pub reason: Reason,
}

/// Why a statement cannot be routed; each maps to an SQLSTATE in the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// Routed names on more than one target (SQLSTATE 0A000).
    #[error("statement touches relations on more than one target: {}", describe(.relations))]
    CrossTarget {
        /// Every routed name with its target's name.
        relations: Vec<(String, String)>,
    },
    /// A hint named a target that is not configured (SQLSTATE 22023).
    #[error("unknown pgsplit target \"{0}\"")]
    UnknownTarget(String),
    /// An unqualified name would resolve through a routed schema whose target's catalog pgsplit has not read
    /// (the target has been unreachable since start): pgsplit cannot tell where the name lives (08006).
    #[error("cannot resolve \"{name}\": search_path reaches schema \"{schema}\" of target \"{target}\", whose catalog is not loaded (is the target down?)")]
    CatalogUnavailable {
        /// The unqualified name.
        name: String,
        /// The routed schema on the path.
        schema: String,
        /// Its target.
        target: String,
    },
    /// sqlparser rejected a write and the scan found no routed name: pgsplit will not guess (0A000).
    #[error("cannot route a statement pgsplit could not parse: it may write and names no routed schema")]
    UnparsedWrite,
}

fn describe(relations: &[(String, String)]) -> String {
    relations.iter().map(|(r, t)| format!("{r} on {t}")).collect::<Vec<_>>().join(", ")
}

/// Decides the target of an analysed statement for a session. Names resolve through the session's search_path and
/// the catalog snapshot (`resolve`); names in unrouted schemas do not constrain the route. Nothing is allocated
/// unless the statement is refused.
pub fn decide(table: &RoutingTable, catalog: &Catalog, a: &Analysis, s: &SessionView<'_>) -> Result<Decision, RouteError> {
    let mut first: Option<TargetId> = None;
    let mut mixed = false;
    for name in &a.names {
        match resolve::resolve(table, catalog, name, s.search_path) {
            Resolved::Target { target, .. } => {
                mixed |= first.is_some_and(|f| f != target);
                first = first.or(Some(target));
            }
            Resolved::Unknown { target, schema } => {
                return Err(RouteError::CatalogUnavailable {
                    name: name.to_string(),
                    schema: schema.to_owned(),
                    target: table.name(target).to_owned(),
                })
            }
            Resolved::Unrouted => {}
        }
    }
    if mixed {
        return Err(RouteError::CrossTarget { relations: named(table, &routed_relations(table, catalog, a, s)) });
    }
    if let Some(hint) = &a.hint {
        let t = table.target_id(hint).ok_or_else(|| RouteError::UnknownTarget(hint.clone()))?;
        if first.is_some_and(|f| f != t) {
            let mut rel = named(table, &routed_relations(table, catalog, a, s));
            rel.push((format!("hint target={hint}"), hint.clone()));
            return Err(RouteError::CrossTarget { relations: rel });
        }
        return Ok(Decision { target: t, reason: Reason::Hint });
    }
    match first {
        Some(t) => Ok(Decision { target: t, reason: if a.fallback { Reason::Fallback } else { Reason::Relations } }),
        None => match s.target_hint {
            Some(t) => Ok(Decision { target: t, reason: Reason::SessionHint }),
            // A write pgsplit could not parse and whose names it could not all look up: never guess.
            // Only targets that own a routed schema matter: a passthrough target (no schemas) that is down, its
            // catalog never read, can hold none of the names and must not refuse the logical database's statements.
            None if a.fallback && a.writes && !catalog.knows_all(table.schemas.values().copied()) => {
                Err(RouteError::UnparsedWrite)
            }
            None => Ok(Decision { target: table.default_target, reason: Reason::Default }),
        },
    }
}

/// Every routed name of a statement as written or resolved (`schema.object`), with its target, without duplicates:
/// for refusals and `pgsplit route`.
pub fn routed_relations(table: &RoutingTable, catalog: &Catalog, a: &Analysis, s: &SessionView<'_>) -> Vec<(String, TargetId)> {
    let mut relations: Vec<(String, TargetId)> = Vec::new();
    for name in &a.names {
        if let Resolved::Target { target, schema } = resolve::resolve(table, catalog, name, s.search_path) {
            let shown = match (&name.schema, name.kind) {
                (None, ObjectKind::Relation | ObjectKind::Function) => format!("{schema}.{}", name.object),
                _ => name.to_string(),
            };
            if !relations.iter().any(|(r, _)| *r == shown) {
                relations.push((shown, target));
            }
        }
    }
    relations
}

fn named(table: &RoutingTable, relations: &[(String, TargetId)]) -> Vec<(String, String)> {
    relations.iter().map(|(r, t)| (r.clone(), table.name(*t).to_owned())).collect()
}

/// A shared analysis, as stored in the cache.
pub type SharedAnalysis = Arc<Analysis>;

#[cfg(test)]
mod tests;

/// Words that make a read anything but plain: data-modifying CTEs, SELECT INTO, row locks, EXPLAIN ANALYZE.
pub const NOT_PLAIN_WORDS: &[&str] = &["insert", "update", "delete", "merge", "into", "for", "analyze", "analyse", "lock"];

/// Whether the text has one of `words` as a whole word (ASCII letters, digits and `_`), in any case.
pub fn has_word(sql: &str, words: &[&str]) -> bool {
    sql.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).any(|w| words.iter().any(|k| w.eq_ignore_ascii_case(k)))
}

/// Words that may make a statement write when they stand in it (beyond what sqlparser marks as a write).
const WRITING_WORDS: &[&str] = &["insert", "update", "delete", "merge", "execute", "call", "copy", "truncate", "into"];

/// Date/time words PostgreSQL evaluates against the clock when it reads them as a value.
pub const TIME_WORDS: [&str; 4] = ["now", "today", "tomorrow", "yesterday"];

/// Whether the text quotes a date/time value PostgreSQL evaluates when it reads it (`'now'::timestamptz`,
/// `' today 10:00'`, `$$now$$`): its reply changes with the clock. Over-approximates: any quote (`'` or `$`)
/// followed, after blanks, by one of `TIME_WORDS`.
pub fn time_literal(sql: &str) -> bool {
    let b = sql.as_bytes();
    b.iter().enumerate().filter(|(_, c)| matches!(c, b'\'' | b'$')).any(|(i, _)| {
        let rest = b.get(i + 1..).unwrap_or_default();
        let rest = &rest[rest.iter().take_while(|c| c.is_ascii_whitespace() || **c == b'$').count()..];
        TIME_WORDS.iter().any(|w| rest.get(..w.len()).is_some_and(|p| p.eq_ignore_ascii_case(w.as_bytes())))
    })
}

/// Whether a function is one of `PLAIN_FUNCTIONS` (a built-in, by its unqualified or `pg_catalog` name).
fn plain_function(n: &Name) -> bool {
    n.schema.as_deref().is_none_or(|s| s == "pg_catalog") && PLAIN_FUNCTIONS.contains(&n.object.as_str())
}

/// Whether a function is an immutable built-in (or an aggregate of them) whose result depends only on its
/// arguments: a read calling only these may be answered from the session cache.
fn cacheable_function(n: &Name) -> bool {
    n.schema.as_deref().is_none_or(|s| s == "pg_catalog") && CACHEABLE_FUNCTIONS.contains(&n.object.as_str())
}

/// Built-in functions whose result depends only on their arguments and the rows read (immutable, or aggregates of
/// such): never `now()`, `random()`, `nextval`, `current_user`, `current_setting`, `version()`.
pub const CACHEABLE_FUNCTIONS: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "bool_and",
    "bool_or",
    "every",
    "array_agg",
    "string_agg",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "length",
    "char_length",
    "character_length",
    "octet_length",
    "lower",
    "upper",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "substr",
    "substring",
    "left",
    "right",
    "replace",
    "split_part",
    "strpos",
    "position",
    "concat",
    "concat_ws",
    "md5",
    "abs",
    "round",
    "trunc",
    "floor",
    "ceil",
    "ceiling",
    "json_build_object",
    "jsonb_build_object",
    "json_build_array",
    "jsonb_build_array",
    "to_json",
    "to_jsonb",
    "row_to_json",
    "array_length",
    "cardinality",
];

/// Built-in functions a plain read may call: they leave nothing behind in the transaction. Any other function
/// (user functions in unrouted schemas, locks, sequences, notifications) makes the binding firm.
pub const PLAIN_FUNCTIONS: &[&str] = &[
    "now",
    "current_timestamp",
    "clock_timestamp",
    "statement_timestamp",
    "transaction_timestamp",
    "localtimestamp",
    "version",
    "current_database",
    "current_schema",
    "current_schemas",
    "current_user",
    "session_user",
    "current_setting",
    "inet_server_port",
    "inet_server_addr",
    "inet_client_addr",
    "pg_backend_pid",
    "pg_is_in_recovery",
    "pg_postmaster_start_time",
    "count",
    "coalesce",
    "random",
    "gen_random_uuid",
    "length",
    "lower",
    "upper",
];
