//! Name resolution (SPEC §3.2): a schema-qualified name routes by its schema; an unqualified one is looked up
//! through the session's search_path in the catalog snapshot, as PostgreSQL would find it.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

use super::{Catalog, Name, ObjectKind, RoutingTable, TargetId};

/// Where a name lives, as far as routing is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved<'a> {
    /// In a routed schema owned by `target`.
    Target {
        /// The owning target.
        target: TargetId,
        /// The schema the name was found in (or will be created in).
        schema: &'a str,
    },
    /// In an unrouted schema (pg_catalog, public, ...), or nowhere: it does not constrain the route.
    Unrouted,
    /// search_path reaches a routed schema whose target's catalog has not been read: pgsplit cannot tell.
    Unknown {
        /// The target whose catalog is missing.
        target: TargetId,
        /// The routed schema on the path.
        schema: &'a str,
    },
}

/// Resolves one name for a session with `search_path`.
pub fn resolve<'a>(table: &RoutingTable, catalog: &Catalog, name: &'a Name, search_path: &'a [String]) -> Resolved<'a> {
    if let Some(schema) = &name.schema {
        return match table.schemas.get(schema) {
            Some(&target) => Resolved::Target { target, schema },
            None => Resolved::Unrouted,
        };
    }
    if name.kind == ObjectKind::Schema {
        return Resolved::Unrouted;
    }
    if name.created {
        return creation_schema(table, catalog, search_path);
    }
    // pg_catalog is searched first unless the path places it explicitly.
    let implicit = (!search_path.iter().any(|s| s == "pg_catalog")).then_some("pg_catalog");
    for schema in implicit.into_iter().chain(search_path.iter().map(String::as_str)) {
        if skipped(schema) {
            continue;
        }
        match table.schemas.get(schema) {
            Some(&target) => match catalog.target(target) {
                None => return Resolved::Unknown { target, schema },
                Some(c) if c.has(schema, &name.object, name.kind) => return Resolved::Target { target, schema },
                Some(_) => {}
            },
            None if catalog.any_has(schema, &name.object, name.kind) => return Resolved::Unrouted,
            None => {}
        }
    }
    Resolved::Unrouted
}

/// Where `CREATE ... name` puts an unqualified object: the first schema of search_path that exists.
fn creation_schema<'a>(table: &RoutingTable, catalog: &Catalog, search_path: &'a [String]) -> Resolved<'a> {
    for schema in search_path.iter().map(String::as_str) {
        if skipped(schema) || schema == "pg_catalog" {
            continue;
        }
        match table.schemas.get(schema) {
            Some(&target) if catalog.target(target).is_none_or(|c| c.has_schema(schema)) => {
                return Resolved::Target { target, schema };
            }
            Some(_) => {}
            None if catalog.any_has_schema(schema) => return Resolved::Unrouted,
            None => {}
        }
    }
    Resolved::Unrouted
}

/// Path entries that never hold a routed name: `$user` (the server-side role pgsplit logs in as differs per target,
/// and such schemas are not routed) and the session's temporary schema.
fn skipped(schema: &str) -> bool {
    schema == "$user" || schema == "pg_temp"
}

/// Parses a search_path in PostgreSQL's list syntax, as a startup parameter, `set_config` or `SHOW` give it:
/// `a, "My Schema", public` → `["a", "My Schema", "public"]` (unquoted names fold to lower case).
pub fn parse_search_path(list: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = list.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut item = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        item.push('"');
                    } else {
                        break;
                    }
                } else {
                    item.push(c);
                }
            }
            while chars.peek().is_some_and(|&c| c != ',') {
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                item.push(c);
                chars.next();
            }
            item = item.trim().to_ascii_lowercase();
        }
        if !item.is_empty() {
            out.push(item);
        }
        if chars.next().is_none() {
            return out;
        }
    }
}

