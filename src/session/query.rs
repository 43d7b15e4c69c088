//! Simple-query messages: local answers for transaction control and hints, routing, and the transaction rules of §4.

use crate::metrics::RouteReason;
use crate::protocol::encode::{self, PgError};
use crate::protocol::{codes, decode, Frame, STATUS_FAILED, STATUS_IDLE, STATUS_IN_TX};
use crate::router::{Analysis, Command, ObjectKind, Reason, RouteError, SharedAnalysis, TargetId};

use super::state::{Effects, Payload, Session, Tx};
use super::SessionError;

impl Session {
    /// Handles a Query message.
    pub(super) async fn simple_query(&mut self, frame: Frame) -> Result<(), SessionError> {
        let sql = decode::query(frame.body())
            .map_err(|e| SessionError::Fatal(PgError::fatal(codes::PROTOCOL_VIOLATION, format!("invalid Query message: {e}"))))?;
        if matches!(self.tx, Tx::Failed { bound: Some(_) }) {
            if let Err(e) = self.fail_on_server().await {
                self.client.error_ready(&e, STATUS_FAILED);
                return Ok(());
            }
        }
        self.follow_mode();
        let analysis = self.app.analysis_for(sql, self.single, &mut self.lookup_memo);
        if let Some(a) = &analysis {
            if self.local_command(a, &frame) {
                return Ok(());
            }
        }
        let (target, explicit) = match self.route(analysis.as_ref()) {
            Ok(r) => r,
            Err(e) => {
                self.refuse(e);
                return Ok(());
            }
        };
        // Only a deferred or tentatively bound transaction asks (the word scan costs more than the rest of routing).
        let asks = matches!(self.tx, Tx::Deferred { .. }) || self.tentative.is_some();
        let plain_read = asks && !explicit && analysis.as_deref().is_some_and(|a| plain_read(a, sql));
        // A plain read needs an answer before the deferred transaction has a target: it binds tentatively.
        let replay = match &self.tx {
            Tx::Deferred { begin, held } if plain_read => {
                Some(std::iter::once(begin.clone()).chain(held.iter().cloned()).collect())
            }
            _ => None,
        };
        if let Some(r) = &mut self.tentative {
            match analysis.as_deref().map(|a| &a.command) {
                Some(Command::Holdable(_)) if !explicit => r.push(frame.bytes.clone()),
                _ if plain_read => {}
                // Another target moves the transaction (`run_on`); anything else makes the binding firm.
                _ if explicit && matches!(self.tx, Tx::Bound { target: b, .. } if b != target) => {}
                _ => self.tentative = None,
            }
        }
        let effects = Effects::of(analysis.as_deref());
        self.run_on(target, Payload::Raw(&frame.bytes), &effects).await?;
        if replay.is_some() && matches!(self.tx, Tx::Bound { .. }) {
            self.tentative = replay;
        }
        Ok(())
    }

