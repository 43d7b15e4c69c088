//! Statements whose routed names span both targets are refused, naming the relations and their targets.

use super::*;

#[test]
fn refuses_cross_target_join_naming_relations_and_targets() {
    let err = route("select * from config.users u join workspace.imports i on i.user_id = u.id").map(|d| d.target);
    let want = RouteError::CrossTarget {
        relations: vec![("config.users".into(), "primary".into()), ("workspace.imports".into(), "data".into())],
    };
    assert_eq!(err, Err(want.clone()));
    assert!(want.to_string().contains("config.users on primary, workspace.imports on data"), "{want}");
}

#[test]
fn refusals_name_unqualified_relations_with_the_schema_they_resolved_to() {
    let r = route_with("select * from users u join imports i on true", "config, workspace", &catalog());
    assert_eq!(
        r,
        Err(RouteError::CrossTarget {
            relations: vec![("config.users".into(), "primary".into()), ("workspace.imports".into(), "data".into())]
        })
    );
    let r = route("create trigger t after insert on config.users for each row execute function workspace.stamp()");
    assert_eq!(
        r,
        Err(RouteError::CrossTarget {
            relations: vec![("config.users".into(), "primary".into()), ("workspace.stamp".into(), "data".into())]
        })
    );
}

#[test]
fn refuses_every_shape_that_spans_both_targets() {
    check(&[
        ("select * from config.users, workspace.imports", Refused),
        ("select (select count(*) from workspace.imports) from config.users", Refused),
        ("select * from config.users where id in (select user_id from workspace.imports)", Refused),
        ("select * from config.users u, lateral (select * from reference.countries c where c.id = u.country) l", Refused),
        ("select id from customer.accounts union select id from reference.countries", Refused),
        ("with x as (select * from workspace.imports) select * from x, config.users", Refused),
        ("with x as (select * from config.users) select * from workspace.x", Refused),
        ("with d as (delete from workspace.imports returning *) insert into config.users select * from d", Refused),
        ("insert into config.users select * from workspace.users", Refused),
        ("update config.users set n = 1 from workspace.imports i where i.id = users.id", Refused),
        ("delete from customer.accounts using reference.countries c where c.id = accounts.country", Refused),
        ("merge into config.users u using workspace.users w on u.id = w.id when matched then delete", Refused),
        ("select workspace.clean(id) from config.users", Refused),
        ("select nextval('workspace.imports_id_seq') from config.users", Refused),
        ("select 'reference.countries'::regclass, 'config.users'::regclass", Refused),
        ("copy (select * from config.users join workspace.imports on true) to stdout", Refused),
        ("create table workspace.t (id int references config.users (id))", Refused),
        ("create table config.t as select * from workspace.imports", Refused),
        ("create view config.v as select * from reference.countries", Refused),
        ("create index i on workspace.imports (config.audit(id))", Refused),
        ("truncate config.sessions, workspace.imports", Refused),
        ("lock config.users, workspace.imports", Refused),
        ("drop table config.a, workspace.b", Refused),
        ("grant select on config.users, workspace.imports to app", Refused),
        ("explain select * from config.users, workspace.imports", Refused),
        ("prepare q as select * from config.users join reference.regions on true", Refused),
        ("select * from config.users where x::workspace.mood is not null", Refused),
    ]);
}

#[test]
fn refuses_multi_statement_texts_that_disagree() {
    check(&[
        ("select 1 from config.a; select 1 from workspace.b", Refused),
        ("begin; insert into workspace.a values (1); insert into customer.b values (1); commit", Refused),
        ("begin; insert into workspace.a values (1); commit", D),
        ("set search_path to public; select * from customer.accounts", P),
        ("select 1; select * from reference.countries", D),
    ]);
}
