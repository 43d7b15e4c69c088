//! What pg_dump, psql's `\d` commands and ORMs' introspection send: catalog reads route to the default target,
//! never refused, and the data statements among them route by their tables.

use super::*;

/// psql 15's `\dt`.
const PSQL_DT: &str = r#"SELECT n.nspname as "Schema",
  c.relname as "Name",
  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 't' THEN 'TOAST table' WHEN 'f' THEN 'foreign table' WHEN 'p' THEN 'partitioned table' WHEN 'I' THEN 'partitioned index' END as "Type",
  pg_catalog.pg_get_userbyid(c.relowner) as "Owner"
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam
WHERE c.relkind IN ('r','p','')
      AND n.nspname <> 'pg_catalog'
      AND n.nspname !~ '^pg_toast'
      AND n.nspname <> 'information_schema'
  AND pg_catalog.pg_table_is_visible(c.oid)
ORDER BY 1,2;"#;

/// psql's `\d workspace.imports`, first query (OPERATOR(pg_catalog.~) is beyond sqlparser: the fallback reads it).
const PSQL_D_LOOKUP: &str = r#"SELECT c.oid,
  n.nspname,
  c.relname
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname OPERATOR(pg_catalog.~) '^(imports)$' COLLATE pg_catalog.default
  AND n.nspname OPERATOR(pg_catalog.~) '^(workspace)$' COLLATE pg_catalog.default
ORDER BY 2, 3;"#;

/// psql's `\d` column list.
const PSQL_D_COLUMNS: &str = r#"SELECT a.attname,
  pg_catalog.format_type(a.atttypid, a.atttypmod),
  (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true)
   FROM pg_catalog.pg_attrdef d
   WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef),
  a.attnotnull,
  (SELECT c.collname FROM pg_catalog.pg_collation c, pg_catalog.pg_type t
   WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND a.attcollation <> t.typcollation) AS attcollation,
  a.attidentity,
  a.attgenerated
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = '16386' AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum;"#;

/// psql's `\dn`.
const PSQL_DN: &str = r#"SELECT n.nspname AS "Name",
  pg_catalog.pg_get_userbyid(n.nspowner) AS "Owner"
FROM pg_catalog.pg_namespace n
WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
ORDER BY 1;"#;

/// psql's `\df`.
const PSQL_DF: &str = r#"SELECT n.nspname as "Schema",
  p.proname as "Name",
  pg_catalog.pg_get_function_result(p.oid) as "Result data type",
  pg_catalog.pg_get_function_arguments(p.oid) as "Argument data types",
 CASE p.prokind
  WHEN 'a' THEN 'agg'
  WHEN 'w' THEN 'window'
  WHEN 'p' THEN 'proc'
  ELSE 'func'
 END as "Type"
FROM pg_catalog.pg_proc p
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE pg_catalog.pg_function_is_visible(p.oid)
      AND n.nspname <> 'pg_catalog'
      AND n.nspname <> 'information_schema'
ORDER BY 1, 2, 4;"#;

/// psql's `\l`.
const PSQL_L: &str = r#"SELECT d.datname as "Name",
       pg_catalog.pg_get_userbyid(d.datdba) as "Owner",
       pg_catalog.pg_encoding_to_char(d.encoding) as "Encoding",
       pg_catalog.array_to_string(d.datacl, E'\n') AS "Access privileges"
FROM pg_catalog.pg_database d
ORDER BY 1;"#;

/// psql's tab completion of table names.
const PSQL_COMPLETION: &str = "SELECT pg_catalog.quote_ident(c.relname) FROM pg_catalog.pg_class c WHERE c.relkind IN ('r', 'S', 'v', 'm', 'f', 'p') AND substring(pg_catalog.quote_ident(c.relname),1,2)='wo' AND pg_catalog.pg_table_is_visible(c.oid) AND c.relnamespace <> (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'pg_catalog') LIMIT 1000";

/// pg_dump's table list.
const PG_DUMP_TABLES: &str = "SELECT c.tableoid, c.oid, c.relname, c.relacl, c.relkind, c.relnamespace, c.relowner, c.relchecks, c.relhastriggers, c.relpersistence, c.reloptions AS reloptions FROM pg_class c LEFT JOIN pg_depend d ON (c.relkind = 'S' AND d.classid = c.tableoid AND d.objid = c.oid AND d.objsubid = 0 AND d.refclassid = c.tableoid AND d.deptype IN ('a', 'i')) WHERE c.relkind IN ('r', 'S', 'v', 'c', 'm', 'f', 'p') ORDER BY c.oid";

#[test]
fn psql_describe_queries_go_to_the_default_target() {
    check(&[
        (PSQL_DT, P),
        (PSQL_D_LOOKUP, P),
        (PSQL_D_COLUMNS, P),
        (PSQL_DN, P),
        (PSQL_DF, P),
        (PSQL_L, P),
        (PSQL_COMPLETION, P),
        ("SELECT pg_catalog.obj_description(c.oid, 'pg_class') FROM pg_catalog.pg_class c WHERE c.oid = '16386'", P),
        ("SELECT pg_catalog.pg_get_indexdef(i.indexrelid, 0, true) FROM pg_catalog.pg_index i WHERE i.indrelid = '16386'", P),
    ]);
}

#[test]
fn pg_dump_catalog_queries_go_to_the_default_target() {
    check(&[
        ("SELECT pg_catalog.set_config('search_path', '', false);", P),
        ("SET statement_timeout = 0", P),
        ("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", P),
        ("SELECT oid, nspname, nspowner, nspacl FROM pg_namespace", P),
        (PG_DUMP_TABLES, P),
        ("SELECT pg_catalog.pg_get_viewdef('16400'::pg_catalog.oid) AS viewdef", P),
        ("SELECT extname, extversion FROM pg_extension", P),
        ("SELECT current_schema(), version(), current_setting('server_version_num')", P),
    ]);
}

#[test]
fn pg_dump_data_statements_route_by_their_tables() {
    check(&[
        ("LOCK TABLE workspace.imports IN ACCESS SHARE MODE", D),
        ("COPY workspace.imports (id, name) TO stdout;", D),
        ("SELECT last_value, is_called FROM workspace.imports_id_seq", D),
        ("COPY config.users (id, email) TO stdout;", P),
    ]);
}

#[test]
fn orm_introspection_goes_to_the_default_target() {
    check(&[
        ("SELECT table_name FROM information_schema.tables WHERE table_schema = 'workspace'", P),
        ("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2", P),
        ("SELECT EXISTS(SELECT 1 FROM pg_namespace WHERE nspname = $1)", P),
        ("SELECT schemaname, tablename FROM pg_tables WHERE schemaname = ANY($1)", P),
    ]);
}
