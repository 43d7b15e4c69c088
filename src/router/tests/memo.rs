//! The session's decision memo: the same decision as `decide` for every input, recomputed whenever one changes.

use super::*;

#[test]
fn the_memo_decides_as_decide_does_and_follows_every_input() {
    let (table, catalog) = (Arc::new(table()), Arc::new(catalog()));
    let users = Arc::new(Analysis::of("select * from users where id = 1"));
    let (config_first, workspace_first) = (parse_search_path("config, workspace"), parse_search_path("workspace, config"));
    let mut memo = DecisionMemo::default();

    let d = memo.decide((1, 0), || (&table, &catalog), &users, &view(&config_first, None)).unwrap();
    assert_eq!(d, decide(&table, &catalog, &users, &view(&config_first, None)).unwrap());
    assert_eq!((d.target, d.reason), (PRIMARY, Reason::Relations));
    // Again: from the memo, the same.
    assert_eq!(memo.decide((1, 0), || (&table, &catalog), &users, &view(&config_first, None)).unwrap(), d);
    // Another search_path resolves `users` elsewhere.
    assert_eq!(memo.decide((1, 1), || (&table, &catalog), &users, &view(&workspace_first, None)).unwrap().target, DATA);
    assert_eq!(memo.decide((1, 2), || (&table, &catalog), &users, &view(&config_first, None)).unwrap().target, PRIMARY);

    // A new catalog snapshot without config.users: the same analysis and path now resolve to workspace.users.
    let mut rows = common_rows();
    rows.extend([("s", "config", "")]);
    let moved = Arc::new(catalog.with_target(PRIMARY, TargetCatalog::from_rows(rows)));
    assert_eq!(memo.decide((2, 2), || (&table, &moved), &users, &view(&config_first, None)).unwrap().target, DATA);

    // A new routing table (a reload) that gives workspace to primary.
    let mut reloaded = super::table();
    reloaded.schemas.insert("workspace".into(), PRIMARY);
    let reloaded = Arc::new(reloaded);
    assert_eq!(memo.decide((3, 2), || (&reloaded, &moved), &users, &view(&config_first, None)).unwrap().target, PRIMARY);
    // Nothing is loaded while the generation stays.
    let unloaded = || -> (&Arc<RoutingTable>, &Arc<Catalog>) { panic!("the memo loaded its inputs") };
    assert_eq!(memo.decide((3, 2), unloaded, &users, &view(&config_first, None)).unwrap().target, PRIMARY);

    // Another analysis, and a session hint for a statement that names no routed schema.
    let plain = Arc::new(Analysis::of("select 1"));
    assert_eq!(memo.decide((4, 2), || (&table, &catalog), &plain, &view(&config_first, None)).unwrap().target, PRIMARY);
    let hinted = memo.decide((4, 2), || (&table, &catalog), &plain, &view(&config_first, Some(DATA))).unwrap();
    assert_eq!((hinted.target, hinted.reason), (DATA, Reason::SessionHint));

    // A refusal is never remembered as a decision.
    let cross = Arc::new(Analysis::of("select * from config.users, workspace.imports"));
    assert!(memo.decide((4, 2), || (&table, &catalog), &cross, &view(&config_first, None)).is_err());
    assert!(memo.decide((4, 2), || (&table, &catalog), &cross, &view(&config_first, None)).is_err());
}

fn view(search_path: &[String], target_hint: Option<TargetId>) -> SessionView<'_> {
    SessionView { search_path, target_hint }
}
