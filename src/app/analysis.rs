//! The analysis of a statement's text, through the route cache, and the cheap pre-test that spares it in single mode.

use crate::router::cache::LookupMemo;
use crate::router::SharedAnalysis;

use super::App;

impl App {
    /// The analysis of a statement. In single mode routing needs none, so only texts that may change session state
    /// (SET, RESET, DISCARD, set_config) or act on a whole database (for `App::free_database`) are analysed, for the
    /// session to follow them; others give `None`.
    pub fn analysis(&self, sql: &str) -> Option<SharedAnalysis> {
        self.analysis_for(sql, self.is_single(), &mut Default::default())
    }

    /// `analysis` for a session that routes in single mode (`single`) or split mode, whatever the mode is now, with
    /// the session's memo of its last lookup.
    pub fn analysis_for(&self, sql: &str, single: bool, memo: &mut LookupMemo) -> Option<SharedAnalysis> {
        if single && !matters_in_single_mode(sql) {
            None
        } else {
            Some(self.cache.analysis_memo(sql, memo))
        }
    }
}

/// Whether a text must be analysed in single mode, where routing needs no analysis: it may change session state
/// the session follows, leave state on its server connection (which pins: the next client must never reach a
/// temporary table, a LISTEN, a lock, a cursor or a SQL-level prepared statement; or sequence state, discarded
/// before another session uses the connection), drop pgsplit's own prepared statements, or act on a whole database
/// (`App::free_database`).
fn matters_in_single_mode(sql: &str) -> bool {
    leading_session_word(sql) || contains_word_part(sql, &SINGLE_MODE_PARTS) || crate::router::commands::acts_on_a_database(sql)
}

/// A cheap test for texts that may change session parameters or drop prepared statements: a leading SET, RESET,
/// DISCARD or DEALLOCATE, or set_config anywhere.
#[cfg(test)]
fn may_change_session(sql: &str) -> bool {
    leading_session_word(sql) || contains_word_part(sql, &[b"set_config"])
}

/// A leading SET, RESET, DISCARD or DEALLOCATE.
fn leading_session_word(sql: &str) -> bool {
    let first = sql.trim_start().as_bytes();
    [&b"set"[..], b"reset", b"discard", b"deallocate"].iter().any(|w| {
        first.get(..w.len()).is_some_and(|p| p.eq_ignore_ascii_case(w))
            && !first.get(w.len()).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
    })
}

/// Parts of words that make a text matter in single mode wherever they are (comments and literals included: a
/// false positive only costs an analysis): `set_config`; every statement that may pin (`router::commands::pins`,
/// the session advisory locks, objects in `pg_temp`): LISTEN, TEMP/TEMPORARY/pg_temp, PREPARE, WITH HOLD,
/// pg_advisory_lock and friends; and every one that may call nextval or setval (`Analysis::sequences`):
/// a function call's parenthesis, and the writes (column defaults, triggers).
const SINGLE_MODE_PARTS: [&[u8]; 12] = [
    b"set_config",
    b"listen",
    b"temp",
    b"prepare",
    b"hold",
    b"advisory",
    b"(",
    b"insert",
    b"update",
    b"delete",
    b"merge",
    b"copy",
];

/// Whether any of `parts` (lower case ASCII) occurs in `sql`, ignoring ASCII case: one pass, each byte tested
/// against the parts' first letters.
fn contains_word_part(sql: &str, parts: &[&[u8]]) -> bool {
    let bytes = sql.as_bytes();
    bytes.iter().enumerate().any(|(i, b)| {
        let b = b.to_ascii_lowercase();
        parts.iter().any(|p| p.first() == Some(&b) && bytes.get(i..i + p.len()).is_some_and(|w| w.eq_ignore_ascii_case(p)))
    })
}

#[cfg(test)]
mod tests {
    use super::{matters_in_single_mode, may_change_session};

    #[test]
    fn single_mode_analyses_only_texts_that_may_change_session_state() {
        for sql in ["SET search_path = a", "  reset all", "discard all", "select SET_CONFIG('a', 'b', false)", "set"] {
            assert!(may_change_session(sql), "{sql}");
        }
        for sql in ["select 1", "settle_accounts()", "select * from resets", "insert into t values (1)", ""] {
            assert!(!may_change_session(sql), "{sql}");
        }
    }

    /// Every statement that pins, drops prepared statements or acts on a database is analysed in single mode too.
    #[test]
    fn single_mode_analyses_texts_that_may_pin_call_nextval_or_act_on_a_database() {
        for sql in [
            "create temporary table t (a int)",
            "CREATE TEMP TABLE t AS SELECT 1",
            "create table pg_temp.t (a int)",
            "LISTEN jobs",
            "prepare p as select 1",
            "declare c cursor with hold for select 1",
            "select pg_advisory_lock(1)",
            "SELECT PG_TRY_ADVISORY_LOCK_SHARED(1)",
        ] {
            assert!(matters_in_single_mode(sql), "{sql}");
            assert!(crate::router::Analysis::of(sql).pins, "{sql} pins");
        }
        for sql in ["set role app", "deallocate all", "Drop Database x"] {
            assert!(matters_in_single_mode(sql), "{sql}");
        }
        // And every one that may call nextval (`Analysis::sequences`).
        for sql in ["insert into t values (1)", "update t set a = 2", "select nextval('s')", "select f()", "copy t from stdin"] {
            assert!(matters_in_single_mode(sql), "{sql}");
        }
        for sql in ["select 1", "select abalance from accounts where aid = $1", "begin", "commit", "select * from t"] {
            assert!(!matters_in_single_mode(sql), "{sql}");
        }
    }
}
