//! INSERT, UPDATE, DELETE and MERGE with their FROM/USING, RETURNING and ON CONFLICT; sequence functions.

use super::*;

#[test]
fn inserts_route_by_target_and_source() {
    check(&[
        ("insert into workspace.imports (id) values (1)", D),
        ("insert into workspace.imports (id) values (1) on conflict do nothing returning id", D),
        ("insert into config.users (id, email) values ($1, $2) on conflict (id) do update set email = excluded.email", P),
        ("insert into customer.accounts select * from customer.invoices", P),
        ("insert into workspace.exports (id) select id from workspace.imports where done", D),
        ("insert into workspace.imports default values returning *", D),
        ("insert into config.sessions (id, token) values (1, 'x'), (2, 'y')", P),
        ("insert into reference.countries as c (id) values (1) on conflict (id) do update set name = c.name where c.id > 0", D),
        ("insert into config.users (id) values ((select max(id) + 1 from config.users))", P),
        ("insert into workspace.imports (id) values (nextval('workspace.imports_id_seq'))", D),
        ("insert into config.sessions (id) values (1) returning (select count(*) from config.users)", P),
    ]);
}

#[test]
fn updates_and_deletes_route_by_target_from_and_using() {
    check(&[
        ("update customer.accounts set name = 'x' where id = 1", P),
        ("update workspace.imports set done = true from workspace.exports e where e.import_id = imports.id", D),
        ("update workspace.imports i set n = r.n from reference.regions r where r.id = i.region returning i.*", D),
        ("update config.users set last_seen = now() where id in (select user_id from config.sessions)", P),
        ("delete from workspace.imports using reference.countries c where c.id = imports.country", D),
        ("delete from config.sessions where expires < now() returning id", P),
        ("delete from customer.invoices where account_id not in (select id from customer.accounts)", P),
        ("update workspace.exports set n = (select count(*) from workspace.imports)", D),
    ]);
}

#[test]
fn merge_routes_by_target_and_source() {
    check(&[
        (
            "merge into workspace.imports t using workspace.exports s on t.id = s.id \
             when matched then update set n = s.n when not matched then insert (id) values (s.id)",
            D,
        ),
        ("merge into config.users u using (select * from config.sessions) s on u.id = s.user_id when matched then delete", P),
    ]);
}

#[test]
fn sequence_functions_and_regclass_strings_name_relations() {
    check(&[
        ("select nextval('workspace.imports_id_seq')", D),
        ("select currval('config.users_id_seq'::regclass)", P),
        ("select setval('workspace.imports_id_seq', 1, false)", D),
        ("select pg_catalog.nextval('config.users_id_seq')", P),
        ("select 'config.users'::regclass", P),
        ("select cast('reference.countries' as regclass)", D),
        ("select 'workspace.clean'::regproc", D),
        ("select pg_relation_size('workspace.imports')", D),
        ("select to_regclass('customer.accounts')", P),
        ("select * from pg_catalog.pg_attribute where attrelid = 'workspace.imports'::regclass", D),
    ]);
}

#[test]
fn schema_qualified_function_calls_route_by_schema() {
    check(&[
        ("select workspace.clean(1)", D),
        ("select config.audit('login', $1)", P),
        ("select * from workspace.stamp(1)", D),
        ("select * from reference.lookup('x') as r(id int)", D),
        ("select * from workspace.imports i join lateral workspace.stamp(i.id) s on true", D),
        ("select id, customer.balance(id) from customer.accounts", P),
        ("select * from config.users where config.audit(id) > 0", P),
        ("select * from generate_series(1, 3) g, workspace.imports", D),
    ]);
}
