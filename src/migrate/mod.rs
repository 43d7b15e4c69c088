//! `pgsplit migrate` (SPEC §10, the runbook's `db:migrate`): `DIR/<target>/NNN_name.sql` applied in order, each on
//! its target, once, recorded in a table there.
//!
//! A run, in order: read and check every file (`files`); refuse, before anything runs, a migration that names a
//! schema another target owns (split mode; in single mode everything runs on `single_target`); then per target, in
//! configuration order: connect (a target that cannot be reached is skipped and reported, the others go on), take
//! the advisory lock `hashtext('pgsplit migrate <table>')` (a second run waits, then finds the work done), create
//! the record table if missing, refuse the target if a recorded migration's file changed, and apply the pending
//! ones: `BEGIN`, the file as one Query, the record, `COMMIT`; or, for a file whose first line is
//! `-- pgsplit: no-transaction`, each statement as its own Query and the record after the last. The first failure
//! is rolled back (in a transaction), reported with the server's error, the file and the line, and ends the run.

pub mod files;

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::app::target_spec;
use crate::backend::ServerConn;
use crate::config::{Config, Mode, Target};
use crate::protocol::encode;
use crate::quote;
use crate::router::{Analysis, RoutingTable};
use files::{FilesError, Migration};

/// What a run does.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Say what would run where, run nothing.
    pub dry_run: bool,
    /// Only the migrations that run on this target (the runbook's `db:migrate:primary`).
    pub target: Option<String>,
}

/// The record table's name when the configuration names none (`migrations.table`).
pub const DEFAULT_TABLE: &str = "schema_migrations";

/// Why nothing ran.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The files cannot be used.
    #[error(transparent)]
    Files(#[from] FilesError),
    /// A migration names a schema of another target.
    #[error("{0}")]
    CrossTarget(Box<CrossTarget>),
    /// `--target` names no target.
    #[error("no target named {0:?} in the configuration")]
    UnknownTarget(String),
    /// `--target` names another target than `single_target` in single mode.
    #[error("single mode: every migration runs on {single}, none on {asked}")]
    SingleMode {
        /// The target asked for.
        asked: String,
        /// Where everything runs.
        single: String,
    },
}

/// Why a target's run stopped (reported in `TargetRun::error` / `TargetStatus::error`).
#[derive(Debug, thiserror::Error)]
enum RunError {
    /// The target could not be reached or logged in to.
    #[error("cannot reach {target}: {reason}")]
    Unreachable {
        /// The target.
        target: String,
        /// Why.
        reason: String,
    },
    /// pgsplit's own query (lock, record table, records) failed.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// Recorded migrations whose files changed since.
    #[error("changed since applied (restore them, or delete their records to apply them again): {}", .0.join(", "))]
    Changed(Vec<String>),
    /// A migration failed: the server's error, where.
    #[error("{file} line {line}: {error}")]
    Failed {
        /// The migration.
        file: String,
        /// The line of the error (or of the statement that failed).
        line: usize,
        /// The server's error.
        error: QueryError,
    },
    /// The migration ran but could not be recorded (rolled back when in a transaction).
    #[error("{file}: recording it: {error}")]
    Record {
        /// The migration.
        file: String,
        /// The server's error.
        error: QueryError,
    },
    /// A no-transaction migration the tokenizer cannot split into statements.
    #[error("{0}: cannot split into statements (a no-transaction file runs statement by statement)")]
    Unsplittable(String),
}

/// A migration that names a schema another target owns than the one it runs on.
#[derive(Debug, thiserror::Error)]
#[error("{file} line {line}: `{statement}` names {object}, which target {owner} owns, but {file} runs on {runs_on}: move it to {owner}/")]
pub struct CrossTarget {
    /// The migration.
    pub file: String,
    /// Its line.
    pub line: usize,
    /// The statement, shortened.
    pub statement: String,
    /// The object named.
    pub object: String,
    /// The target that owns it.
    pub owner: String,
    /// The target the migration runs on.
    pub runs_on: String,
}

