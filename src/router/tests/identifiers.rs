//! Identifier rules as PostgreSQL's: case folding, quoting, aliases and column qualifiers that look like schemas,
//! string literals and comments, Prisma-style fully quoted SQL.

use super::*;

#[test]
fn unquoted_names_fold_and_quoted_names_keep_their_case() {
    check(&[
        ("SELECT * FROM WORKSPACE.IMPORTS", D),
        ("select * from Config.Users", P),
        ("select * from \"workspace\".\"imports\"", D),
        ("select * from \"workspace\".imports", D),
        ("select * from config.\"Users\"", P),
        // "Workspace" and "CONFIG" are other schemas than workspace and config.
        ("select * from \"Workspace\".t", P),
        ("select * from \"WORKSPACE\".imports", P),
        ("insert into \"Workspace\".t values (1)", P),
        // One quoted identifier holding a dot is one unqualified name.
        ("select * from \"workspace.imports\"", P),
        ("select * from \"workspace\".\"my \"\"odd\"\" table\"", D),
    ]);
}

#[test]
fn aliases_and_column_qualifiers_are_not_schemas() {
    check(&[
        ("select workspace.id from config.users workspace", P),
        ("select reference.* from customer.accounts as reference", P),
        ("select workspace.id, config.id from config.users config join config.sessions workspace on true", P),
        ("select config.users.id from config.users", P),
        ("select u.workspace from config.users u", P),
        ("select workspace from config.users", P),
        ("select i.config from workspace.imports i where i.customer = 1", D),
        ("update config.users workspace set n = 1 where workspace.id = 2", P),
        ("with workspace as (select 1 as id) select workspace.id from workspace", P),
        ("select (u).workspace from config.users u", P),
    ]);
}

#[test]
fn string_literals_and_comments_are_not_relations() {
    check(&[
        ("select 'workspace.t' from config.users", P),
        ("select 1 -- workspace.t\n from config.users", P),
        ("/* workspace.imports */ select * from config.users", P),
        ("select * from config.users /* join workspace.imports */", P),
        ("select $$workspace.imports$$ from customer.accounts", P),
        ("select $tag$ select * from workspace.imports $tag$ from config.users", P),
        ("select E'workspace.imports\\n' from config.users", P),
        ("select * from config.users where note = 'select * from workspace.imports'", P),
        ("insert into config.sessions (note) values ('copy workspace.imports to stdout')", P),
        ("select format('%I.%I', 'workspace', 'imports') from customer.accounts", P),
    ]);
}

#[test]
fn prisma_style_quoted_sql_routes_like_plain_sql() {
    check(&[
        ("SELECT \"public\".\"User\".\"id\" FROM \"public\".\"User\"", P),
        ("SELECT \"public\".\"User\".\"id\", \"public\".\"User\".\"email\" FROM \"public\".\"User\" WHERE (\"public\".\"User\".\"id\" = $1 AND 1=1) LIMIT $2 OFFSET $3", P),
        ("SELECT \"workspace\".\"imports\".\"id\" FROM \"workspace\".\"imports\" WHERE \"workspace\".\"imports\".\"id\" IN ($1,$2,$3)", D),
        ("INSERT INTO \"config\".\"users\" (\"id\",\"email\") VALUES ($1,$2) RETURNING \"config\".\"users\".\"id\"", P),
        ("UPDATE \"reference\".\"countries\" SET \"name\" = $1 WHERE (\"reference\".\"countries\".\"id\" = $2 AND 1=1) RETURNING \"reference\".\"countries\".\"id\"", D),
        ("DELETE FROM \"customer\".\"invoices\" WHERE \"customer\".\"invoices\".\"id\" IN ($1)", P),
        ("SELECT COUNT(*) FROM (SELECT \"workspace\".\"exports\".\"id\" FROM \"workspace\".\"exports\" WHERE 1=1 OFFSET $1) AS \"sub\"", D),
        ("SELECT \"t0\".\"id\", \"t1\".\"name\" FROM \"config\".\"users\" AS \"t0\" LEFT JOIN \"config\".\"sessions\" AS \"t1\" ON (\"t0\".\"id\") = (\"t1\".\"user_id\")", P),
        ("SELECT \"public\".\"_prisma_migrations\".\"id\" FROM \"public\".\"_prisma_migrations\"", P),
    ]);
}
