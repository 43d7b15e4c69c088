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
        if single && !may_change_session(sql) && !crate::router::commands::acts_on_a_database(sql) {
            None
        } else {
            Some(self.cache.analysis_memo(sql, memo))
        }
    }
}

/// A cheap test for texts that may change session parameters: a leading SET/RESET/DISCARD, or set_config anywhere.
fn may_change_session(sql: &str) -> bool {
    let first = sql.trim_start().as_bytes();
    [&b"set"[..], b"reset", b"discard"].iter().any(|w| {
        first.get(..w.len()).is_some_and(|p| p.eq_ignore_ascii_case(w))
            && !first.get(w.len()).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
    }) || sql.as_bytes().windows(10).any(|w| w.eq_ignore_ascii_case(b"set_config"))
}

#[cfg(test)]
mod tests {
    use super::may_change_session;

    #[test]
    fn single_mode_analyses_only_texts_that_may_change_session_state() {
        for sql in ["SET search_path = a", "  reset all", "discard all", "select SET_CONFIG('a', 'b', false)", "set"] {
            assert!(may_change_session(sql), "{sql}");
        }
        for sql in ["select 1", "settle_accounts()", "select * from resets", "insert into t values (1)", ""] {
            assert!(!may_change_session(sql), "{sql}");
        }
    }
}