/// What happened on one target.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct TargetRun {
    /// The target.
    pub target: String,
    /// The record table.
    pub table: String,
    /// Migrations applied now, in order, with their durations (or that would be, for a dry run). A no-transaction
    /// migration that failed half-way is not among them: the statements before the failing one ran and stay.
    pub applied: Vec<Applied>,
    /// Why the target was skipped or stopped, if it was.
    pub error: Option<String>,
    /// The target could not be reached: nothing ran there.
    pub skipped: bool,
}

/// One migration applied.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Applied {
    /// `folder/NNN_name.sql`.
    pub file: String,
    /// How long it ran (0 for a dry run).
    pub duration_ms: u64,
}

/// One migration's state on its target (`status`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Entry {
    /// `folder/NNN_name.sql` (for a record without a file: `folder/NNN_name`).
    pub file: String,
    /// `applied`, `pending`, `changed` (applied, and the file's checksum differs since) or `missing` (recorded,
    /// no file).
    pub state: &'static str,
    /// When it was applied, as the server prints it.
    pub applied_at: Option<String>,
}

/// What `status` found on one target.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct TargetStatus {
    /// The target.
    pub target: String,
    /// The record table.
    pub table: String,
    /// Every migration, in order.
    pub migrations: Vec<Entry>,
    /// Why the target could not be read, if it could not.
    pub error: Option<String>,
}

impl TargetStatus {
    /// Whether something is to do or wrong here: pending, changed, or unreadable.
    pub fn needs_attention(&self) -> bool {
        self.error.is_some() || self.migrations.iter().any(|m| matches!(m.state, "pending" | "changed"))
    }
}

/// Where each migration runs: its folder's target in split mode, `single_target` in single mode.
fn runs_on<'c>(config: &'c Config, m: &Migration) -> Option<&'c Target> {
    match config.mode {
        Mode::Split => config.target(&m.folder),
        Mode::Single => config.target(&config.single_target),
    }
}

/// The record table of a target: `migrations.table`, qualified with the first schema the target owns (`public` for
/// a target that owns none) unless it is qualified already; as SQL, and as reports show it (`config.schema_migrations`).
pub fn record_table(config: &Config, target: &Target) -> (String, String, String) {
    let name = config.migrations_table.as_deref().unwrap_or(DEFAULT_TABLE);
    let (schema, table) = quote::split_qualified(name)
        .unwrap_or_else(|| (target.schemas.first().map_or("public", String::as_str).to_owned(), name.trim().to_owned()));
    (format!("{}.{}", quote::ident(&schema), quote::ident(&table)), format!("{schema}.{table}"), schema)
}

/// The migrations under `dir` and the targets they run on (only `only`, when given), in run order, after the
/// cross-target check.
fn plan<'c>(config: &'c Config, dir: &Path, only: Option<&str>) -> Result<Vec<(&'c Target, Vec<Migration>)>, MigrateError> {
    let names: Vec<String> = config.targets.iter().map(|t| t.name.clone()).collect();
    if let Some(t) = only.filter(|t| !names.iter().any(|n| n == t)) {
        return Err(MigrateError::UnknownTarget(t.to_owned()));
    }
    if let Some(t) = only.filter(|t| config.mode == Mode::Single && *t != config.single_target) {
        return Err(MigrateError::SingleMode { asked: t.to_owned(), single: config.single_target.clone() });
    }
    let mut all = files::read(dir, &names)?;
    all.retain(|m| only.is_none_or(|t| runs_on(config, m).is_some_and(|r| r.name == t)));
    if config.mode == Mode::Split {
        let table = crate::app::routing_table_of(config);
        for m in &all {
            cross_target(&table, m)?;
        }
    }
    let mut out: Vec<(&Target, Vec<Migration>)> = Vec::new();
    for m in all {
        let Some(t) = runs_on(config, &m) else { continue };
        match out.iter_mut().find(|(x, _)| x.name == t.name) {
            Some((_, list)) => list.push(m),
            None => out.push((t, vec![m])),
        }
    }
    Ok(out)
}

