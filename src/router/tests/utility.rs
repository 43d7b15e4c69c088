//! Utility statements: COPY, TRUNCATE, LOCK, VACUUM/ANALYZE, EXPLAIN, PREPARE, DECLARE CURSOR, CALL and the
//! session commands that name no relation.

use super::*;

#[test]
fn copy_routes_by_its_table_or_query() {
    check(&[
        ("copy workspace.imports from stdin", D),
        ("copy workspace.imports (id, name) from stdin with (format csv, header true)", D),
        ("copy config.users to stdout", P),
        ("copy (select * from reference.countries) to stdout", D),
        ("copy (select u.id from config.users u join config.sessions s on s.user_id = u.id) to stdout with (format binary)", P),
        ("copy customer.invoices (id) to stdout", P),
    ]);
}

#[test]
fn truncate_lock_vacuum_and_analyze_route_by_their_tables() {
    check(&[
        ("truncate workspace.a, workspace.b", D),
        ("truncate table only config.sessions restart identity cascade", P),
        ("truncate reference.countries, reference.regions", D),
        ("lock table workspace.imports in access exclusive mode", D),
        ("lock customer.accounts, customer.invoices", P),
        ("lock table config.users in share mode nowait", P),
        ("vacuum workspace.imports", D),
        ("analyze reference.countries", D),
        ("analyze", P),
        ("vacuum", P),
    ]);
}

#[test]
fn explain_prepare_and_cursors_route_by_the_inner_statement() {
    check(&[
        ("explain select * from workspace.imports", D),
        ("explain analyze select * from config.users", P),
        ("explain (analyze, buffers, format json) update customer.accounts set n = 1", P),
        ("explain insert into workspace.exports select * from workspace.imports", D),
        ("prepare q as select * from workspace.imports where id = $1", D),
        ("prepare q (int) as insert into config.sessions (id) values ($1)", P),
        ("declare c cursor for select * from reference.countries", D),
        ("declare c cursor with hold for select * from config.users", P),
        ("declare c scroll cursor for select * from workspace.imports i join workspace.exports e on true", D),
    ]);
}

#[test]
fn session_commands_go_to_the_default_target() {
    check(&[
        ("execute q(1)", P),
        ("deallocate all", P),
        ("deallocate q", P),
        ("fetch 10 from c", P),
        ("close c", P),
        ("listen jobs", P),
        ("notify jobs, 'x'", P),
        ("unlisten *", P),
        ("discard all", P),
        ("reset all", P),
        ("set search_path to workspace, public", P),
        ("set statement_timeout = 0", P),
        ("savepoint a", P),
        ("release savepoint a", P),
        ("rollback to savepoint a", P),
        ("select pg_advisory_lock(1)", P),
        ("select set_config('search_path', 'workspace', false)", P),
    ]);
}
