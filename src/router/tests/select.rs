//! SELECT in every clause: FROM/JOIN, subqueries in projections, WHERE, HAVING, LATERAL, set operations, CTEs.

use super::*;

#[test]
fn routes_selects_by_the_schema_of_every_relation() {
    check(&[
        ("select * from config.users", P),
        ("SELECT * FROM Workspace.Imports", D),
        ("select id, name from customer.accounts where id = $1", P),
        ("select * from reference.countries c join reference.regions r on r.id = c.region", D),
        ("select * from config.users u left join config.sessions s on s.user_id = u.id", P),
        ("select * from workspace.imports i, workspace.exports e where i.id = e.import_id", D),
        ("select * from customer.accounts a cross join customer.invoices", P),
        ("select * from workspace.imports natural join workspace.exports", D),
        ("select * from config.users u full outer join config.settings s using (id)", P),
        ("select count(*) from reference.countries", D),
        ("select distinct on (region) * from reference.countries order by region, id", D),
        ("select * from workspace.imports for update skip locked", D),
        ("select * from workspace.imports where id = any($1) limit 10 offset 20", D),
    ]);
}

#[test]
fn finds_relations_in_subqueries_of_every_clause() {
    check(&[
        ("select (select count(*) from customer.accounts) as n", P),
        ("select 1 as x, (select max(id) from workspace.imports) + 1", D),
        ("select * from pg_catalog.pg_class where relname in (select name from workspace.files)", D),
        ("select * from config.users where exists (select 1 from config.sessions s where s.user_id = users.id)", P),
        ("select region, count(*) from reference.countries group by region having count(*) > (select 1 from reference.regions limit 1)", D),
        ("select * from (select * from workspace.imports) sub", D),
        ("select * from (select * from (select * from customer.invoices) a) b", P),
        ("select * from config.users u, lateral (select * from config.sessions s where s.user_id = u.id limit 1) l", P),
        ("select * from workspace.imports i join lateral (select * from workspace.exports e where e.import_id = i.id) x on true", D),
        ("select array(select id from workspace.imports)", D),
        ("select case when exists (select 1 from customer.accounts) then 1 else 0 end", P),
        ("select * from (values (1), (2)) v(x) join reference.countries c on c.id = v.x", D),
        ("select * from config.users order by (select 1 from config.settings limit 1)", P),
    ]);
}

#[test]
fn set_operations_route_when_both_sides_agree() {
    check(&[
        ("select * from config.users union all select * from customer.accounts", P),
        ("select id from workspace.imports union select id from workspace.exports", D),
        ("select id from reference.countries intersect select id from reference.regions", D),
        ("select id from config.users except select user_id from config.sessions", P),
        ("(select 1 from workspace.imports) union (select 2) order by 1", D),
        ("select 1 union select 1 from workspace.imports except select 2 from reference.regions", D),
    ]);
}

#[test]
fn cte_names_are_not_relations_but_their_bodies_are() {
    check(&[
        ("with x as (select * from workspace.imports) select * from x", D),
        ("with recursive t(n) as (select 1 union all select n + 1 from t where n < 5) select * from t, workspace.imports", D),
        ("with x as (select 1), y as (select * from x) select * from y, customer.accounts", P),
        ("with a as (select * from config.users) select * from a join (with b as (select 1) select * from b) s on true", P),
        ("with users as (select 1 as id) select * from users", P),
        ("with x as materialized (select * from reference.countries) select * from x", D),
    ]);
}

#[test]
fn data_modifying_ctes_route_by_every_relation() {
    check(&[
        ("with ins as (insert into workspace.imports (id) values (1) returning *) select * from ins", D),
        ("with d as (delete from config.sessions where expires < now() returning *) select count(*) from d", P),
        ("with u as (update workspace.exports set done = true returning id) insert into workspace.import_stats select * from u", D),
        ("with moved as (delete from customer.invoices returning *) insert into customer.accounts select * from moved", P),
    ]);
}

#[test]
fn selects_without_routed_relations_go_to_the_default_target() {
    for sql in [
        "select 1",
        "select now()",
        "select * from pg_catalog.pg_tables",
        "select * from public.t",
        "select * from information_schema.tables",
        "show search_path",
        "values (1), (2)",
        "select coalesce(null, 1), lower('X')",
        "select * from generate_series(1, 3) g",
        "",
    ] {
        let d = route(sql).map(|d| (d.target, d.reason));
        assert_eq!(d, Ok((PRIMARY, Reason::Default)), "{sql}");
    }
}