/// Refuses a migration that names a schema (qualified names, schemas themselves) owned by another target than its
/// folder's. Unqualified names run under the target's own search_path and are not looked at.
fn cross_target(table: &RoutingTable, m: &Migration) -> Result<(), MigrateError> {
    let Some(own) = table.target_id(&m.folder) else { return Ok(()) };
    let statements = files::statements(&m.sql).unwrap_or_else(|| vec![(0, m.sql.as_str())]);
    for (offset, text) in statements {
        let a = Analysis::of(text);
        for name in &a.names {
            let Some(schema) = &name.schema else { continue };
            let Some(&owner) = table.schemas.get(schema) else { continue };
            if owner != own {
                let lead = text.len() - text.trim_start().len();
                let shown: String = text.trim().chars().take(80).collect();
                return Err(MigrateError::CrossTarget(Box::new(CrossTarget {
                    file: m.file(),
                    line: files::line_of(&m.sql, offset + lead),
                    statement: shown.split_whitespace().collect::<Vec<_>>().join(" "),
                    object: name.to_string(),
                    owner: table.name(owner).to_owned(),
                    runs_on: m.folder.clone(),
                })));
            }
        }
    }
    Ok(())
}

/// Applies the pending migrations under `dir` (or, with `dry_run`, says which would run): see the module's
/// documentation. Every target reached is in the result; the run failed if any has an error.
pub async fn apply(config: &Config, dir: &Path, options: &Options) -> Result<Vec<TargetRun>, MigrateError> {
    let dry_run = options.dry_run;
    let plan = plan(config, dir, options.target.as_deref())?;
    let mut runs = Vec::new();
    let mut stopped = false;
    for (target, migrations) in plan {
        let (table, shown, schema) = record_table(config, target);
        let mut run = TargetRun { target: target.name.clone(), table: shown, ..TargetRun::default() };
        if stopped {
            run.error = Some("not run: an earlier migration failed".into());
            run.skipped = true;
            runs.push(run);
            continue;
        }
        let mut conn = match connect(target).await {
            Ok(c) => c,
            Err(e) => {
                run.error = Some(format!("skipped: {e}"));
                run.skipped = true;
                runs.push(run);
                continue;
            }
        };
        if let Err(e) = apply_on(&mut conn, (&table, &schema), &migrations, dry_run, &mut run).await {
            stopped = true;
            run.error = Some(e.to_string());
        }
        conn.terminate().await;
        runs.push(run);
    }
    Ok(runs)
}

/// Connects as the target's own login, over its TLS.
async fn connect(target: &Target) -> Result<ServerConn, RunError> {
    let unreachable = |reason: String| RunError::Unreachable { target: target.name.clone(), reason };
    let spec = target_spec(target).map_err(|e| unreachable(e.to_string()))?;
    ServerConn::connect(&spec).await.map_err(|e| unreachable(e.to_string()))
}