    /// Answers what pgsplit handles itself; returns true when the statement was answered.
    fn local_command(&mut self, a: &Analysis, frame: &Frame) -> bool {
        let command = &a.command;
        match (command, &mut self.tx) {
            (Command::Begin, Tx::Idle) => {
                self.tx = Tx::Deferred { begin: frame.bytes.clone(), held: Vec::new() };
                self.client.complete_ready("BEGIN", STATUS_IN_TX);
            }
            (Command::Holdable(tag), Tx::Deferred { held, .. }) if a.hint.is_none() && self.target_hint.is_none() => {
                held.push(frame.bytes.clone());
                self.client.complete_ready(tag, STATUS_IN_TX);
            }
            (Command::Begin, Tx::Deferred { .. }) => {
                notice_already_in_transaction(&mut self.client.wbuf);
                self.client.complete_ready("BEGIN", STATUS_IN_TX);
            }
            (Command::Commit | Command::Rollback, Tx::Deferred { .. }) => {
                let tag = if *command == Command::Commit { "COMMIT" } else { "ROLLBACK" };
                self.tx = Tx::Idle;
                self.client.complete_ready(tag, STATUS_IDLE);
            }
            // A failed transaction that never bound: no server needed (a bound one was failed on its server).
            (Command::Commit | Command::Rollback, Tx::Failed { bound: None }) => {
                // PostgreSQL answers COMMIT of a failed transaction with ROLLBACK.
                self.tx = Tx::Idle;
                self.client.complete_ready("ROLLBACK", STATUS_IDLE);
            }
            (_, Tx::Failed { bound: None }) => {
                let e = PgError::error(
                    codes::IN_FAILED_TRANSACTION,
                    "current transaction is aborted, commands ignored until end of transaction block",
                );
                self.client.error_ready(&e, STATUS_FAILED);
            }
            (Command::SetTarget(name), _) => match self.app.table().target_id(name) {
                Some(t) => {
                    self.target_hint = Some(t);
                    let status = self.tx.status();
                    self.client.complete_ready("SET", status);
                }
                None => self.refuse(route_error(RouteError::UnknownTarget(name.clone()))),
            },
            (Command::Deallocate(None), _) if self.pins.is_empty() => {
                self.statements.clear();
                let status = self.tx.status();
                self.client.complete_ready("DEALLOCATE ALL", status);
            }
            (Command::Deallocate(Some(name)), _) if self.statements.remove(name).is_some() => {
                let status = self.tx.status();
                self.client.complete_ready("DEALLOCATE", status);
            }
            (Command::DiscardAll, Tx::Idle) if self.pins.is_empty() => {
                // Nothing of this client lives on a server connection: DISCARD ALL is its names and settings.
                self.statements.clear();
                self.params.discard_all();
                self.search_path = self.params.search_path();
                self.client.complete_ready("DISCARD ALL", STATUS_IDLE);
            }
            (Command::ResetTarget, _) => {
                self.target_hint = None;
                let status = self.tx.status();
                self.client.complete_ready("RESET", status);
            }
            _ => return false,
        }
        true
    }

    /// The target of a statement (analysis `None` in single mode), checked against the bound transaction:
    /// statements that name no routed schema follow the bound target; explicit ones must match it.
    /// The target of a statement and whether the statement itself chose it (its relations or a hint) rather than
    /// following the session (bound transaction, session hint, default target).
    pub(super) fn route(&mut self, analysis: Option<&SharedAnalysis>) -> Result<(TargetId, bool), PgError> {
        let bound = match &self.tx {
            Tx::Bound { target, .. } => Some(*target),
            _ => None,
        };
        let (target, explicit, why) = match (self.passthrough, analysis) {
            (Some(t), _) => (t, true, RouteReason::Passthrough),
            _ if self.single => (self.app.single_target(), false, RouteReason::Single),
            (None, None) => (self.app.table().default_target, false, RouteReason::Router(Reason::Default)),
            (None, Some(a)) => {
                let view = crate::router::SessionView { search_path: &self.search_path, target_hint: self.target_hint };
                let d = self.route_memo.decide(&self.app.table(), &self.app.catalog(), a, &view).map_err(route_error)?;
                (d.target, !matches!(d.reason, Reason::Default | Reason::SessionHint), RouteReason::Router(d.reason))
            }
        };
        self.app.backend(target).stats.routed(why);
        match bound {
            // A transaction bound by a plain read moves to the first target a statement chooses (`run_on`).
            Some(b) if b != target && explicit && self.tentative.is_some() && self.tx.status() == STATUS_IN_TX => {
                Ok((target, explicit))
            }
            // A transaction that failed on its server: PostgreSQL answers (25P02, or ROLLBACK) as it would directly.
            Some(b) if self.tx.status() == STATUS_FAILED => Ok((b, explicit)),
            Some(b) if b != target && explicit => Err(self.other_target_in_transaction(target, b)),
            Some(b) => Ok((b, explicit)),
            None => Ok((target, explicit)),
        }
    }

    /// The refusal of a statement for `target` inside a transaction bound to `bound`.
    pub(super) fn other_target_in_transaction(&self, target: TargetId, bound: TargetId) -> PgError {
        let t = self.app.table();
        PgError::error(
            codes::FEATURE_NOT_SUPPORTED,
            format!("statement for target \"{}\" inside a transaction bound to target \"{}\"", t.name(target), t.name(bound)),
        )
        .with_hint("a transaction runs on one target; commit it and run this statement in its own transaction")
        .because("other_target_in_transaction")
    }

