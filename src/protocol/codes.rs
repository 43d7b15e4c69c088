//! SQLSTATE codes pgsplit raises itself, named after PostgreSQL's errcodes.txt.

/// `0A000` a statement whose relations live on more than one target.
pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
/// `08P01` the client broke the protocol.
pub const PROTOCOL_VIOLATION: &str = "08P01";
/// `08006` a target could not be reached or dropped the connection.
pub const CONNECTION_FAILURE: &str = "08006";
/// `08001` a server connection could not be established.
pub const CONNECTION_REJECTED: &str = "08001";
/// `28P01` wrong password.
pub const INVALID_PASSWORD: &str = "28P01";
/// `28000` the client may not connect this way (unknown user, TLS required).
pub const INVALID_AUTHORIZATION: &str = "28000";
/// `3D000` the client asked for a database pgsplit does not serve.
pub const INVALID_CATALOG_NAME: &str = "3D000";
/// `53300` no server connection became free within the checkout timeout.
pub const TOO_MANY_CONNECTIONS: &str = "53300";
/// `25P02` statements sent in a transaction that pgsplit already failed.
pub const IN_FAILED_TRANSACTION: &str = "25P02";
/// `22023` a routing hint named a target that does not exist.
pub const INVALID_PARAMETER_VALUE: &str = "22023";
/// `22021` text that is not valid in the client's encoding.
pub const CHARACTER_NOT_IN_REPERTOIRE: &str = "22021";
/// `XX000` an internal error (a bug).
pub const INTERNAL_ERROR: &str = "XX000";
/// `57P01` pgsplit is shutting down.
pub const ADMIN_SHUTDOWN: &str = "57P01";
/// `57P05` a client idle longer than `client_idle_timeout` (PostgreSQL's `idle_session_timeout`).
pub const IDLE_SESSION_TIMEOUT: &str = "57P05";
/// `25P03` a client idle in a transaction longer than `idle_transaction_timeout` (PostgreSQL's
/// `idle_in_transaction_session_timeout`).
pub const IDLE_IN_TRANSACTION_SESSION_TIMEOUT: &str = "25P03";
/// `57P03` a target disabled on the admin console (`DISABLE`), as PostgreSQL's "cannot connect now".
pub const CANNOT_CONNECT_NOW: &str = "57P03";
/// `57014` a statement cancelled at the client's request.
pub const QUERY_CANCELED: &str = "57014";
/// `42602` a configuration parameter name PostgreSQL refuses (startup packet, `options=-c`).
pub const INVALID_NAME: &str = "42602";
/// `54001` a statement too deep for the parser's stack, as PostgreSQL's `stack depth limit exceeded`.
pub const STATEMENT_TOO_COMPLEX: &str = "54001";
/// `25001` BEGIN inside a transaction (a WARNING, as PostgreSQL's).
pub const ACTIVE_SQL_TRANSACTION: &str = "25001";
/// `54000` a message or batch over a limit pgsplit keeps per connection (PostgreSQL's `program_limit_exceeded`).
pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
/// `42704` a configuration parameter PostgreSQL does not have (an undotted startup name it could not be).
pub const UNDEFINED_OBJECT: &str = "42704";
/// `F0000` a configuration file that cannot be applied (RELOAD from the admin console).
pub const CONFIG_FILE_ERROR: &str = "F0000";
/// `42601` an admin console command pgsplit does not know.
pub const SYNTAX_ERROR: &str = "42601";
/// `42501` a role without the privilege (CONNECT on a database, say).
pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
/// `55000` an object not in the state the command needs (a database that does not accept connections).
pub const OBJECT_NOT_IN_PREREQUISITE_STATE: &str = "55000";

/// A server's SQLSTATE at login, as one of the constants above when it is one a login may end with; any other is
/// `08006` (the message still says what the server said).
pub fn of_login(code: &str) -> &'static str {
    [
        INVALID_CATALOG_NAME,
        INSUFFICIENT_PRIVILEGE,
        OBJECT_NOT_IN_PREREQUISITE_STATE,
        INVALID_PASSWORD,
        INVALID_AUTHORIZATION,
        TOO_MANY_CONNECTIONS,
        ADMIN_SHUTDOWN,
    ]
    .into_iter()
    .find(|c| *c == code)
    .unwrap_or(CONNECTION_FAILURE)
}