/// One target's part of `apply`, on `conn`.
async fn apply_on(
    conn: &mut ServerConn,
    (table, schema): (&str, &str),
    migrations: &[Migration],
    dry_run: bool,
    run: &mut TargetRun,
) -> Result<(), RunError> {
    let lock = quote::literal(&format!("pgsplit migrate {table}"));
    if !dry_run {
        // Tried, not waited for: a session blocked in pg_advisory_lock holds a snapshot, which the other run's
        // CREATE INDEX CONCURRENTLY would wait for (a deadlock PostgreSQL breaks by failing one of them).
        let try_lock = format!("select pg_try_advisory_lock(hashtext({lock}))");
        while query(conn, &try_lock).await?.first().and_then(|r| r.first()).and_then(|v| v.as_deref()) != Some("t") {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        query(conn, &create_table_sql(table, schema)).await?;
    }
    let recorded = recorded(conn, table).await?;
    let changed: Vec<String> =
        migrations.iter().filter(|m| recorded.iter().any(|r| r.is(m) && r.checksum != m.checksum)).map(Migration::file).collect();
    if !changed.is_empty() {
        return Err(RunError::Changed(changed));
    }
    for m in migrations.iter().filter(|m| !recorded.iter().any(|r| r.is(m))) {
        if dry_run {
            run.applied.push(Applied { file: m.file(), duration_ms: 0 });
            continue;
        }
        let started = Instant::now();
        run_one(conn, table, m, &started).await?;
        run.applied.push(Applied { file: m.file(), duration_ms: duration_ms(&started) });
    }
    if !dry_run {
        query(conn, &format!("select pg_advisory_unlock(hashtext({lock}))")).await?;
    }
    Ok(())
}

fn duration_ms(started: &Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The record table, made if missing, in its schema, made if missing (the first migration may be the one meant to
/// create it).
fn create_table_sql(table: &str, schema: &str) -> String {
    let schema = quote::literal(schema);
    format!(
        "do $pgsplit$ begin if to_regnamespace({schema}) is null then execute 'create schema ' || quote_ident({schema}); \
         end if; end $pgsplit$; create table if not exists {table} (target text not null, version text not null, name text not null, \
         checksum text not null, applied_at timestamptz not null default now(), duration_ms bigint not null, \
         primary key (target, version))"
    )
}

/// One recorded migration.
#[derive(Debug, Clone)]
struct Record {
    folder: String,
    version: String,
    name: String,
    checksum: String,
    applied_at: String,
}

impl Record {
    /// Whether this records `m`: same folder, same number (`9` and `009` are one migration).
    fn is(&self, m: &Migration) -> bool {
        self.folder == m.folder && files::same_version(&self.version, &m.version)
    }
}

/// The records of `table` (none when it does not exist).
async fn recorded(conn: &mut ServerConn, table: &str) -> Result<Vec<Record>, RunError> {
    let exists = query(conn, &format!("select to_regclass({}) is not null", quote::literal(table))).await?;
    if exists.first().and_then(|r| r.first()).and_then(|v| v.as_deref()) != Some("t") {
        return Ok(Vec::new());
    }
    let rows =
        query(conn, &format!("select target, version, name, checksum, applied_at from {table} order by applied_at")).await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| match r.as_slice() {
            [Some(f), Some(v), Some(n), Some(c), Some(at)] => Some(Record {
                folder: f.clone(),
                version: v.clone(),
                name: n.clone(),
                checksum: c.clone(),
                applied_at: at.clone(),
            }),
            _ => None,
        })
        .collect())
}

/// Runs one migration and records it; on failure (rolled back when in a transaction) the error names the file and
/// line.
async fn run_one(conn: &mut ServerConn, table: &str, m: &Migration, started: &Instant) -> Result<(), RunError> {
    let record = |ms: u64| {
        format!(
            "insert into {table} (target, version, name, checksum, duration_ms) values ({}, {}, {}, {}, {ms})",
            quote::literal(&m.folder),
            quote::literal(&m.version),
            quote::literal(&m.name),
            quote::literal(&m.checksum),
        )
    };
    // Statement by statement, so that an error without a position still names its statement's line: each its own
    // Query, as CREATE INDEX CONCURRENTLY needs, or in one transaction. A file with a `BEGIN ATOMIC ... END` body
    // or a rule's `(...; ...)` (semicolons inside one statement) runs in a transaction as one Query.
    let whole = !m.no_transaction && crate::router::has_word(&m.sql, &["atomic", "rule"]);
    let statements = match (whole, files::statements(&m.sql)) {
        (false, Some(s)) => s,
        (true, _) | (false, None) if !m.no_transaction => vec![(0, m.sql.as_str())],
        _ => return Err(RunError::Unsplittable(m.file())),
    };
    if !m.no_transaction {
        query(conn, "begin").await?;
    }
    for (offset, text) in statements {
        if let Err(e) = query(conn, text).await {
            if !m.no_transaction {
                let _ = query(conn, "rollback").await;
            }
            return Err(e.located(m, offset, text));
        }
    }
    let commit = if m.no_transaction { "" } else { "; commit" };
    if let Err(error) = query(conn, &format!("{}{commit}", record(duration_ms(started)))).await {
        let _ = query(conn, "rollback").await;
        return Err(RunError::Record { file: m.file(), error });
    }
    Ok(())
}

/// A server's error for a query pgsplit sent, with its position.
#[derive(Debug)]
pub struct QueryError {
    /// SQLSTATE.
    pub code: String,
    /// The message, with DETAIL and HINT when given.
    pub message: String,
    /// The 1-based character position of the error in the query, when the server gave one.
    pub position: Option<usize>,
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.code.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{} ({})", self.message, self.code)
        }
    }
}

impl std::error::Error for QueryError {}

