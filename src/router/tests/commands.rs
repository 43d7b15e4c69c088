//! The session commands the router recognises in a statement text (transactions, SET, RESET, set_config).

use super::*;

#[test]
fn transaction_and_target_commands_are_recognised() {
    let cases = [
        ("BEGIN", Command::Begin),
        ("start transaction isolation level serializable", Command::Begin),
        ("commit", Command::Commit),
        ("end", Command::Commit),
        ("rollback", Command::Rollback),
        ("rollback to savepoint a", Command::Holdable("ROLLBACK")),
        ("savepoint a", Command::Holdable("SAVEPOINT")),
        ("release savepoint a", Command::Holdable("RELEASE")),
        ("set local statement_timeout = '1s'", Command::Holdable("SET")),
        ("set local time zone 'UTC'", Command::Holdable("SET")),
        ("deallocate all", Command::Deallocate(None)),
        ("deallocate prepare \"S1\"", Command::Deallocate(Some("S1".into()))),
        ("set pgsplit.target = 'data'", Command::SetTarget("data".into())),
        ("SET pgsplit.target TO data", Command::SetTarget("data".into())),
        ("reset pgsplit.target", Command::ResetTarget),
        ("begin; select 1", Command::Other),
        ("reset all", Command::ResetAll),
        ("discard all", Command::DiscardAll),
        ("reset statement_timeout", Command::ResetParam("statement_timeout".into())),
        ("set statement_timeout to default", Command::ResetParam("statement_timeout".into())),
        ("set application_name = 'app'", Command::SetParam { name: "application_name".into(), value: "'app'".into() }),
        (
            "select set_config('search_path', 'Workspace, public', false)",
            Command::SetParam { name: "search_path".into(), value: "\"workspace\", \"public\"".into() },
        ),
        ("select set_config('search_path', 'workspace', true)", Command::Other),
        ("select * from workspace.imports", Command::Other),
    ];
    for (sql, want) in cases {
        assert_eq!(Analysis::of(sql).command, want, "{sql}");
    }
}

#[test]
fn catalog_changes_and_writes_are_flagged() {
    for sql in ["create table workspace.t (id int)", "drop view config.v", "alter table workspace.a add b int", "create schema x"]
    {
        assert!(Analysis::of(sql).ddl, "{sql}");
    }
    for sql in [
        "select 1",
        "insert into workspace.a values (1)",
        "vacuum workspace.a",
        "comment on table config.a is 'x'",
        "lock config.a",
    ] {
        assert!(!Analysis::of(sql).ddl, "{sql}");
    }
    for sql in ["insert into workspace.a values (1)", "copy workspace.a from stdin", "truncate config.a", "create schema x"] {
        assert!(Analysis::of(sql).writes, "{sql}");
    }
    for sql in ["select * from workspace.a", "copy workspace.a to stdout", "explain select 1", "show search_path"] {
        assert!(!Analysis::of(sql).writes, "{sql}");
    }
}

#[test]
fn regclass_strings_fold_like_postgres() {
    use super::super::analyze::regclass_name;
    let n = regclass_name("\"Ws\".\"My\"\"T\"").map(|n| (n.schema, n.object));
    assert_eq!(n, Some((Some("Ws".into()), "My\"T".into())));
    let n = regclass_name("Workspace.Seq").map(|n| (n.schema, n.object));
    assert_eq!(n, Some((Some("workspace".into()), "seq".into())));
    assert!(regclass_name("a..b").is_none());
    assert!(regclass_name("a.b.c.d").is_none());
}