    /// Runs an encoded payload on `target`, using the bound connection or taking one (replaying a deferred BEGIN).
    pub(super) async fn run_on(&mut self, target: TargetId, payload: Payload<'_>, effects: &Effects) -> Result<(), SessionError> {
        if matches!(self.tx, Tx::Bound { target: b, .. } if b != target) {
            self.unbind_tentative().await;
        }
        // Still bound elsewhere (not a tentative binding): the transaction's target wins, never the connection's
        // label alone.
        let target = match &self.tx {
            Tx::Bound { target: b, .. } => *b,
            _ => target,
        };
        let (conn, begin) = match std::mem::replace(&mut self.tx, Tx::Idle) {
            Tx::Bound { conn, .. } => (conn, Vec::new()),
            Tx::Deferred { begin, held } => match self.acquire(target).await {
                Ok(c) => (c, std::iter::once(begin).chain(held).collect()),
                Err(e) => {
                    self.tx = Tx::Deferred { begin, held };
                    self.refuse(e);
                    return Ok(());
                }
            },
            other => {
                self.tx = other;
                match self.acquire(target).await {
                    Ok(c) => (c, Vec::new()),
                    Err(e) => {
                        let status = self.tx.status();
                        self.client.error_ready(&e, status);
                        return Ok(());
                    }
                }
            }
        };
        self.execute(target, conn, begin, payload, effects).await
    }
}

/// Built-in functions a plain read may call: they leave nothing behind in the transaction. Any other function
/// (user functions in unrouted schemas, locks, sequences, notifications) makes the binding firm.
const PLAIN_FUNCTIONS: &[&str] = &[
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

/// Words that make a read anything but plain: data-modifying CTEs, SELECT INTO, row locks, EXPLAIN ANALYZE.
const NOT_PLAIN_WORDS: &[&str] = &["insert", "update", "delete", "merge", "into", "for", "analyze", "analyse", "lock"];

/// A read that leaves nothing behind in its transaction, so the transaction could as well have begun elsewhere:
/// no write, DDL, session change or pin, parsed (not scanned), only harmless built-in functions, and none of the
/// words that turn a SELECT into a write or a lock. Conservative: anything else binds the transaction for good.
fn plain_read(a: &Analysis, sql: &str) -> bool {
    a.command == Command::Other
        && !a.writes
        && !a.ddl
        && !a.pins
        && !a.fallback
        && a.hint.is_none()
        && a.session_changes.is_empty()
        && a.names.iter().all(|n| {
            n.kind != ObjectKind::Function
                || (n.schema.as_deref().is_none_or(|s| s == "pg_catalog") && PLAIN_FUNCTIONS.contains(&n.object.as_str()))
        })
        && !sql
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|w| NOT_PLAIN_WORDS.iter().any(|k| w.eq_ignore_ascii_case(k)))
}

/// The client-facing error for a routing refusal.
pub(super) fn route_error(e: RouteError) -> PgError {
    match &e {
        RouteError::CrossTarget { relations } => {
            let detail = relations.iter().map(|(r, t)| format!("{r} is on target \"{t}\"")).collect::<Vec<_>>().join("; ");
            PgError::error(codes::FEATURE_NOT_SUPPORTED, e.to_string())
                .with_detail(detail)
                .with_hint("split the statement so that each part touches one target")
                .because("cross_target")
        }
        RouteError::UnknownTarget(_) => PgError::error(codes::INVALID_PARAMETER_VALUE, e.to_string()).because("unknown_target"),
        RouteError::CatalogUnavailable { .. } => PgError::error(codes::CONNECTION_FAILURE, e.to_string())
            .with_hint("qualify the name with its schema, or retry when the target is reachable")
            .because("catalog_unavailable"),
        RouteError::UnparsedWrite => PgError::error(codes::FEATURE_NOT_SUPPORTED, e.to_string())
            .with_hint("qualify the table with its schema, or add /* pgsplit: target=NAME */ before the statement")
            .because("unparsed_write"),
    }
}

pub(super) fn notice_already_in_transaction(buf: &mut bytes::BytesMut) {
    encode::message(buf, b'N', |b| {
        for (code, value) in
            [(b'S', "WARNING"), (b'V', "WARNING"), (b'C', "25001"), (b'M', "there is already a transaction in progress")]
        {
            b.extend_from_slice(&[code]);
            b.extend_from_slice(value.as_bytes());
            b.extend_from_slice(&[0]);
        }
        b.extend_from_slice(&[0]);
    });
}
