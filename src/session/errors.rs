//! Every error and notice pgsplit sends a client, built here and nowhere else: at login, in a session, on the admin
//! console. SQLSTATEs from `protocol::codes`, messages worded as PostgreSQL words its own where it has one, and the
//! cause label (`PgError::because`) that logs and metrics count refusals by.

use crate::app::App;
use crate::auth::ScramError;
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
pub fn invalid_extended(e: crate::protocol::decode::DecodeError) -> PgError {
    match e {
        crate::protocol::decode::DecodeError::Text(t) => unreadable_text(&t),
        e => PgError::error(codes::PROTOCOL_VIOLATION, format!("invalid extended-protocol message: {e}")),
    }
}

/// An extended-protocol message on the admin console.
pub fn console_simple_only() -> PgError {
    PgError::error(codes::FEATURE_NOT_SUPPORTED, "the admin console speaks the simple query protocol only")
}

/// pgsplit is shutting down and the session is at rest.
pub fn shutting_down() -> PgError {
    PgError::fatal(codes::ADMIN_SHUTDOWN, "pgsplit is shutting down")
}

/// `client_idle_timeout`: PostgreSQL's `idle_session_timeout` error.
pub fn idle_session_timeout() -> PgError {
    PgError::fatal(codes::IDLE_SESSION_TIMEOUT, "terminating connection due to idle-session timeout")
}

/// `idle_transaction_timeout`: PostgreSQL's `idle_in_transaction_session_timeout` error.
pub fn idle_in_transaction_timeout() -> PgError {
    PgError::fatal(codes::IDLE_IN_TRANSACTION_SESSION_TIMEOUT, "terminating connection due to idle-in-transaction timeout")
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
        CheckoutError::Disabled { .. } => (codes::CANNOT_CONNECT_NOW, "target_disabled"),
        CheckoutError::Refused { code, .. } => (*code, "login_refused"),
        CheckoutError::Canceled => (codes::QUERY_CANCELED, "canceled_in_queue"),
    };
    PgError::error(code, e.to_string()).because(cause)
}

