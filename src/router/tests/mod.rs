//! Router tests by SQL category over one shared fixture: the routing table (primary: config, customer; data:
//! workspace, reference), a catalog snapshot of both targets, and one assert helper over tables of (sql, expected).

mod cacheable;
mod catalog_queries;
mod commands;
mod cross_target;
mod ddl;
mod dml;
mod fallback;
mod hints;
mod identifiers;
mod memo;
mod property;
mod search_path;
mod select;
mod utility;

use super::*;
use crate::catalog::TargetCatalog;

/// Index of the `primary` target in the fixture.
const PRIMARY: TargetId = 0;
/// Index of the `data` target in the fixture.
const DATA: TargetId = 1;

/// The search_path a session has when the client set none (PostgreSQL's default).
const DEFAULT_PATH: &str = "\"$user\", public";

/// What a statement should come to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Routed to the named target.
    To(&'static str),
    /// Refused: routed names on more than one target (0A000).
    Refused,
    /// Refused: an unparsed write naming no routed schema.
    Unparsed,
}

use Want::{Refused, To};

/// Routes to primary.
const P: Want = To("primary");
/// Routes to data.
const D: Want = To("data");

/// primary owns config and customer; data owns workspace and reference; primary is the default.
fn table() -> RoutingTable {
    let schemas: HashMap<String, TargetId> =
        [("config", PRIMARY), ("customer", PRIMARY), ("workspace", DATA), ("reference", DATA)]
            .into_iter()
            .map(|(s, t)| (s.to_owned(), t))
            .collect();
    RoutingTable { targets: vec!["primary".into(), "data".into()], schemas, default_target: PRIMARY }
}

/// The catalog rows both targets share: pg_catalog, information_schema, public.
fn common_rows() -> Vec<(&'static str, &'static str, &'static str)> {
    let mut rows = vec![("s", "public", ""), ("s", "pg_catalog", ""), ("s", "information_schema", "")];
    for rel in [
        "pg_class",
        "pg_namespace",
        "pg_attribute",
        "pg_type",
        "pg_proc",
        "pg_index",
        "pg_constraint",
        "pg_tables",
        "pg_roles",
        "pg_database",
        "pg_settings",
        "pg_depend",
        "pg_description",
        "pg_attrdef",
        "pg_am",
        "pg_collation",
        "pg_extension",
    ] {
        rows.push(("r", "pg_catalog", rel));
    }
    for f in [
        "now",
        "count",
        "max",
        "coalesce",
        "lower",
        "set_config",
        "current_setting",
        "nextval",
        "currval",
        "setval",
        "pg_get_userbyid",
        "format_type",
        "pg_table_is_visible",
        "pg_get_expr",
        "obj_description",
        "quote_ident",
        "version",
        "current_schema",
        "generate_series",
        "to_regclass",
        "pg_relation_size",
        "array_to_string",
        "pg_encoding_to_char",
        "pg_get_indexdef",
        "pg_advisory_lock",
    ] {
        rows.push(("f", "pg_catalog", f));
    }
    rows.extend([("r", "information_schema", "tables"), ("r", "information_schema", "columns")]);
    rows.extend([("r", "public", "_prisma_migrations"), ("r", "public", "shared"), ("r", "public", "User")]);
    rows
}

/// Both targets' snapshots. `users` exists in config and workspace (for search_path order); `imports` only in
/// workspace; `countries` in reference.
fn catalog() -> Catalog {
    let mut primary = common_rows();
    primary.extend([
        ("s", "config", ""),
        ("s", "customer", ""),
        ("r", "config", "users"),
        ("r", "config", "sessions"),
        ("r", "config", "settings"),
        ("r", "config", "users_id_seq"),
        ("r", "customer", "accounts"),
        ("r", "customer", "invoices"),
        ("f", "config", "audit"),
        ("f", "customer", "balance"),
    ]);
    let mut data = common_rows();
    data.extend([
        ("s", "workspace", ""),
        ("s", "reference", ""),
        ("r", "workspace", "imports"),
        ("r", "workspace", "exports"),
        ("r", "workspace", "users"),
        ("r", "workspace", "imports_id_seq"),
        ("r", "workspace", "import_stats"),
        ("r", "reference", "countries"),
        ("r", "reference", "regions"),
        ("f", "workspace", "clean"),
        ("f", "workspace", "stamp"),
        ("f", "reference", "lookup"),
    ]);
    Catalog::unknown(2).with_target(PRIMARY, TargetCatalog::from_rows(primary)).with_target(DATA, TargetCatalog::from_rows(data))
}

/// Routes `sql` for a session with `search_path` against the fixture catalog.
fn route_with(sql: &str, search_path: &str, catalog: &Catalog) -> Result<Decision, RouteError> {
    let path = parse_search_path(search_path);
    let view = SessionView { search_path: &path, target_hint: None };
    decide(&table(), catalog, &Analysis::of(sql), &view)
}

/// Routes `sql` for a session with the default search_path.
fn route(sql: &str) -> Result<Decision, RouteError> {
    route_with(sql, DEFAULT_PATH, &catalog())
}

/// What a decision comes to, in the terms of `Want`.
fn outcome(r: &Result<Decision, RouteError>) -> Result<Want, String> {
    match r {
        Ok(d) => Ok(To(if d.target == PRIMARY { "primary" } else { "data" })),
        Err(RouteError::CrossTarget { .. }) => Ok(Refused),
        Err(RouteError::UnparsedWrite) => Ok(Want::Unparsed),
        Err(e) => Err(e.to_string()),
    }
}

/// Checks every case under `search_path` with `catalog`; reports all failures at once, each with its SQL.
fn check_all(cases: &[(&str, Want)], search_path: &str, catalog: &Catalog) {
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|&(sql, want)| {
            let r = route_with(sql, search_path, catalog);
            match outcome(&r) {
                Ok(got) if got == want => None,
                _ => Some(format!("  {sql}\n    want {want:?}, got {r:?}\n    names {:?}", Analysis::of(sql).names)),
            }
        })
        .collect();
    assert!(failures.is_empty(), "{} of {} statements misrouted:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// Checks every case with the default search_path and the full catalog.
fn check(cases: &[(&str, Want)]) {
    check_all(cases, DEFAULT_PATH, &catalog());
}

#[test]
fn the_fixture_catalog_resolves_its_own_names() {
    let c = catalog();
    assert!(c.is_complete());
    assert!(c.target(DATA).is_some_and(|t| t.has("workspace", "clean", ObjectKind::Function)));
    assert!(!c.target(PRIMARY).is_some_and(|t| t.has("workspace", "imports", ObjectKind::Relation)));
}

#[test]
fn a_failing_case_is_reported_with_its_sql() {
    let caught = std::panic::catch_unwind(|| check(&[("select * from workspace.imports", P)]));
    let msg = caught.err().and_then(|e| e.downcast_ref::<String>().cloned()).unwrap_or_default();
    assert!(msg.contains("select * from workspace.imports"), "{msg}");
}