impl QueryError {
    /// The error, naming the migration and the line: the server's position within `text` (which starts at byte
    /// `offset` of the file), else the line `text` starts on.
    fn located(self, m: &Migration, offset: usize, text: &str) -> RunError {
        let at = match self.position {
            Some(p) => offset + files::char_offset(text, p),
            None => offset + files::first_token(text),
        };
        RunError::Failed { file: m.file(), line: files::line_of(&m.sql, at), error: self }
    }

    fn io(e: impl std::fmt::Display) -> QueryError {
        QueryError { code: String::new(), message: e.to_string(), position: None }
    }
}

/// Sends one Query and reads until ReadyForQuery: its rows as text, or the server's error with its position. A
/// COPY FROM STDIN in a migration is refused (CopyFail): there is no data to feed it.
async fn query(conn: &mut ServerConn, sql: &str) -> Result<Vec<Vec<Option<String>>>, QueryError> {
    conn.send(&encode::query(sql.as_bytes())).await.map_err(QueryError::io)?;
    let mut rows = Vec::new();
    let mut error = None;
    loop {
        let f = conn.read_frame().await.map_err(QueryError::io)?;
        match f.tag {
            b'D' => rows.push(crate::backend::conn::data_row(f.body())),
            b'E' => error = Some(server_error(f.body())),
            b'G' => {
                let mut fail = bytes::BytesMut::new();
                encode::message(&mut fail, b'f', |b| b.extend_from_slice(b"pgsplit migrate has no data for COPY FROM STDIN\0"));
                conn.send(&fail).await.map_err(QueryError::io)?;
            }
            b'Z' => return error.map_or(Ok(rows), Err),
            _ => {}
        }
    }
}

fn server_error(body: &[u8]) -> QueryError {
    let fields = crate::protocol::decode::error_fields(body).unwrap_or_default();
    let get = |c: u8| fields.iter().find(|(k, _)| *k == c).map(|(_, v)| v.clone());
    let mut message = get(b'M').unwrap_or_else(|| "malformed error".into());
    if let Some(d) = get(b'D') {
        message.push_str(&format!("; DETAIL: {d}"));
    }
    if let Some(h) = get(b'H') {
        message.push_str(&format!("; HINT: {h}"));
    }
    QueryError { code: get(b'C').unwrap_or_default(), message, position: get(b'P').and_then(|p| p.parse().ok()) }
}

/// Every target's migrations and their state: applied, pending, changed since applied, recorded without a file.
pub async fn status(config: &Config, dir: &Path, options: &Options) -> Result<Vec<TargetStatus>, MigrateError> {
    let plan = plan(config, dir, options.target.as_deref())?;
    let mut out = Vec::new();
    for (target, migrations) in plan {
        let (table, shown, _) = record_table(config, target);
        let mut st = TargetStatus { target: target.name.clone(), table: shown, ..TargetStatus::default() };
        let records = match connect(target).await {
            Ok(mut conn) => {
                let r = recorded(&mut conn, &table).await;
                conn.terminate().await;
                r
            }
            Err(e) => Err(e),
        };
        match records {
            Ok(records) => st.migrations = entries(&migrations, &records),
            Err(e) => st.error = Some(e.to_string()),
        }
        out.push(st);
    }
    Ok(out)
}

/// The state of each migration against the records (of the folders the migrations come from).
fn entries(migrations: &[Migration], records: &[Record]) -> Vec<Entry> {
    let mut out: Vec<Entry> = migrations
        .iter()
        .map(|m| {
            let r = records.iter().find(|r| r.is(m));
            let state = match r {
                None => "pending",
                Some(r) if r.checksum != m.checksum => "changed",
                Some(_) => "applied",
            };
            Entry { file: m.file(), state, applied_at: r.map(|r| r.applied_at.clone()) }
        })
        .collect();
    for r in records {
        let known = migrations.iter().any(|m| r.is(m));
        let ours = migrations.iter().any(|m| m.folder == r.folder);
        if !known && ours {
            out.push(Entry {
                file: format!("{}/{}_{}", r.folder, r.version, r.name),
                state: "missing",
                applied_at: Some(r.applied_at.clone()),
            });
        }
    }
    out
}
