//! DDL: CREATE/ALTER/DROP of tables, views, indexes, sequences, functions, triggers, types and schemas; GRANT, COMMENT.

use super::*;

#[test]
fn create_table_routes_by_its_schema_and_what_it_references() {
    check(&[
        ("create table workspace.t (id int)", D),
        ("create table if not exists config.flags (id int primary key, name text not null)", P),
        ("create table workspace.t (id int references reference.countries (id))", D),
        ("create table workspace.t (id int, constraint fk foreign key (id) references workspace.imports (id))", D),
        ("create table workspace.t (like workspace.imports)", D),
        ("create table workspace.t (id int) inherits (workspace.imports)", D),
        ("create table workspace.imports_2024 partition of workspace.imports for values from (1) to (10)", D),
        ("create table customer.snapshot as select * from customer.accounts", P),
        ("create table workspace.t (id int default nextval('workspace.imports_id_seq'::regclass))", D),
        ("create table workspace.t (m workspace.mood)", D),
        ("create unlogged table config.cache (k text, v text)", P),
        ("create temp table scratch (id int)", P),
    ]);
}

#[test]
fn views_indexes_sequences_and_types_route_by_schema() {
    check(&[
        ("create view workspace.v as select * from workspace.imports", D),
        ("create or replace view config.active as select * from config.users where active", P),
        ("create materialized view reference.mv as select * from reference.countries", D),
        ("create index i on workspace.imports (id)", D),
        ("create unique index concurrently if not exists i on config.users using btree (email)", P),
        ("create index on reference.countries (lower(name))", D),
        ("create sequence workspace.s", D),
        ("create sequence if not exists config.seq start 100", P),
        ("create type workspace.mood as enum ('happy', 'sad')", D),
        ("create domain customer.positive as int check (value > 0)", P),
    ]);
}

#[test]
fn functions_procedures_and_triggers_route_by_schema() {
    check(&[
        ("create function workspace.f(int) returns int language sql as $$ select 1 $$", D),
        ("create or replace function config.touch() returns trigger language plpgsql as $$ begin return new; end $$", P),
        ("create trigger t before insert on workspace.imports for each row execute function workspace.stamp()", D),
        ("create trigger t after update on config.users for each row execute procedure config.audit()", P),
        ("drop trigger t on workspace.imports", D),
        ("drop function workspace.clean(int)", D),
        ("drop function if exists config.audit", P),
        ("alter function workspace.clean(int) owner to app", D),
        ("call config.rotate_keys()", P),
        ("call workspace.reindex_all(1)", D),
    ]);
}

#[test]
fn alter_and_drop_route_by_every_object_named() {
    check(&[
        ("alter table workspace.imports add column b int", D),
        ("alter table workspace.imports rename to imports_old", D),
        ("alter table config.users rename column a to b", P),
        ("alter table workspace.exports add constraint fk foreign key (import_id) references workspace.imports (id)", D),
        ("alter table workspace.exports add column country int references reference.countries (id)", D),
        ("alter table workspace.imports alter column id set default nextval('workspace.imports_id_seq')", D),
        ("alter table if exists customer.accounts drop column legacy", P),
        ("alter index workspace.imports_pkey rename to imports_pk", D),
        ("drop table workspace.a, workspace.b", D),
        ("drop table if exists config.old cascade", P),
        ("drop view workspace.v", D),
        ("drop materialized view reference.mv", D),
        ("drop index workspace.i", D),
        ("drop sequence customer.s", P),
        ("drop type workspace.mood", D),
    ]);
}

#[test]
fn schemas_themselves_route_to_their_target() {
    check(&[
        ("create schema workspace", D),
        ("create schema if not exists customer", P),
        ("create schema reference authorization app", D),
        ("drop schema workspace cascade", D),
        ("alter schema config owner to app", P),
        ("alter schema reference rename to ref", D),
        ("create extension if not exists pgcrypto with schema workspace", D),
        ("create schema other", P),
    ]);
}

#[test]
fn grant_and_comment_route_by_the_objects_they_name() {
    check(&[
        ("grant select on all tables in schema workspace to app", D),
        ("grant usage on schema customer to app", P),
        ("grant select on workspace.imports to app", D),
        ("grant select, insert on table config.users, config.sessions to app", P),
        ("grant execute on function workspace.clean(int) to app", D),
        ("grant usage on sequence reference.s to app", D),
        ("revoke select on all tables in schema reference from app", D),
        ("revoke all on customer.accounts from app", P),
        ("grant select on all sequences in schema config to app", P),
        ("comment on table customer.accounts is 'x'", P),
        ("comment on column workspace.imports.id is 'x'", D),
        ("comment on schema reference is 'x'", D),
        ("comment on view workspace.v is 'x'", D),
        ("comment on index config.users_pkey is 'x'", P),
    ]);
}
