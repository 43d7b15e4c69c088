//! Texts sqlparser rejects go through the token scan: routed `schema.name` pairs decide, dollar-quoted bodies are
//! scanned, and a write that names nothing pgsplit can look up is refused rather than guessed.

use super::*;

#[test]
fn statements_sqlparser_rejects_route_by_the_token_scan() {
    let cases = [
        ("vacuum (verbose) workspace.imports", D),
        ("vacuum full analyze config.users", P),
        ("reindex table workspace.imports", D),
        ("reindex index concurrently config.users_pkey", P),
        ("cluster workspace.imports using imports_pkey", D),
        ("refresh materialized view reference.mv", D),
        ("refresh materialized view concurrently workspace.mv", D),
        ("copy workspace.imports from stdin with (freeze on)", D),
        ("create table workspace.t (like workspace.imports including all)", D),
        ("alter view workspace.v rename to w", D),
        ("alter materialized view reference.mv rename to mv2", D),
        ("alter sequence config.users_id_seq restart with 1", P),
        ("alter table workspace.imports attach partition workspace.imports_2025 for values in (1)", D),
        ("comment on function workspace.clean(int) is 'x'", D),
        ("create extension pg_trgm schema workspace", D),
        ("alter default privileges in schema reference grant select on tables to app", D),
        ("security label on table customer.accounts is 'x'", P),
        ("select * from only config.users", P),
        ("table workspace.imports", D),
        ("do $$ begin insert into workspace.log values (1); end $$", D),
        ("do $body$ begin perform config.audit('x'); end $body$", P),
        ("do $$ begin execute $q$ delete from reference.countries $q$; end $$", D),
    ];
    check(&cases);
    for (sql, _) in cases {
        let a = Analysis::of(sql);
        assert!(a.fallback, "sqlparser 0.63 now parses {sql}: move it to its category");
        assert!(route(sql).is_ok_and(|d| d.reason == Reason::Fallback), "{sql}");
    }
}

#[test]
fn the_token_scan_refuses_texts_that_span_both_targets() {
    check(&[
        ("vacuum (analyze) config.users, workspace.imports", Refused),
        ("do $$ begin insert into config.a values (1); insert into workspace.b values (1); end $$", Refused),
        ("refresh materialized view workspace.mv; select * from config.users", Refused),
        ("alter table workspace.imports set schema config", Refused),
        ("do $$ begin perform 1; end $$; select * from config.a x join workspace.b y on true", Refused),
    ]);
}

#[test]
fn the_token_scan_ignores_literals_comments_and_alias_qualified_columns() {
    check(&[
        ("vacuum (verbose) workspace.imports /* config.users */", D),
        ("select * from only workspace.imports i where i.note = 'config.users'", D),
        ("select p.name, u.id from only config.users u join config.sessions p on true", P),
        ("do $$ begin raise notice 'workspace.imports'; end $$", P),
    ]);
}

#[test]
fn unqualified_names_in_unparsed_text_resolve_through_the_catalog() {
    let c = catalog();
    check_all(
        &[
            ("vacuum (verbose) imports", D),
            ("cluster users", P),
            ("refresh materialized view countries", D),
            ("do $$ begin delete from imports; end $$", D),
            ("vacuum (verbose) users, imports", Refused),
        ],
        "config, workspace, reference",
        &c,
    );
}

#[test]
fn unparsed_writes_naming_nothing_routable_are_refused_while_a_catalog_is_missing() {
    let unknown = Catalog::unknown(2);
    check_all(
        &[
            ("vacuum (verbose) imports", Want::Unparsed),
            ("cluster imports", Want::Unparsed),
            ("do $$ begin perform 1; end $$", Want::Unparsed),
            ("reindex database app", Want::Unparsed),
            // Reads and qualified names need no catalog.
            ("select * from only imports", P),
            ("vacuum (verbose) workspace.imports", D),
        ],
        "",
        &unknown,
    );
}

/// A passthrough target (it owns no schema) whose catalog was never read (it is down) holds none of the names: it
/// does not make the logical database refuse unparsed writes (issue 16, point 9).
#[test]
fn a_passthrough_target_that_was_never_read_does_not_refuse_unparsed_writes() {
    let mut table = table();
    table.targets.push("archive".into());
    let known = catalog();
    let with_archive = Catalog::unknown(3)
        .with_target(PRIMARY, known.target(PRIMARY).cloned().unwrap())
        .with_target(DATA, known.target(DATA).cloned().unwrap());
    let path = parse_search_path("");
    let view = SessionView { search_path: &path, target_hint: None };
    for sql in ["vacuum (verbose) imports", "do $$ begin perform 1; end $$"] {
        let d = decide(&table, &with_archive, &Analysis::of(sql), &view);
        assert!(matches!(d, Ok(Decision { target: PRIMARY, .. })), "{sql}: {d:?}");
    }
    // A routed target's missing catalog still refuses them.
    let without_data = Catalog::unknown(3).with_target(PRIMARY, known.target(PRIMARY).cloned().unwrap());
    let d = decide(&table, &without_data, &Analysis::of("do $$ begin perform 1; end $$"), &view);
    assert!(matches!(d, Err(RouteError::UnparsedWrite)), "{d:?}");
}

#[test]
fn text_the_tokenizer_rejects_is_scanned_for_dotted_words() {
    let a = Analysis::of("select 'unterminated from workspace.imports");
    assert!(a.fallback && a.writes);
    assert!(a.names.iter().any(|n| n.schema.as_deref() == Some("workspace") && n.object == "imports"), "{:?}", a.names);
    check(&[("insert into config.users values ('x", P), ("select \"x from config.users, workspace.imports", Refused)]);
}
