//! Property: whatever shape a statement takes, routed relations on two targets are refused and relations on one
//! target route there (proptest over relations, spellings and statement shapes).

use proptest::prelude::*;

use super::*;

/// Relations the generator draws from, with the target each resolves to under `PATH` (`None`: unrouted).
const RELATIONS: &[(&str, &str, Option<TargetId>)] = &[
    ("config", "users", Some(PRIMARY)),
    ("config", "sessions", Some(PRIMARY)),
    ("customer", "accounts", Some(PRIMARY)),
    ("customer", "invoices", Some(PRIMARY)),
    ("workspace", "imports", Some(DATA)),
    ("workspace", "exports", Some(DATA)),
    ("reference", "countries", Some(DATA)),
    ("reference", "regions", Some(DATA)),
    ("", "sessions", Some(PRIMARY)),
    ("", "imports", Some(DATA)),
    ("pg_catalog", "pg_class", None),
    ("public", "shared", None),
    ("", "shared", None),
];

/// The session's search_path for every generated statement.
const PATH: &str = "config, workspace, public";

/// Aliases that look like routed schemas, to prove aliases never count as schemas.
const ALIASES: [&str; 4] = ["workspace", "config", "reference", "customer"];

/// One relation as written: plain, upper case (folds to the same name) or quoted.
fn spell(rel: usize, style: u8) -> String {
    let (schema, object) = (RELATIONS[rel].0, RELATIONS[rel].1);
    let word = |w: &str| match style % 3 {
        0 => w.to_owned(),
        1 => w.to_uppercase(),
        _ => format!("\"{w}\""),
    };
    if schema.is_empty() {
        word(object)
    } else {
        format!("{}.{}", word(schema), word(object))
    }
}

/// Builds a statement of `shape` over the spelled relations `r` (at least one).
fn statement(shape: u8, r: &[String], alias_like_schema: bool) -> String {
    let alias = |i: usize| if alias_like_schema { ALIASES[i % 4].to_owned() } else { format!("t{i}") };
    let from_list = |rs: &[String], off: usize| {
        rs.iter().enumerate().map(|(i, x)| format!("{x} {}", alias(i + off))).collect::<Vec<_>>().join(", ")
    };
    let (first, rest) = (&r[0], &r[1..]);
    let rest_or_values = |kw: &str| if rest.is_empty() { String::new() } else { format!(" {kw} {}", from_list(rest, 1)) };
    match shape % 14 {
        0 => {
            let joins: String = rest.iter().enumerate().map(|(i, x)| format!(" join {x} {} on true", alias(i + 1))).collect();
            format!("select * from {first} {}{joins}", alias(0))
        }
        1 => format!("select * from {}", from_list(r, 0)),
        2 => {
            let mut sql = format!("select * from {first} {} where true", alias(0));
            for (i, x) in rest.iter().enumerate() {
                sql.push_str(&format!(" and id in (select id from {x} {} where exists (select 1)", alias(i + 1)));
            }
            sql + &")".repeat(rest.len())
        }
        3 => {
            let subs: String = rest.iter().map(|x| format!("(select count(*) from {x}), ")).collect();
            format!("select {subs}1 from {first}")
        }
        4 => {
            let ctes: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    if i == 0 {
                        format!("c0 as (select * from {x})")
                    } else {
                        format!("c{i} as (select * from {x} join c{} on true)", i - 1)
                    }
                })
                .collect();
            format!("with {} select * from c{}", ctes.join(", "), r.len() - 1)
        }
        5 => r.iter().map(|x| format!("select id from {x}")).collect::<Vec<_>>().join(" union all "),
        6 if rest.is_empty() => format!("insert into {first} (id) values (1) on conflict do nothing"),
        6 => format!("insert into {first} select * from {}", from_list(rest, 1)),
        7 => format!("update {first} set n = 1{} returning *", rest_or_values("from")),
        8 => format!("delete from {first}{}", rest_or_values("using")),
        9 => r.iter().map(|x| format!("select 1 from {x}")).collect::<Vec<_>>().join("; "),
        10 => {
            let lat: String = rest
                .iter()
                .enumerate()
                .map(|(i, x)| format!(" join lateral (select * from {x} {} limit 1) l{i} on true", alias(i + 1)))
                .collect();
            format!("select * from {first} {}{lat}", alias(0))
        }
        11 => {
            let tail: String = rest.iter().enumerate().map(|(i, x)| format!(", {x} {}", alias(i + 1))).collect();
            format!("with d as (delete from {first} returning *) select * from d{tail}")
        }
        12 => format!("copy (select * from {}) to stdout", from_list(r, 0)),
        _ => format!("explain select * from {}", from_list(r, 0)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn never_routes_a_statement_whose_relations_span_two_targets(
        picks in prop::collection::vec((0..RELATIONS.len(), any::<u8>()), 1..=4),
        shape in any::<u8>(),
        alias_like_schema in any::<bool>(),
    ) {
        let spelled: Vec<String> = picks.iter().map(|&(rel, style)| spell(rel, style)).collect();
        let sql = statement(shape, &spelled, alias_like_schema);
        let mut targets: Vec<TargetId> = picks.iter().filter_map(|&(rel, _)| RELATIONS[rel].2).collect();
        targets.sort_unstable();
        targets.dedup();
        let got = route_with(&sql, PATH, &catalog());
        prop_assert!(!Analysis::of(&sql).fallback, "sqlparser rejected the generated {}", sql);
        match targets.as_slice() {
            [] => prop_assert_eq!(got.map(|d| (d.target, d.reason)), Ok((PRIMARY, Reason::Default)), "{}", sql),
            [one] => prop_assert_eq!(got.map(|d| d.target), Ok(*one), "{}", sql),
            _ => prop_assert!(matches!(got, Err(RouteError::CrossTarget { .. })), "{} routed: {:?}", sql, got),
        }
    }
}
