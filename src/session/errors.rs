//! Every error and notice a logged-in session sends the client, built here and nowhere else: SQLSTATEs from
//! `protocol::codes`, messages worded as PostgreSQL words its own where it has one, and the cause label
//! (`PgError::because`) that logs and metrics count refusals by.

use crate::app::App;
use crate::backend::{BackendError, CheckoutError};
use crate::protocol::codes;
use crate::protocol::encode::PgError;
use crate::router::{RouteError, TargetId};

/// A message type the session does not accept here: FATAL 08P01, as PostgreSQL answers it.
pub fn unexpected_message(tag: u8) -> PgError {
    PgError::fatal(codes::PROTOCOL_VIOLATION, format!("unexpected message type {:?}", tag as char))
}

/// A message whose framing or contents break the protocol: FATAL 08P01.
pub fn protocol_violation(what: impl std::fmt::Display) -> PgError {
    PgError::fatal(codes::PROTOCOL_VIOLATION, what.to_string())
}

/// A Query message that does not decode.
pub fn invalid_query(e: impl std::fmt::Display) -> PgError {
    PgError::fatal(codes::PROTOCOL_VIOLATION, format!("invalid Query message: {e}"))
}

/// An extended-protocol message that does not decode (the batch fails, the session goes on).
pub fn invalid_extended(e: impl std::fmt::Display) -> PgError {
    PgError::error(codes::PROTOCOL_VIOLATION, format!("invalid extended-protocol message: {e}"))
}

/// An extended-protocol message on the admin console.
pub fn console_simple_only() -> PgError {
    PgError::error(codes::FEATURE_NOT_SUPPORTED, "the admin console speaks the simple query protocol only")
}

/// pgsplit is shutting down and the session is at rest.
pub fn shutting_down() -> PgError {
    PgError::fatal(codes::ADMIN_SHUTDOWN, "pgsplit is shutting down")
}

/// PostgreSQL's answer to a statement in a failed transaction.
pub fn in_failed_transaction() -> PgError {
    PgError::error(
        codes::IN_FAILED_TRANSACTION,
        "current transaction is aborted, commands ignored until end of transaction block",
    )
}

/// A statement held since a deferred BEGIN failed on replay, and the server's own error was not kept.
pub fn held_statement_failed() -> PgError {
    PgError::error(codes::IN_FAILED_TRANSACTION, "a statement held since BEGIN failed")
}

/// PostgreSQL's WARNING for a BEGIN inside a transaction.
pub fn already_in_transaction() -> PgError {
    PgError::notice(codes::ACTIVE_SQL_TRANSACTION, "there is already a transaction in progress")
}

/// A request started while another was in flight: cannot happen (the driver awaits each), refused safely.
pub fn request_in_flight() -> PgError {
    PgError::error(codes::INTERNAL_ERROR, "a request started while another was in flight")
}

/// An extended-protocol batch larger than pgsplit holds.
pub fn batch_too_large(max_bytes: usize) -> PgError {
    PgError::error(codes::PROGRAM_LIMIT_EXCEEDED, format!("extended-protocol batch over {} MiB without Sync", max_bytes >> 20))
        .with_hint("send Sync (or Flush) more often")
}

/// No server connection for a request (target down, pool exhausted, or the client cancelled its wait).
pub fn checkout(e: &CheckoutError) -> PgError {
    let (code, cause) = match e {
        CheckoutError::Unavailable { .. } => (codes::CONNECTION_FAILURE, "target_unavailable"),
        CheckoutError::Timeout { .. } => (codes::TOO_MANY_CONNECTIONS, "checkout_timeout"),
        CheckoutError::Canceled => (codes::QUERY_CANCELED, "canceled_in_queue"),
    };
    PgError::error(code, e.to_string()).because(cause)
}

/// The client's session settings could not be applied on a server connection.
pub fn settings_not_applied(target: &str, e: &BackendError) -> PgError {
    PgError::error(codes::CONNECTION_FAILURE, format!("cannot apply the session's settings on target \"{target}\": {e}"))
}

/// A server connection lost mid-request.
pub fn connection_lost(target: &str, cause: Option<&BackendError>) -> PgError {
    let message = match cause {
        Some(e) => format!("connection to target \"{target}\" lost: {e}"),
        None => format!("connection to target \"{target}\" lost"),
    };
    PgError::error(codes::CONNECTION_FAILURE, message)
}

/// A statement for `target` inside a transaction bound to `bound`.
pub fn other_target_in_transaction(app: &App, target: TargetId, bound: TargetId) -> PgError {
    let t = app.table();
    PgError::error(
        codes::FEATURE_NOT_SUPPORTED,
        format!("statement for target \"{}\" inside a transaction bound to target \"{}\"", t.name(target), t.name(bound)),
    )
    .with_hint("a transaction runs on one target; commit it and run this statement in its own transaction")
    .because("other_target_in_transaction")
}

/// An extended-protocol batch whose statements chose two targets.
pub fn batch_mixes_targets(app: &App, a: TargetId, b: TargetId) -> PgError {
    let names = app.table();
    PgError::error(
        codes::FEATURE_NOT_SUPPORTED,
        format!("extended-protocol batch mixes targets \"{}\" and \"{}\"", names.name(a), names.name(b)),
    )
    .because("batch_mixes_targets")
}

/// A routing refusal.
pub fn route(e: RouteError) -> PgError {
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
