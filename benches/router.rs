//! Router decision time (SPEC §3.7): a cached text (RouteCache hit + decide) and a first-seen text (Analysis::of +
//! decide) over a realistic mix of ORM and application statements; `mix` times the whole mix (six statements).

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use pgsplit::catalog::TargetCatalog;
use pgsplit::router::{decide, parse_search_path, Analysis, Catalog, RouteCache, RoutingTable, SessionView};

/// The mix: what an application behind pgsplit sends most.
const MIX: &[(&str, &str)] = &[
    ("orm_select_by_id", "SELECT id, email, name FROM config.users WHERE id = $1"),
    (
        "prisma_select",
        "SELECT \"workspace\".\"imports\".\"id\", \"workspace\".\"imports\".\"name\", \"workspace\".\"imports\".\"status\" \
         FROM \"workspace\".\"imports\" WHERE (\"workspace\".\"imports\".\"id\" = $1 AND 1=1) LIMIT $2 OFFSET $3",
    ),
    (
        "insert_on_conflict",
        "INSERT INTO workspace.imports (id, name, status) VALUES ($1, $2, $3) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, status = excluded.status RETURNING id",
    ),
    (
        "join_with_cte",
        "WITH recent AS (SELECT * FROM workspace.imports WHERE created_at > now() - interval '1 day') \
         SELECT r.id, e.id, c.name FROM recent r JOIN workspace.exports e ON e.import_id = r.id \
         JOIN reference.countries c ON c.id = r.country_id WHERE r.status = $1",
    ),
    ("set_config", "SELECT set_config('search_path', 'workspace, public', false)"),
    ("begin", "BEGIN"),
];

fn table() -> RoutingTable {
    let schemas: HashMap<String, usize> = [("config", 0), ("customer", 0), ("workspace", 1), ("reference", 1)]
        .into_iter()
        .map(|(s, t)| (s.to_owned(), t))
        .collect();
    RoutingTable { targets: vec!["primary".into(), "data".into()], schemas, default_target: 0 }
}

fn catalog() -> Catalog {
    let common = [("s", "public", ""), ("s", "pg_catalog", ""), ("f", "pg_catalog", "now"), ("f", "pg_catalog", "set_config")];
    let mut primary = common.to_vec();
    primary.extend([("s", "config", ""), ("r", "config", "users"), ("r", "config", "sessions")]);
    let mut data = common.to_vec();
    data.extend([
        ("s", "workspace", ""),
        ("r", "workspace", "imports"),
        ("r", "workspace", "exports"),
        ("r", "reference", "countries"),
    ]);
    Catalog::unknown(2).with_target(0, TargetCatalog::from_rows(primary)).with_target(1, TargetCatalog::from_rows(data))
}

fn bench(c: &mut Criterion) {
    let (table, catalog) = (table(), catalog());
    let path = parse_search_path("\"$user\", public");
    let view = SessionView { search_path: &path, target_hint: None };
    let cache = RouteCache::new(64 << 20);
    for (_, sql) in MIX {
        cache.analysis(sql);
    }
    let mut cached = c.benchmark_group("cached");
    for (name, sql) in MIX {
        cached.bench_function(*name, |b| {
            b.iter(|| {
                let a = cache.analysis(black_box(sql));
                black_box(decide(&table, &catalog, &a, &view).ok())
            })
        });
    }
    cached.bench_function("mix", |b| {
        b.iter(|| {
            for (_, sql) in MIX {
                let a = cache.analysis(black_box(sql));
                black_box(decide(&table, &catalog, &a, &view).ok());
            }
        })
    });
    cached.finish();
    let mut parsed = c.benchmark_group("parsed");
    for (name, sql) in MIX {
        parsed.bench_function(*name, |b| {
            b.iter(|| {
                let a = Analysis::of(black_box(sql));
                black_box(decide(&table, &catalog, &a, &view).ok())
            })
        });
    }
    parsed.bench_function("mix", |b| {
        b.iter(|| {
            for (_, sql) in MIX {
                let a = Analysis::of(black_box(sql));
                black_box(decide(&table, &catalog, &a, &view).ok());
            }
        })
    });
    parsed.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
