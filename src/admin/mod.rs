//! The admin console's commands (SPEC §6) as functions over the App: what the console accepts, parsed and run,
//! answered as data; `session::console` writes the answers to the client.
//!
//! PgBouncer's commands with PgBouncer's columns (`show`, `config`): `SHOW POOLS | CLIENTS | SERVERS | STATS |
//! STATS_TOTALS | STATS_AVERAGES | DATABASES | USERS | LISTS | CONFIG | VERSION | HELP`, `RELOAD`, `PAUSE [db]`,
//! `RESUME [db]`, `SUSPEND`, `KILL db`, `RECONNECT [db]`, `WAIT_CLOSE [db]`, `ENABLE db`, `DISABLE db`, `SHUTDOWN`
//! (`control`), where a PgBouncer database is a pgsplit target; and pgsplit's own: `SHOW TARGETS | ROUTES | MODE |
//! CACHE`, `SET mode = single | split`. Several commands may share one Query, separated by `;`; the first error
//! ends the Query, as in PostgreSQL.

mod config;
mod control;
mod show;

use crate::app::App;
use crate::config::Mode;
use crate::protocol::encode::PgError;
use crate::session::errors;

pub use control::Targets;
pub use show::Show;

/// A column's type, as PgBouncer's console declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// `text` (25).
    Text,
    /// `int4` (23).
    Int4,
    /// `int8` (20).
    Int8,
    /// `numeric` (1700): PgBouncer's counters in SHOW STATS.
    Numeric,
}

impl Type {
    /// The type's OID in RowDescription.
    pub fn oid(self) -> u32 {
        match self {
            Type::Text => 25,
            Type::Int4 => 23,
            Type::Int8 => 20,
            Type::Numeric => 1700,
        }
    }

    /// The type's size in RowDescription (-1: variable).
    pub fn size(self) -> i16 {
        match self {
            Type::Int4 => 4,
            Type::Int8 => 8,
            Type::Text | Type::Numeric => -1,
        }
    }
}

/// A result set: typed columns and rows of text values (`None` is NULL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The columns' names and types, in order.
    pub columns: &'static [(&'static str, Type)],
    /// One value per column in each row, in text format.
    pub rows: Vec<Vec<Option<String>>>,
}

/// What one admin command answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Rows, then CommandComplete `SHOW`.
    Rows(Table),
    /// CommandComplete with this tag only.
    Done(&'static str),
    /// A NoticeResponse (message, detail), then CommandComplete `SHOW` (SHOW HELP, as PgBouncer's).
    Notice(&'static str, String),
    /// EmptyQueryResponse: the Query held no command.
    Empty,
}

/// What one Query on the console answers.
#[derive(Debug, Default)]
pub struct Reply {
    /// The answers of the commands that ran, in order.
    pub answers: Vec<Answer>,
    /// The error that ended the Query before its remaining commands, if one did.
    pub error: Option<PgError>,
}

/// One console command, parsed (lower-cased: target names too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `SHOW what`.
    Show(Show),
    /// `SHOW HELP`: the commands, as a notice.
    Help,
    /// `RELOAD`: re-read the configuration file.
    Reload,
    /// `PAUSE [target]`: new transactions on the targets wait.
    Pause(Targets),
    /// `RESUME [target]`: paused (or suspended) targets take transactions again.
    Resume(Targets),
    /// `SUSPEND`: every target paused, answered once no server connection is in use.
    Suspend,
    /// `KILL target`: its server connections closed at once (their transactions end), the target paused.
    Kill(Targets),
    /// `RECONNECT [target]`: every server connection is replaced once it comes back.
    Reconnect(Targets),
    /// `WAIT_CLOSE [target]`: answered once the connections RECONNECT or KILL retired are closed.
    WaitClose(Targets),
    /// `ENABLE target`: a disabled target takes transactions again.
    Enable(Targets),
    /// `DISABLE target`: new transactions on the target are refused (57P03).
    Disable(Targets),
    /// `SHUTDOWN`: pgsplit stops as on SIGTERM.
    Shutdown,
    /// `SET mode = single | split`.
    SetMode(Mode),
}

/// The commands the console accepts, as SHOW HELP lists them.
const HELP: &str = "
\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION|LISTS
\tSHOW STATS|STATS_TOTALS|STATS_AVERAGES
\tSHOW TARGETS|ROUTES|MODE|CACHE
\tSET mode = single|split
\tRELOAD
\tPAUSE [<db>]
\tRESUME [<db>]
\tDISABLE <db>
\tENABLE <db>
\tRECONNECT [<db>]
\tKILL <db>
\tSUSPEND
\tSHUTDOWN
\tWAIT_CLOSE [<db>]";

/// The hint of an unknown command.
const COMMANDS_HINT: &str = "SHOW HELP lists the commands";

/// Runs each `;`-separated command of a Query for the admin `user`, in order, until the first error.
pub async fn execute(app: &App, user: &str, sql: &str) -> Reply {
    let commands: Vec<&str> = sql.split(';').map(str::trim).filter(|c| !c.is_empty()).collect();
    let mut reply = Reply::default();
    if commands.is_empty() {
        reply.answers.push(Answer::Empty);
    }
    for command in commands {
        match run(app, user, command).await {
            Ok(answer) => reply.answers.push(answer),
            Err(e) => {
                tracing::info!(user = %user, command, error = %e, "admin command refused");
                reply.error = Some(e);
                break;
            }
        }
    }
    reply
}

