//! Router tests by SQL category over one shared routing table (primary: config, customer; data: workspace, reference).

use super::*;

fn table() -> RoutingTable {
    let mut schemas = HashMap::new();
    schemas.insert("config".to_owned(), 0);
    schemas.insert("customer".to_owned(), 0);
    schemas.insert("workspace".to_owned(), 1);
    schemas.insert("reference".to_owned(), 1);
    RoutingTable { targets: vec!["primary".into(), "data".into()], schemas, default_target: 0 }
}

fn route(sql: &str) -> Result<(String, Reason), RouteError> {
    let t = table();
    let d = decide(&t, &Catalog::unknown(2), &Analysis::of(sql), &SessionView::default())?;
    Ok((t.name(d.target).to_owned(), d.reason))
}

fn target(sql: &str) -> String {
    match route(sql) {
        Ok((t, _)) => t,
        Err(e) => panic!("{sql}: {e}"),
    }
}

#[test]
fn routes_by_schema_in_every_clause() {
    let cases = [
        ("select * from config.users", "primary"),
        ("SELECT * FROM Workspace.Imports", "data"),
        ("select * from reference.countries c join reference.regions r on r.id = c.region", "data"),
        ("select (select count(*) from customer.accounts) as n", "primary"),
        ("select * from pg_catalog.pg_class where relname in (select name from workspace.files)", "data"),
        ("with x as (select * from workspace.rows) select * from x", "data"),
        ("select * from config.a union all select * from customer.b", "primary"),
        ("insert into workspace.imports (id) values (1) on conflict do nothing returning id", "data"),
        ("update customer.accounts set name = 'x' where id = 1", "primary"),
        ("delete from workspace.t using reference.codes c where c.id = t.code", "data"),
        ("copy workspace.imports from stdin", "data"),
        ("copy (select * from reference.codes) to stdout", "data"),
        ("create table workspace.t (id int)", "data"),
        ("create schema workspace", "data"),
        ("comment on table customer.accounts is 'x'", "primary"),
        ("select nextval('workspace.seq')", "data"),
        ("select 'config.users'::regclass", "primary"),
        ("select workspace.f(1)", "data"),
        ("call config.p()", "primary"),
        ("truncate workspace.a, workspace.b", "data"),
        ("select * from \"workspace\".\"Imports\"", "data"),
    ];
    for (sql, want) in cases {
        assert_eq!(target(sql), want, "{sql}");
    }
}

#[test]
fn unrouted_statements_go_to_the_default_target() {
    for sql in
        ["select 1", "select now()", "select * from pg_catalog.pg_tables", "select * from public.t", "show search_path", ""]
    {
        assert_eq!(route(sql), Ok(("primary".into(), Reason::Default)), "{sql}");
    }
}

#[test]
fn quoted_schema_names_keep_their_case() {
    // "Workspace" is not the routed schema workspace.
    assert_eq!(route("select * from \"Workspace\".t"), Ok(("primary".into(), Reason::Default)));
}

#[test]
fn aliases_and_string_literals_are_not_schemas() {
    assert_eq!(target("select workspace.id from config.users workspace"), "primary");
    assert_eq!(target("select 'workspace.t' from config.users"), "primary");
    assert_eq!(target("select 1 -- workspace.t\n from config.users"), "primary");
}

#[test]
fn refuses_cross_target_join_naming_relations_and_targets() {
    let err = route("select * from config.users u join workspace.imports i on i.user_id = u.id").unwrap_err();
    assert_eq!(
        err,
        RouteError::CrossTarget {
            relations: vec![("config.users".into(), "primary".into()), ("workspace.imports".into(), "data".into())]
        }
    );
    assert!(err.to_string().contains("config.users on primary"));
}

#[test]
fn refuses_multi_statement_texts_that_disagree() {
    assert!(matches!(route("select 1 from config.a; select 1 from workspace.b"), Err(RouteError::CrossTarget { .. })));
    assert_eq!(target("begin; insert into workspace.a values (1); commit"), "data");
}

#[test]
fn hints_route_and_unknown_hints_are_errors() {
    assert_eq!(route("/* pgsplit: target=data */ select 1"), Ok(("data".into(), Reason::Hint)));
    assert_eq!(route("/* pgsplit: target=nowhere */ select 1"), Err(RouteError::UnknownTarget("nowhere".into())));
    assert!(matches!(route("/* pgsplit: target=data */ select * from config.users"), Err(RouteError::CrossTarget { .. })));
}

#[test]
fn session_hint_applies_only_to_unrouted_statements() {
    let t = table();
    let view = SessionView { search_path: &[], target_hint: Some(1) };
    assert_eq!(decide(&t, &Catalog::unknown(2), &Analysis::of("select 1"), &view).map(|d| d.target), Ok(1));
    assert_eq!(decide(&t, &Catalog::unknown(2), &Analysis::of("select * from config.users"), &view).map(|d| d.target), Ok(0));
}

#[test]
fn unparseable_text_falls_back_to_the_token_scan() {
    let a = Analysis::of("vacuum (verbose) workspace.imports");
    assert!(a.fallback);
    assert_eq!(route("vacuum (verbose) workspace.imports"), Ok(("data".into(), Reason::Fallback)));
    assert!(matches!(
        route("do $$ begin perform 1; end $$; select * from config.a x join workspace.b y on true fetch first 1 rows with ties frob"),
        Err(RouteError::CrossTarget { .. }) | Ok(_)
    ));
}

#[test]
fn unparseable_writes_without_routed_names_are_refused() {
    assert_eq!(route("vacuum (verbose) imports"), Err(RouteError::UnparsedWrite));
    assert_eq!(route("cluster imports"), Err(RouteError::UnparsedWrite));
}

#[test]
fn transaction_and_target_commands_are_recognised() {
    assert_eq!(Analysis::of("BEGIN").command, Command::Begin);
    assert_eq!(Analysis::of("start transaction isolation level serializable").command, Command::Begin);
    assert_eq!(Analysis::of("commit").command, Command::Commit);
    assert_eq!(Analysis::of("end").command, Command::Commit);
    assert_eq!(Analysis::of("rollback").command, Command::Rollback);
    assert_eq!(Analysis::of("rollback to savepoint a").command, Command::Other);
    assert_eq!(Analysis::of("set pgsplit.target = 'data'").command, Command::SetTarget("data".into()));
    assert_eq!(Analysis::of("SET pgsplit.target TO data").command, Command::SetTarget("data".into()));
    assert_eq!(Analysis::of("reset pgsplit.target").command, Command::ResetTarget);
    assert_eq!(Analysis::of("begin; select 1").command, Command::Other);
}

#[test]
fn regclass_strings_fold_like_postgres() {
    use super::analyze::regclass_name;
    let n = regclass_name("\"Ws\".\"My\"\"T\"").unwrap();
    assert_eq!((n.schema.as_deref(), n.object.as_str()), (Some("Ws"), "My\"T"));
    let n = regclass_name("Workspace.Seq").unwrap();
    assert_eq!((n.schema.as_deref(), n.object.as_str()), (Some("workspace"), "seq"));
    assert!(regclass_name("a..b").is_none());
}
