//! Routing hints: a leading `/* pgsplit: target=x */` comment and the session's `SET pgsplit.target`.

use super::*;

#[test]
fn hints_route_and_unknown_hints_are_errors() {
    assert_eq!(route("/* pgsplit: target=data */ select 1").map(|d| (d.target, d.reason)), Ok((DATA, Reason::Hint)));
    assert_eq!(route("/* pgsplit: target=nowhere */ select 1"), Err(RouteError::UnknownTarget("nowhere".into())));
    assert!(matches!(route("/* pgsplit: target=data */ select * from config.users"), Err(RouteError::CrossTarget { .. })));
    assert_eq!(route("/* pgsplit: target=data */ select * from workspace.imports").map(|d| d.target), Ok(DATA));
    // A hint also routes text sqlparser rejects.
    assert_eq!(route("/* pgsplit: target=data */ do $$ begin perform 1; end $$").map(|d| d.target), Ok(DATA));
}

#[test]
fn session_hint_applies_only_to_unrouted_statements() {
    let (t, c) = (table(), catalog());
    let view = SessionView { search_path: &[], target_hint: Some(DATA) };
    let target = |sql: &str| decide(&t, &c, &Analysis::of(sql), &view).map(|d| (d.target, d.reason));
    assert_eq!(target("select 1"), Ok((DATA, Reason::SessionHint)));
    assert_eq!(target("select * from config.users"), Ok((PRIMARY, Reason::Relations)));
    assert_eq!(target("select * from pg_catalog.pg_class"), Ok((DATA, Reason::SessionHint)));
}