/// Parses and runs one command.
pub async fn run(app: &App, user: &str, command: &str) -> Result<Answer, PgError> {
    match Command::parse(command)? {
        Command::Show(what) => Ok(Answer::Rows(show::table(app, what))),
        Command::Help => Ok(Answer::Notice("Console usage", HELP.to_owned())),
        Command::Reload => control::reload(app, user).await,
        Command::Pause(targets) => control::pause(app, user, &targets, "PAUSE").await,
        Command::Resume(targets) => control::resume(app, user, &targets),
        Command::Suspend => control::pause(app, user, &Targets::All, "SUSPEND").await,
        Command::Kill(targets) => control::kill(app, user, &targets).await,
        Command::Reconnect(targets) => control::reconnect(app, user, &targets).await,
        Command::WaitClose(targets) => control::wait_close(app, &targets).await,
        Command::Enable(targets) => control::set_disabled(app, user, &targets, false),
        Command::Disable(targets) => control::set_disabled(app, user, &targets, true),
        Command::Shutdown => control::shutdown(app, user),
        Command::SetMode(mode) => control::set_mode(app, user, mode).await,
    }
}

impl Command {
    /// Parses one command (no `;`); what the console does not know is a 42601 or, for a bad value, a 22023.
    pub fn parse(command: &str) -> Result<Command, PgError> {
        // `SET mode='single'`: PgBouncer's console takes `key=value` without spaces too.
        let lower = command.to_ascii_lowercase().replace('=', " = ");
        let words: Vec<&str> = lower.split_whitespace().collect();
        let one = |rest: &[&str]| Targets::parse(rest).and_then(Targets::required);
        match words.as_slice() {
            ["show", "help"] => Ok(Command::Help),
            ["show", what] => Show::parse(what).map(Command::Show),
            ["reload"] => Ok(Command::Reload),
            ["pause", rest @ ..] => Targets::parse(rest).map(Command::Pause),
            ["resume", rest @ ..] => Targets::parse(rest).map(Command::Resume),
            ["suspend"] => Ok(Command::Suspend),
            ["kill", rest @ ..] => one(rest).map(Command::Kill),
            ["reconnect", rest @ ..] => Targets::parse(rest).map(Command::Reconnect),
            ["wait_close", rest @ ..] => Targets::parse(rest).map(Command::WaitClose),
            ["enable", rest @ ..] => one(rest).map(Command::Enable),
            ["disable", rest @ ..] => one(rest).map(Command::Disable),
            ["shutdown"] => Ok(Command::Shutdown),
            ["set", "mode", rest @ ..] => parse_mode(rest).map(Command::SetMode),
            _ => Err(errors::admin_syntax(format!("unknown admin command: {command}")).with_hint(COMMANDS_HINT)),
        }
    }
}

/// The value of `SET mode`: `= v`, `to v`, `=v` or `v`, quoted or not.
fn parse_mode(words: &[&str]) -> Result<Mode, PgError> {
    let value = match words {
        ["=" | "to", v] => *v,
        [v] => v.strip_prefix('=').unwrap_or(v),
        _ => "",
    };
    match value.trim_matches('\'') {
        "single" => Ok(Mode::Single),
        "split" => Ok(Mode::Split),
        other => {
            Err(errors::admin_invalid_value(format!("invalid value for mode: \"{other}\""))
                .with_hint("SET mode = single | split"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::codes;

    fn code(command: &str) -> &'static str {
        Command::parse(command).expect_err(command).code
    }

    #[test]
    fn parses_every_command_case_insensitively() {
        assert_eq!(Command::parse("SHOW POOLS").unwrap(), Command::Show(Show::Pools));
        assert_eq!(Command::parse("show Config").unwrap(), Command::Show(Show::Config));
        assert_eq!(Command::parse(" reload ").unwrap(), Command::Reload);
        assert_eq!(Command::parse("PAUSE").unwrap(), Command::Pause(Targets::All));
        assert_eq!(Command::parse("pause \"DATA\"").unwrap(), Command::Pause(Targets::Named("data".into())));
        assert_eq!(Command::parse("RESUME data").unwrap(), Command::Resume(Targets::Named("data".into())));
    }

    #[test]
    fn set_mode_accepts_equals_to_and_quotes() {
        for command in [
            "SET mode = single",
            "set mode to 'single'",
            "set mode =single",
            "set mode single",
            "set mode=single",
            "SET mode='single'",
        ] {
            assert_eq!(Command::parse(command).unwrap(), Command::SetMode(Mode::Single), "{command}");
        }
        assert_eq!(Command::parse("set mode = 'split'").unwrap(), Command::SetMode(Mode::Split));
    }

    #[test]
    fn refuses_unknown_commands_with_42601_and_bad_values_with_22023() {
        for command in ["show", "show pools extra", "frobnicate", "set mod=single", "SHOW NONSENSE", "pause a b"] {
            assert_eq!(code(command), codes::SYNTAX_ERROR, "{command}");
        }
        for command in ["set mode = bogus", "set mode", "set mode = single split"] {
            assert_eq!(code(command), codes::INVALID_PARAMETER_VALUE, "{command}");
        }
    }

    #[test]
    fn unknown_command_hint_lists_what_the_console_accepts() {
        let e = Command::parse("frobnicate").unwrap_err();
        assert_eq!(e.message, "unknown admin command: frobnicate");
        assert_eq!(e.hint.as_deref(), Some(COMMANDS_HINT));
    }
}