/// The schemas of a `SET search_path TO ...` value as SQL text: identifiers fold as PostgreSQL folds them, string
/// literals are taken as written (`SET search_path = 'a'` names schema `a`; `DEFAULT` gives the server default).
pub fn search_path_of_set_value(sql: &str) -> Vec<String> {
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else { return Vec::new() };
    tokens
        .into_iter()
        .filter_map(|t| match t {
            Token::Word(w) if w.quote_style.is_some() => Some(w.value),
            Token::Word(w) => Some(w.value.to_ascii_lowercase()),
            Token::SingleQuotedString(s) | Token::EscapedStringLiteral(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// A search_path as SQL text for `SET search_path TO ...`: every schema as a string literal (PostgreSQL quotes each
/// as an identifier itself), `''` for an empty path.
pub fn search_path_sql(schemas: &[String]) -> String {
    if schemas.is_empty() {
        return "''".into();
    }
    schemas.iter().map(|s| crate::quote::literal(s)).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::TargetCatalog;
    use std::collections::HashMap;

    #[test]
    fn a_search_path_written_for_replay_reads_back_the_same_schemas() {
        for schemas in [vec!["café".to_owned(), "a'b\\c".to_owned()], vec!["Таблица".to_owned(), "🎉".to_owned()]] {
            assert_eq!(search_path_of_set_value(&search_path_sql(&schemas)), schemas);
        }
    }

    fn table() -> RoutingTable {
        let schemas: HashMap<String, TargetId> = [("config", 0), ("customer", 0), ("workspace", 1), ("reference", 1)]
            .into_iter()
            .map(|(s, t)| (s.into(), t))
            .collect();
        RoutingTable { targets: vec!["primary".into(), "data".into()], schemas, default_target: 0 }
    }

    fn catalog() -> Catalog {
        let primary = TargetCatalog::from_rows([
            ("s", "public", ""),
            ("s", "config", ""),
            ("r", "config", "users"),
            ("r", "public", "shared"),
            ("r", "pg_catalog", "pg_class"),
            ("f", "pg_catalog", "now"),
        ]);
        let data = TargetCatalog::from_rows([
            ("s", "public", ""),
            ("s", "workspace", ""),
            ("r", "workspace", "imports"),
            ("r", "workspace", "users"),
            ("f", "workspace", "clean"),
            ("r", "public", "pgbench_accounts"),
        ]);
        Catalog::unknown(2).with_target(0, primary).with_target(1, data)
    }

    fn path(p: &str) -> Vec<String> {
        parse_search_path(p)
    }

    fn rel(object: &str) -> Name {
        Name::new(None, object, ObjectKind::Relation)
    }

    #[test]
    fn unqualified_names_resolve_through_the_path_in_order() {
        let (t, c) = (table(), catalog());
        let p = path("config, workspace");
        assert_eq!(resolve(&t, &c, &rel("users"), &p), Resolved::Target { target: 0, schema: "config" });
        assert_eq!(resolve(&t, &c, &rel("imports"), &p), Resolved::Target { target: 1, schema: "workspace" });
        let p = path("workspace, config");
        assert_eq!(resolve(&t, &c, &rel("users"), &p), Resolved::Target { target: 1, schema: "workspace" });
    }

    #[test]
    fn unrouted_schemas_earlier_in_the_path_shadow_routed_ones() {
        let (t, c) = (table(), catalog());
        let p = path("public, workspace");
        assert_eq!(resolve(&t, &c, &rel("pgbench_accounts"), &p), Resolved::Unrouted);
        assert_eq!(resolve(&t, &c, &rel("imports"), &p), Resolved::Target { target: 1, schema: "workspace" });
        // pg_catalog comes first even when not written.
        assert_eq!(resolve(&t, &c, &rel("pg_class"), &path("config")), Resolved::Unrouted);
        let now = Name::new(None, "now", ObjectKind::Function);
        assert_eq!(resolve(&t, &c, &now, &path("workspace")), Resolved::Unrouted);
        let clean = Name::new(None, "clean", ObjectKind::Function);
        assert_eq!(resolve(&t, &c, &clean, &path("workspace")), Resolved::Target { target: 1, schema: "workspace" });
    }

    #[test]
    fn missing_names_do_not_constrain_and_created_ones_go_to_the_first_existing_schema() {
        let (t, c) = (table(), catalog());
        assert_eq!(resolve(&t, &c, &rel("nothing"), &path("workspace")), Resolved::Unrouted);
        let mut created = rel("fresh");
        created.created = true;
        assert_eq!(resolve(&t, &c, &created, &path("\"$user\", workspace")), Resolved::Target { target: 1, schema: "workspace" });
        assert_eq!(resolve(&t, &c, &created, &path("missing, public, workspace")), Resolved::Unrouted);
    }

    #[test]
    fn a_routed_schema_whose_catalog_is_unread_is_unknown() {
        let t = table();
        let c = Catalog::unknown(2);
        assert_eq!(resolve(&t, &c, &rel("imports"), &path("workspace")), Resolved::Unknown { target: 1, schema: "workspace" });
        assert_eq!(resolve(&t, &c, &rel("imports"), &path("\"$user\", public")), Resolved::Unrouted);
    }

    #[test]
    fn search_path_syntaxes_parse_like_postgres() {
        assert_eq!(parse_search_path("\"$user\", public"), ["$user", "public"]);
        assert_eq!(parse_search_path("Workspace,\"My \"\"S\"\"\" , x"), ["workspace", "My \"S\"", "x"]);
        assert_eq!(parse_search_path(""), Vec::<String>::new());
        assert_eq!(search_path_of_set_value("Workspace, \"Ref\", 'lit'"), ["workspace", "Ref", "lit"]);
        assert_eq!(search_path_sql(&["a".into(), "B\"c".into(), "it's".into()]), "'a', 'B\"c', 'it''s'");
        assert_eq!(search_path_sql(&[]), "''");
    }
}
