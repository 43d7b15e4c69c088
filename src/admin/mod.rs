//! The admin console's commands (SPEC §6) as functions over the App: what the console accepts, parsed and run,
//! answered as data; `session::console` writes the answers to the client.
//!
//! `SHOW POOLS | CLIENTS | SERVERS | STATS | ROUTES | CONFIG | MODE | CACHE` (`show`), `RELOAD`, `PAUSE [target]`,
//! `RESUME [target]`, `SET mode = single | split` (`control`). Several commands may share one Query, separated by
//! `;`; the first error ends the Query, as in PostgreSQL.

mod control;
mod show;

use crate::app::App;
use crate::config::Mode;
use crate::protocol::encode::PgError;
use crate::session::errors;

pub use control::Targets;
pub use show::Show;

/// A result set: column names and text rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The columns' names, in order.
    pub columns: &'static [&'static str],
    /// One text value per column in each row.
    pub rows: Vec<Vec<String>>,
}

/// What one admin command answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Rows, then CommandComplete `SHOW`.
    Rows(Table),
    /// CommandComplete with this tag only.
    Done(&'static str),
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
    /// `RELOAD`: re-read the configuration file.
    Reload,
    /// `PAUSE [target]`: new transactions on the targets wait.
    Pause(Targets),
    /// `RESUME [target]`: paused targets take transactions again.
    Resume(Targets),
    /// `SET mode = single | split`.
    SetMode(Mode),
}

/// The hint of an unknown command: everything the console accepts.
const COMMANDS_HINT: &str =
    "SHOW POOLS|CLIENTS|SERVERS|STATS|ROUTES|CONFIG|MODE|CACHE, RELOAD, PAUSE [target], RESUME [target], SET mode = single|split";

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
        Command::Reload => control::reload(app, user).await,
        Command::Pause(targets) => control::pause(app, user, &targets).await,
        Command::Resume(targets) => control::resume(app, user, &targets),
        Command::SetMode(mode) => Ok(control::set_mode(app, user, mode)),
    }
}

impl Command {
    /// Parses one command (no `;`); what the console does not know is a 42601 or, for a bad value, a 22023.
    pub fn parse(command: &str) -> Result<Command, PgError> {
        // `SET mode='single'`: PgBouncer's console takes `key=value` without spaces too.
        let lower = command.to_ascii_lowercase().replace('=', " = ");
        let words: Vec<&str> = lower.split_whitespace().collect();
        match words.as_slice() {
            ["show", what] => Show::parse(what).map(Command::Show),
            ["reload"] => Ok(Command::Reload),
            ["pause", rest @ ..] => Targets::parse(rest).map(Command::Pause),
            ["resume", rest @ ..] => Targets::parse(rest).map(Command::Resume),
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