/// A session-pooled client's own backend could not be had at login.
pub fn no_own_backend(e: &CheckoutError) -> PgError {
    PgError::fatal(checkout(e).code, format!("no server connection for the session: {e}")).because("session_backend")
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

/// The server connection that held the client's session (its transaction, or its pin) was lost without a word
/// from the server: FATAL, the client's session ends with it, as a direct connection would.
pub fn session_connection_lost(target: &str, cause: Option<&BackendError>) -> PgError {
    let message = match cause {
        Some(e) => format!("connection to target \"{target}\" lost, and the session with it: {e}"),
        None => format!("connection to target \"{target}\" lost, and the session with it"),
    };
    PgError::fatal(codes::CONNECTION_FAILURE, message)
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

// Login (`session::startup`, `server`): FATAL, the connection ends.

/// A plaintext client where TLS is required.
pub fn tls_required() -> PgError {
    PgError::fatal(codes::INVALID_AUTHORIZATION, "pgsplit requires TLS (sslmode=require)")
}

/// A StartupMessage without `user`.
pub fn no_user() -> PgError {
    PgError::fatal(codes::INVALID_AUTHORIZATION, "no PostgreSQL user name specified in startup packet")
}

/// A database pgsplit does not serve (neither its own, nor a target's name for passthrough).
pub fn unknown_database(app: &App, database: &str) -> PgError {
    let targets = app.table().targets.join(", ");
    PgError::fatal(codes::INVALID_CATALOG_NAME, format!("database \"{database}\" does not exist"))
        .with_hint(format!("pgsplit serves the database \"{}\" and, unsplit, its targets: {targets}", app.database()))
}

/// Over `max_client_conn`.
pub fn too_many_clients() -> PgError {
    PgError::fatal(codes::TOO_MANY_CONNECTIONS, "sorry, too many clients already (max_client_conn)")
}

/// Over `max_login_conn`: refused before anything is read.
pub fn too_many_logins() -> PgError {
    PgError::fatal(codes::TOO_MANY_CONNECTIONS, "sorry, too many clients already (max_login_conn connections are logging in)")
}

/// A startup `client_encoding` PostgreSQL does not know.
pub fn unknown_encoding(value: &str) -> PgError {
    PgError::fatal(codes::INVALID_PARAMETER_VALUE, format!("invalid value for parameter \"client_encoding\": \"{value}\""))
}

/// Client text that is not valid in its encoding (22021, as PostgreSQL answers it), or that pgsplit cannot read
/// (0A000): the statement or batch fails, the session goes on.
pub fn unreadable_text(e: &crate::protocol::encoding::TextError) -> PgError {
    PgError::error(e.code(), e.to_string())
}

/// A startup parameter PostgreSQL has no such name for: a malformed custom name (42602), or none at all (42704).
pub fn bad_startup_parameter(name: &str) -> PgError {
    if name.contains('.') {
        PgError::fatal(codes::INVALID_NAME, format!("invalid configuration parameter name \"{name}\""))
            .with_detail("Custom parameter names must be two or more simple identifiers separated by dots.")
    } else {
        PgError::fatal(codes::UNDEFINED_OBJECT, format!("unrecognized configuration parameter \"{name}\""))
    }
}

/// A user who is not in `admin_users`, on the admin console.
pub fn not_admin(user: &str) -> PgError {
    PgError::fatal(codes::INVALID_AUTHORIZATION, format!("user \"{user}\" is not an admin user of pgsplit")).because("not_admin")
}

/// A startup packet that does not decode: an unsupported protocol version is 0A000, anything else 08P01.
pub fn bad_startup_packet(e: &crate::protocol::decode::DecodeError) -> PgError {
    let code = match e {
        crate::protocol::decode::DecodeError::Version(..) => codes::FEATURE_NOT_SUPPORTED,
        _ => codes::PROTOCOL_VIOLATION,
    };
    PgError::fatal(code, e.to_string())
}

/// Bytes sent after SSLRequest but before the handshake (plaintext injection, CVE-2021-23214).
pub fn data_before_tls() -> PgError {
    PgError::fatal(codes::PROTOCOL_VIOLATION, "data received before TLS handshake")
}

/// An SSLRequest over a connection already encrypted.
pub fn ssl_inside_tls() -> PgError {
    PgError::fatal(codes::PROTOCOL_VIOLATION, "SSLRequest inside TLS")
}

/// A wrong password, or a user who may not connect (the same error, as PostgreSQL gives).
pub fn password_failed(user: &str) -> PgError {
    PgError::fatal(codes::INVALID_PASSWORD, format!("password authentication failed for user \"{user}\""))
}

/// A SASL mechanism other than SCRAM-SHA-256.
pub fn sasl_mechanism() -> PgError {
    PgError::fatal(codes::PROTOCOL_VIOLATION, "client selected an invalid SASL authentication mechanism")
}

/// A SCRAM client-first message pgsplit does not accept: an authorization identity is unsupported (0A000), anything
/// else malformed (08P01).
pub fn scram(e: &ScramError) -> PgError {
    let code = match e {
        ScramError::AuthorizationIdentity => codes::FEATURE_NOT_SUPPORTED,
        _ => codes::PROTOCOL_VIOLATION,
    };
    PgError::fatal(code, e.to_string())
}

/// Another message where a password message was due.
pub fn expected_password(tag: u8) -> PgError {
    PgError::fatal(codes::PROTOCOL_VIOLATION, format!("expected password message, got {:?}", tag as char))
}

/// The login NOTICE when no target could be reached for its parameters.
pub fn server_params_unknown() -> PgError {
    PgError::notice(
        codes::CONNECTION_FAILURE,
        "no target is reachable: the server's parameters (server_version, TimeZone, ...) are unknown",
    )
}

// The admin console (`crate::admin`): ERROR, the console goes on.

/// A console command that is not one.
pub fn admin_syntax(message: String) -> PgError {
    PgError::error(codes::SYNTAX_ERROR, message)
}

/// A console command's value that is not one of its values (`SET mode`, a target's name).
pub fn admin_invalid_value(message: String) -> PgError {
    PgError::error(codes::INVALID_PARAMETER_VALUE, message)
}

/// RELOAD of a configuration that cannot be applied: the running one stays.
pub fn reload_failed(e: impl std::fmt::Display) -> PgError {
    PgError::error(codes::CONFIG_FILE_ERROR, format!("configuration not reloaded: {e}"))
        .with_hint("the running configuration stays in force")
}
