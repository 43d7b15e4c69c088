//! Unqualified names under various search paths, CREATE without a schema, and a catalog that is not loaded.

use super::*;

#[test]
fn unqualified_names_resolve_through_the_path_in_order() {
    let c = catalog();
    check_all(
        &[
            ("select * from imports", D),
            ("select * from users", P),
            ("select * from sessions s join users u on u.id = s.user_id", P),
            ("insert into imports (id) values (1)", D),
            ("select * from users u join imports i on i.user_id = u.id", Refused),
            ("select nextval('imports_id_seq')", D),
            ("select 'users'::regclass", P),
            ("select clean(1)", D),
            ("select audit('x')", P),
            ("select * from clean()", D),
            ("select now(), count(*) from pg_class", P),
            ("select * from nothing_like_this", P),
        ],
        "config, workspace, public",
        &c,
    );
    check_all(&[("select * from users", D), ("select * from users, sessions", Refused)], "workspace, config", &c);
    check_all(&[("select * from users", P), ("select * from imports", P)], "public, customer", &c);
    check_all(&[("select * from countries c join regions r on true", D)], "\"$user\", reference", &c);
}

#[test]
fn unrouted_schemas_and_pg_catalog_shadow_routed_ones() {
    let c = catalog();
    check_all(&[("select * from shared", P), ("select * from \"User\"", P)], "public, workspace", &c);
    check_all(&[("select * from pg_class", P), ("select * from pg_tables", P)], "workspace, pg_catalog", &c);
    check_all(&[("select * from tables", P)], "information_schema, workspace", &c);
}

#[test]
fn ctes_shadow_tables_of_the_same_name_only_in_their_query() {
    let c = catalog();
    check_all(
        &[
            ("with imports as (select 1 as id) select * from imports", P),
            ("with x as (select * from imports) select * from x", D),
            ("select * from (with imports as (select 1) select * from imports) a, (select * from imports) b", D),
            // A non-recursive CTE's body sees the table, not itself.
            ("with imports as (select * from imports) select * from imports", D),
            ("with recursive imports as (select 1 union all select * from imports) select * from imports", P),
        ],
        "workspace",
        &c,
    );
}

#[test]
fn create_without_schema_goes_to_the_first_existing_schema_of_the_path() {
    let c = catalog();
    check_all(
        &[
            ("create table t (id int)", D),
            ("create view v as select * from imports", D),
            ("create sequence s", D),
            ("create function f() returns int language sql as $$ select 1 $$", D),
            ("create table t as select * from imports", D),
            ("create table t (id int references countries (id))", D),
        ],
        "\"$user\", workspace, reference",
        &c,
    );
    check_all(&[("create table t (id int)", P), ("create index on users (id)", P)], "missing, customer, config", &c);
    check_all(&[("create table t (id int)", P)], "public, workspace", &c);
    // The view is created in config (primary), the table it reads lives in reference (data).
    check_all(&[("create view v as select * from countries", Refused)], "config, reference", &c);
}

#[test]
fn a_target_whose_catalog_is_not_loaded_makes_unqualified_names_unresolvable() {
    let only_primary = Catalog::unknown(2).with_target(PRIMARY, catalog().target(PRIMARY).cloned().unwrap_or_default());
    let r = route_with("select * from imports", "config, workspace", &only_primary);
    assert!(matches!(r, Err(RouteError::CatalogUnavailable { ref target, .. }) if target == "data"), "{r:?}");
    // Found on primary before the path reaches workspace: no need to know data's catalog.
    assert_eq!(route_with("select * from users", "config, workspace", &only_primary).map(|d| d.target), Ok(PRIMARY));
    // Qualified names never need the catalog.
    assert_eq!(route_with("select * from workspace.imports", "config", &only_primary).map(|d| d.target), Ok(DATA));
}
