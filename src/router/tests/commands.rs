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
            Command::SetParam { name: "search_path".into(), value: "'workspace', 'public'".into() },
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
    for sql in [
        "insert into workspace.a values (1)",
        "copy workspace.a from stdin",
        "truncate config.a",
        "create schema x",
        "explain analyze insert into a values (1)",
        "explain (analyze, buffers) delete from a",
        "explain (analyze on) update a set b = 1",
    ] {
        assert!(Analysis::of(sql).writes, "{sql}");
    }
    for sql in [
        "select * from workspace.a",
        "copy workspace.a to stdout",
        "explain select 1",
        "explain analyze select 1",
        "show search_path",
    ] {
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

#[test]
fn state_that_cannot_be_replayed_pins_the_session() {
    for sql in [
        "listen imports_done",
        "prepare q as select 1",
        "create temporary table t (id int)",
        "create temp view v as select 1",
        "create temporary sequence s",
        "select 1 as x into temp t2",
        "declare c cursor with hold for select 1",
        "select pg_advisory_lock(1)",
        "set role reporting",
        "set session authorization other",
        "set session characteristics as transaction isolation level serializable",
        "select set_config('app.user', 'x', false), 1",
        "select 1; select set_config('app.user', 'x', false) from config.users",
        // Objects created in the temporary schema by name.
        "create table pg_temp.t (id int)",
        "create view pg_temp.v as select 1",
        "create function pg_temp.f() returns int language sql as 'select 1'",
        "create table pg_temp_3.t (id int)",
    ] {
        assert!(Analysis::of(sql).pins, "{sql}");
    }
    for sql in [
        "select 1",
        "create table t (id int)",
        "select pg_advisory_xact_lock(1)",
        "select set_config('search_path', 'workspace', false)",
        "select set_config('app.user', 'x', true)",
        "declare c cursor for select 1",
        "set statement_timeout = 5",
        "create table public.pg_temp_x (id int)",
        "create table pg_temporal.t (id int)",
        "select * from pg_temp.t",
    ] {
        assert!(!Analysis::of(sql).pins, "{sql}");
    }
}

#[test]
fn texts_that_must_not_be_wrapped_in_a_transaction_are_recognised() {
    for sql in [
        "begin",
        "select 1; commit",
        "commit and chain",
        "/* pgsplit: target=data */ vacuum workspace.imports",
        "VACUUM (VERBOSE) t",
        "create database x",
        "-- note\nCREATE UNIQUE INDEX CONCURRENTLY i ON workspace.imports (id)",
        "drop index concurrently workspace.i",
        "reindex table concurrently t",
        "alter system set work_mem = '1MB'",
        "discard all",
    ] {
        assert!(Analysis::of(sql).own_transaction, "{sql}");
    }
    for sql in ["select 1", "set statement_timeout = '1s'", "create index i on t (a)", "rollback to savepoint a", "savepoint a"] {
        assert!(!Analysis::of(sql).own_transaction, "{sql}");
    }
}

#[test]
fn set_values_are_rebuilt_as_quoted_literals_never_copied_from_the_text() {
    let set = |name: &str, value: &str| Command::SetParam { name: name.into(), value: value.into() };
    let cases = [
        ("set search_path = Workspace, \"Ref\", 'x y'", set("search_path", "'workspace', 'Ref', 'x y'")),
        ("set search_path = ''", set("search_path", "''")),
        // Non-ASCII in escapes: the replayed text means the same in every client_encoding.
        ("set search_path = Ärger", set("search_path", "E'\\u00c4rger'")),
        ("set statement_timeout = 010", set("statement_timeout", "010")),
        ("set app.x = E'a\\'b'", set("app.x", "'a''b'")),
        ("set app.x = 'a\\'", set("app.x", "E'a\\\\'")),
        ("set work_mem = 64", set("work_mem", "64")),
        ("set extra_float_digits = -1", set("extra_float_digits", "-1")),
        ("set enable_seqscan = off", set("enable_seqscan", "'off'")),
        ("set app.flag = true", set("app.flag", "'true'")),
        ("set datestyle = iso, mdy", set("datestyle", "'iso', 'mdy'")),
        ("set app.body = $$it's$$", set("app.body", "'it''s'")),
        ("set time zone 'Europe/Paris'", set("timezone", "'Europe/Paris'")),
        ("set time zone local", Command::ResetParam("timezone".into())),
        ("set time zone default", Command::ResetParam("timezone".into())),
        ("reset time zone", Command::ResetParam("timezone".into())),
        ("RESET TIME ZONE;", Command::ResetParam("timezone".into())),
        // SET NAMES is client_encoding.
        ("set names 'LATIN1'", set("client_encoding", "'LATIN1'")),
        ("set names koi8r", set("client_encoding", "'koi8r'")),
        ("set names default", Command::ResetParam("client_encoding".into())),
    ];
    for (sql, want) in cases {
        let a = Analysis::of(sql);
        assert_eq!(a.command, want, "{sql}");
        assert!(!a.pins, "{sql}");
    }
}

#[test]
fn a_setting_pgsplit_cannot_rebuild_keeps_the_session_on_its_connection() {
    for sql in ["set time zone interval '1' hour", "set app.x = 1 + 1"] {
        let a = Analysis::of(sql);
        assert_eq!(a.command, Command::Other, "{sql}");
        assert!(a.session_changes.is_empty() && a.pins, "{sql}");
    }
}

/// The database a statement needs free of other users (issue 16, point 9): pgsplit closes its idle connections to
/// it before the statement runs. Names fold as PostgreSQL folds them; other statements about databases need none.
#[test]
fn statements_that_need_a_database_free_of_other_users_name_it() {
    let cases = [
        ("DROP DATABASE scratch", Some("scratch")),
        ("drop database if exists Scratch", Some("scratch")),
        ("drop database \"Scratch DB\" with (force)", Some("Scratch DB")),
        ("/* cleanup */ DROP DATABASE x;", Some("x")),
        ("alter database old rename to new", Some("old")),
        ("ALTER DATABASE \"Old\" SET TABLESPACE fast", Some("Old")),
        ("create database copy template = source", Some("source")),
        ("CREATE DATABASE copy WITH OWNER app TEMPLATE \"Src\" ENCODING 'UTF8'", Some("Src")),
        ("alter database x set work_mem = '1MB'", None),
        ("alter database x owner to app", None),
        ("create database fresh", None),
        ("drop table database", None),
        ("select 'drop database x'", None),
        ("drop schema x", None),
    ];
    for (sql, want) in cases {
        assert_eq!(Analysis::of(sql).frees_database.as_deref(), want, "{sql}");
        assert_eq!(crate::router::commands::database_to_free(sql).as_deref(), want, "{sql}");
    }
    for sql in ["drop database x", "  Create Database y", "ALTER DATABASE z RENAME TO w", "-- c\ndrop database x"] {
        assert!(crate::router::commands::acts_on_a_database(sql), "{sql}");
    }
    for sql in ["select 1", "drop table x", "create index i on t (a)", "database"] {
        assert!(!crate::router::commands::acts_on_a_database(sql), "{sql}");
    }
}

/// What may leave sequence state in the server session (issue 16, point 7): a connection that ran it is discarded
/// of its sequences before another session uses it.
#[test]
fn texts_that_may_call_nextval_are_known() {
    for sql in [
        "select nextval('workspace.s')",
        "SELECT setval('s', 10)",
        "select nextval($1)",
        "insert into workspace.imports (name) values ('x')",
        "update t set a = 1",
        "select workspace.make_id()",
        "select f()",
        "copy t from stdin",
        "do $$ begin perform nextval('s'); end $$",
    ] {
        assert!(Analysis::of(sql).sequences, "{sql}");
    }
    for sql in ["select 1", "select count(*) from workspace.imports", "select now(), current_setting('x')", "set a = 1", "begin"]
    {
        assert!(!Analysis::of(sql).sequences, "{sql}");
    }
}
