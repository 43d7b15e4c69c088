//! Configuration loading tests: the seed, environment expansion, YAML errors and every validation rule, with lines.

use std::path::Path;
use std::time::Duration;

use super::*;

fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
}

const SEED_ENV: &[(&str, &str)] = &[
    ("PRIMARY_DATABASE_URL", "postgresql://handled_user:p%40ss@db.example.com:25060/handled_primary?sslmode=require"),
    ("DATA_DATABASE_URL", "postgresql://handled_user:pw@localhost/handled_data"),
    ("APP_PASSWORD", "s3cret"),
];

fn load(text: &str, env: &[(&'static str, &'static str)]) -> Result<Config, ConfigError> {
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    load_str(text, Path::new("/etc/pgsplit"), &move |k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
}

fn issues(text: &str) -> Vec<Issue> {
    match load(text, SEED_ENV) {
        Err(ConfigError::Invalid { issues, .. }) => issues,
        other => panic!("expected validation issues, got {other:?}"),
    }
}

const SEED: &str = include_str!("../../routing.yaml");

#[test]
fn seed_loads_with_its_environment() {
    let c = load(SEED, SEED_ENV).unwrap();
    assert_eq!(c.listen, "127.0.0.1:6432");
    assert_eq!(c.mode, Mode::Split);
    assert_eq!(c.default_target, "primary");
    let p = c.target("primary").unwrap();
    assert_eq!((p.server.host.as_str(), p.server.port, p.server.dbname.as_str()), ("db.example.com", 25060, "handled_primary"));
    assert_eq!(p.server.password.as_deref(), Some("p@ss"));
    assert_eq!(p.tls.mode, ServerTlsMode::VerifyFull, "explicit tls: wins over the URL's sslmode");
    assert_eq!(p.tls.ca.as_deref(), Some(Path::new("/etc/pgsplit/certs/ca.crt")));
    assert_eq!(
        (p.pool.max, p.pool.checkout_timeout, p.pool.idle_timeout),
        (15, Duration::from_secs(5), Some(Duration::from_secs(600)))
    );
    let d = c.target("data").unwrap();
    assert_eq!((d.pool.max, d.server.port), (100, 5432));
    assert_eq!(c.target_of_schema("reference"), Some("data"));
    assert_eq!(c.route_cache_bytes, 16 << 20);
    assert_eq!(c.users.len(), 2);
    assert_eq!((p.alert_connections, d.alert_connections), (Some(12), Some(50)));
    assert_eq!((c.alert_sustain, c.shutdown_timeout), (Duration::from_secs(15), Duration::from_secs(30)));
}

#[test]
fn alert_and_shutdown_settings_have_defaults_and_are_checked_against_the_pool() {
    let bare = SEED
        .replace("    alert_connections: 12                    # warn (and export) when > 12 server connections stay open (alert_sustain)\n", "")
        .replace("alert_sustain: 15s", "")
        .replace("shutdown_timeout: 30s", "");
    let c = load(&bare, SEED_ENV).unwrap();
    assert_eq!(c.target("primary").unwrap().alert_connections, None);
    assert_eq!((c.alert_sustain, c.shutdown_timeout), (Duration::from_secs(15), Duration::from_secs(30)));
    assert_eq!(c.client_login_timeout, Duration::from_secs(60), "PgBouncer's default");
    let set = load(&format!("{bare}\nclient_login_timeout: 5s\n"), SEED_ENV).unwrap();
    assert_eq!(set.client_login_timeout, Duration::from_secs(5));
    let text = SEED.replace("alert_connections: 12 ", "alert_connections: 15 ");
    let found = issues(&text);
    assert_eq!((found[0].key.as_str(), found[0].line), ("targets.primary.alert_connections", Some(20)));
    assert!(found[0].message.contains("pool max is 15"), "{}", found[0].message);
    let text = SEED.replace("alert_connections: 50", "alert_connections: 0");
    assert_eq!(issues(&text)[0].key, "targets.data.alert_connections");
    let text = SEED.replace("shutdown_timeout: 30s", "shutdown_timeout: soon");
    assert!(load(&text, SEED_ENV).unwrap_err().to_string().contains("invalid duration"));
}

#[test]
fn workers_default_to_the_cores_and_are_checked() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(load(SEED, SEED_ENV).unwrap().workers, cores);
    assert_eq!(load(&format!("{SEED}\nworkers: 1\n"), SEED_ENV).unwrap().workers, 1);
    for bad in ["0", "257"] {
        let found = issues(&format!("{SEED}\nworkers: {bad}\n"));
        assert_eq!(found[0].key, "workers", "workers: {bad}");
    }
}

#[test]
fn missing_environment_variables_are_all_reported_with_lines() {
    let err = load(SEED, &[("APP_PASSWORD", "x")]).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("<config>:16: environment variable PRIMARY_DATABASE_URL is not set"), "{text}");
    assert!(text.contains("<config>:22: environment variable DATA_DATABASE_URL is not set"), "{text}");
}

#[test]
fn expansion_uses_defaults_and_skips_comments() {
    let env = env_of(&[("SET", "v")]);
    let out = load::expand_env("a: ${SET}\nb: ${UNSET:-d}\n# c: ${ALSO_UNSET}\nd: x # ${NOPE}\n", &env).unwrap();
    assert_eq!(out, "a: v\nb: d\n# c: ${ALSO_UNSET}\nd: x # ${NOPE}\n");
    let err = load::expand_env("a: 1\nb: ${OPEN\n", &env).unwrap_err();
    assert_eq!(err[0].line, Some(2));
}

#[test]
fn yaml_syntax_errors_carry_line_and_column() {
    let err = load("listen: 127.0.0.1:6432\ntargets:\n  primary: [\n", SEED_ENV).unwrap_err();
    match err {
        ConfigError::Yaml { line, .. } => assert!(line >= 3, "line {line}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn schema_owned_by_two_targets_names_both_with_the_line() {
    let text = SEED.replace("schemas: [workspace, reference]", "schemas: [workspace, customer]");
    let found = issues(&text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].line, Some(24));
    assert_eq!(found[0].key, "targets.data.schemas");
    assert!(found[0].message.contains("\"customer\"") && found[0].message.contains("\"primary\""));
}

#[test]
fn unknown_default_and_single_targets_are_reported() {
    let text = SEED
        .replace("default_target: primary", "default_target: nowhere")
        .replace("single_target: primary", "single_target: old");
    let found = issues(&text);
    let keys: Vec<(&str, Option<usize>)> = found.iter().map(|i| (i.key.as_str(), i.line)).collect();
    assert_eq!(keys, vec![("default_target", Some(11)), ("single_target", Some(12))]);
}

#[test]
fn bad_urls_are_reported_without_their_password() {
    let text = SEED.replace("url: ${DATA_DATABASE_URL}", "url: mysql://u:hunter2@h/db");
    let found = issues(&text);
    assert_eq!(found[0].key, "targets.data.url");
    assert_eq!(found[0].line, Some(22));
    assert!(!found[0].message.contains("hunter2"));
    let text = SEED.replace("url: ${DATA_DATABASE_URL}", "url: not a url");
    assert_eq!(issues(&text)[0].key, "targets.data.url");
}

#[test]
fn pool_and_tls_rules() {
    let text = SEED.replace("pool: { max: 100,", "pool: { max: 0,");
    assert_eq!(issues(&text)[0].key, "targets.data.pool.max");
    assert_eq!(issues(&text)[0].line, Some(23));
    let text = SEED.replace("tls: { mode: disabled }", "tls: { mode: required }");
    assert_eq!(issues(&text)[0].key, "tls");
    let text = SEED.replace(", ca: \"${PRIMARY_CA:-certs/ca.crt}\"", "");
    assert_eq!(issues(&text)[0].key, "targets.primary.tls");
    let text = SEED.replace("pool: { max: 100,", "pool: { maxx: 100,");
    assert!(issues(&text)[0].message.contains("maxx"));
}

#[test]
fn url_sslmode_applies_when_tls_is_absent() {
    let text = SEED.replace(
        "    tls: { mode: verify-full, ca: \"${PRIMARY_CA:-certs/ca.crt}\" }   # disable | require | verify-ca | verify-full\n",
        "",
    );
    let c = load(&text, SEED_ENV).unwrap();
    assert_eq!(c.target("primary").unwrap().tls.mode, ServerTlsMode::Require);
    assert_eq!(c.target("data").unwrap().tls.mode, ServerTlsMode::Disable);
}

#[test]
fn split_db_mode_false_forces_single() {
    let mut env = SEED_ENV.to_vec();
    env.push(("SPLIT_DB_MODE", "false"));
    assert_eq!(load(SEED, &env).unwrap().mode, Mode::Single);
    let single = SEED.replace("mode: split ", "mode: single");
    let mut env = SEED_ENV.to_vec();
    env.push(("SPLIT_DB_MODE", "true"));
    assert_eq!(load(&single, &env).unwrap().mode, Mode::Split);
    assert_eq!(load(&single, SEED_ENV).unwrap().mode, Mode::Single);
}

#[test]
fn durations_and_sizes_parse() {
    assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
    assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
    assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
    assert_eq!(parse_duration("5 parsecs"), None);
    // Found by the config fuzz target: the multiplication overflowed.
    assert_eq!(parse_duration("5555555555555555h"), None);
    assert_eq!(parse_duration("18446744073709551615"), None);
    assert_eq!(parse_duration("2147483647"), Some(Duration::from_secs(2147483647)));
    assert_eq!(parse_size("16MiB"), Some(16 << 20));
    assert_eq!(parse_size("512KiB"), Some(512 << 10));
    assert_eq!(parse_size("lots"), None);
}

#[test]
fn line_of_follows_indentation_and_flow_mappings() {
    let text = "a:\n  b:\n    c: 1\n  d: { e: 2 }\nf: 3\n";
    assert_eq!(validate::line_of(text, &["a", "b", "c"]), Some(3));
    assert_eq!(validate::line_of(text, &["a", "d", "e"]), Some(4));
    assert_eq!(validate::line_of(text, &["f"]), Some(5));
    assert_eq!(validate::line_of(text, &["a", "zzz"]), Some(1));
}

#[test]
fn upstream_defaults_to_direct_and_accepts_transaction_pooler() {
    let c = load(SEED, SEED_ENV).unwrap();
    assert_eq!(c.target("primary").unwrap().upstream, Upstream::Direct);
    let text =
        SEED.replace("    schemas: [config, customer]\n", "    schemas: [config, customer]\n    upstream: transaction_pooler\n");
    let c = load(&text, SEED_ENV).unwrap();
    assert_eq!(c.target("primary").unwrap().upstream, Upstream::TransactionPooler);
    assert_eq!(c.target("data").unwrap().upstream, Upstream::Direct);
    let text = SEED.replace("    schemas: [config, customer]\n", "    schemas: [config, customer]\n    upstream: pgbouncer\n");
    let found = issues(&text);
    assert_eq!(found[0].key, "targets.primary");
    assert!(found[0].message.contains("transaction_pooler"), "{}", found[0].message);
}

#[test]
fn health_interval_defaults_to_5s_and_must_be_positive() {
    assert_eq!(load(SEED, SEED_ENV).unwrap().health_interval, Duration::from_secs(5));
    let c = load(&format!("{SEED}health_interval: 500ms\n"), SEED_ENV).unwrap();
    assert_eq!(c.health_interval, Duration::from_millis(500));
    let found = issues(&format!("{SEED}health_interval: 0s\n"));
    assert_eq!(
        (found[0].key.as_str(), found[0].line),
        ("health_interval", Some(SEED.lines().count() + 1)),
        "the line after the seed's"
    );
}

#[test]
fn private_files_are_0600_and_exposed_configs_are_found() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("pgsplit-config-perm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("secret");
    std::fs::write(&path, "old").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(crate::config::readable_by_others(&path), Some(0o644));
    crate::config::write_private(&path, b"new").unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
    assert_eq!(crate::config::readable_by_others(&path), None);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_sslmode_libpq_does_not_know_is_an_error_never_plain_tcp() {
    for bad in ["verfy-full", "VERIFY-FULL", "on"] {
        let text = SEED.replace(
            "    tls: { mode: verify-full, ca: \"${PRIMARY_CA:-certs/ca.crt}\" }   # disable | require | verify-ca | verify-full\n",
            "",
        );
        let env: Vec<(&str, String)> = SEED_ENV
            .iter()
            .map(|(k, v)| {
                (
                    *k,
                    if *k == "PRIMARY_DATABASE_URL" {
                        v.replace("sslmode=require", &format!("sslmode={bad}"))
                    } else {
                        (*v).to_owned()
                    },
                )
            })
            .collect();
        let err = crate::config::load_str(&text, std::path::Path::new("."), &|k| {
            env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("invalid sslmode value") && err.contains(bad), "{bad}: {err}");
    }
}

#[test]
fn pool_mode_defaults_to_transaction_and_is_read_at_top_level_per_target_and_per_user() {
    let c = load(SEED, SEED_ENV).unwrap();
    assert_eq!(c.pool_mode, PoolMode::Transaction);
    assert_eq!(c.target("primary").unwrap().pool_mode, None);
    let text = format!("{SEED}pool_mode: session\n")
        .replace("    schemas: [config, customer]\n", "    schemas: [config, customer]\n    pool_mode: transaction\n");
    let c = load(&text, SEED_ENV).unwrap();
    assert_eq!(c.pool_mode, PoolMode::Session);
    assert_eq!(c.target("primary").unwrap().pool_mode, Some(PoolMode::Transaction));
    let e = load(&format!("{SEED}pool_mode: statement\n"), SEED_ENV).unwrap_err().to_string();
    assert!(e.contains("unknown variant `statement`, expected `transaction` or `session`"), "{e}");
    let text =
        SEED.replace("  - { name: app, password: \"${APP_PASSWORD}\" }", "  - { name: app, password: x, pool_mode: session }");
    let c = load(&text, SEED_ENV).unwrap();
    assert_eq!(c.users.iter().map(|u| u.pool_mode).collect::<Vec<_>>(), [Some(PoolMode::Session), None]);
}

#[test]
fn any_database_is_unset_by_default_and_must_name_a_target() {
    assert_eq!(load(SEED, SEED_ENV).unwrap().any_database, None);
    let c = load(&format!("{SEED}any_database: data\n"), SEED_ENV).unwrap();
    assert_eq!(c.any_database.as_deref(), Some("data"));
    let e = load(&format!("{SEED}any_database: elsewhere\n"), SEED_ENV).unwrap_err().to_string();
    assert!(e.contains("any_database") && e.contains("unknown target \"elsewhere\""), "{e}");
}

#[test]
fn the_session_cache_lists_tables_of_routed_schemas_with_ttls_and_a_budget() {
    // The seed caches the runbook's session lookups.
    let seeded = load(SEED, SEED_ENV).unwrap().cache.expect("the seed's cache");
    assert_eq!(
        seeded.tables.iter().map(|t| (t.schema.as_str(), t.name.as_str(), t.key.as_deref())).collect::<Vec<_>>(),
        [("config", "sessions", Some("token"))]
    );
    let seed_start = SEED.find("\ncache:").expect("the seed's cache section");
    let seed = &SEED[..seed_start];
    let c = load(&format!("{seed}\ncache: {{ max_bytes: 8MiB, tables: [ {{ name: Config.Sessions, ttl: 30s, key: Token }}, {{ name: '\"customer\".\"Accounts\"', ttl: 1m, key: '\"Id\"' }} ] }}\n"), SEED_ENV).unwrap();
    let cache = c.cache.expect("cache configured");
    assert_eq!((cache.max_bytes, cache.max_entry_bytes, cache.listen), (8 << 20, 1 << 20, true));
    assert_eq!(cache.stats_period, Duration::from_secs(60));
    let t: Vec<(&str, &str, Duration, &str)> =
        cache.tables.iter().map(|t| (t.schema.as_str(), t.name.as_str(), t.ttl, t.target.as_str())).collect();
    assert_eq!(
        t,
        [
            ("config", "sessions", Duration::from_secs(30), "primary"),
            ("customer", "Accounts", Duration::from_secs(60), "primary")
        ]
    );
    let keys: Vec<Option<&str>> = cache.tables.iter().map(|t| t.key.as_deref()).collect();
    assert_eq!(keys, [Some("token"), Some("Id")], "folded unless quoted");
    assert_eq!(load(seed, SEED_ENV).unwrap().cache, None, "no cache: nothing configured");
    let defaults = load(&format!("{seed}\ncache: {{ tables: [ {{ name: workspace.imports, ttl: 5s }} ] }}\n"), SEED_ENV).unwrap();
    assert_eq!(defaults.cache.map(|c| (c.max_bytes, c.max_entry_bytes)), Some((64 << 20, 1 << 20)));
    // Every mistake is reported, each on the cache's line.
    let bad = format!(
        "{seed}\ncache: {{ max_bytes: 1KiB, max_entry_bytes: 1MiB, tables: [ {{ name: sessions, ttl: 1s }}, {{ name: public.x, ttl: 1s }}, {{ name: config.a, ttl: 0s }}, {{ name: config.b, ttl: 1s }}, {{ name: config.b, ttl: 2s }} ] }}\n"
    );
    let found = issues(&bad);
    let messages: Vec<&str> = found.iter().map(|i| i.message.as_str()).collect();
    assert_eq!(found.len(), 6, "{messages:?}");
    for (want, i) in
        ["at least 4KiB", "a quarter", "not schema.table", "not owned by any target", "longer than 0s", "listed twice"]
            .iter()
            .zip(&found)
    {
        assert!(i.message.contains(want), "{want}: {messages:?}");
        assert!(i.key.starts_with("cache"), "{}", i.key);
    }
    // Unknown keys are refused.
    let unknown = load(&format!("{seed}\ncache: {{ max_byte: 1MiB, tables: [] }}\n"), SEED_ENV).unwrap_err();
    assert!(unknown.to_string().contains("max_byte"), "{unknown}");
}

#[test]
fn a_configuration_nobody_can_log_in_with_or_naming_unknown_admin_users_is_refused() {
    let users = "users:                                       # who may connect to pgsplit (SCRAM-SHA-256)\n  - { name: app, password: \"${APP_PASSWORD}\" }\n  - { name: admin, password: \"${ADMIN_PASSWORD:-}\" }\nadmin_users: [admin]\n";
    assert!(SEED.contains(users));
    let found = issues(&SEED.replace(users, "users: []\nadmin_users: []\n"));
    assert!(found.iter().any(|i| i.key == "users" && i.message.contains("no user can log in")), "{found:?}");
    let found = issues(&SEED.replace("admin_users: [admin]", "admin_users: [admin, ghost]"));
    assert!(found.iter().any(|i| i.key == "admin_users" && i.message.contains("\"ghost\"")), "{found:?}");
}

#[test]
fn server_logins_are_per_user_with_per_target_overrides_on_known_targets() {
    let c = load(
        &SEED.replace(
            "  - { name: app, password: \"${APP_PASSWORD}\" }",
            "  - { name: app, password: x, server_user: app_srv, server_password: p, role: r, targets: { data: { server_user: app_data } } }",
        ),
        SEED_ENV,
    )
    .unwrap();
    let app = c.users.iter().find(|u| u.name == "app").unwrap();
    let primary = app.login_on("primary");
    assert_eq!(
        (primary.server_user.as_deref(), primary.server_password.as_deref(), primary.role.as_deref()),
        (Some("app_srv"), Some("p"), Some("r"))
    );
    let data = app.login_on("data");
    assert_eq!(
        (data.server_user.as_deref(), data.role.as_deref()),
        (Some("app_data"), Some("r")),
        "the target's entry over the user's"
    );
    let found = issues(&SEED.replace(
        "  - { name: app, password: \"${APP_PASSWORD}\" }",
        "  - { name: app, password: x, server_password: p, targets: { nowhere: { role: r } } }",
    ));
    assert!(found.iter().any(|i| i.key == "users.app.targets.nowhere"), "{found:?}");
    assert!(found.iter().any(|i| i.key == "users.app.server_password"), "{found:?}");
}

#[test]
fn auth_query_takes_pgbouncers_default_once_auth_user_is_set_and_needs_a_known_target() {
    let c = load(&format!("{SEED}auth_user: pgbouncer\n"), SEED_ENV).unwrap();
    let q = c.auth_query.expect("auth_user alone enables auth_query");
    assert_eq!(
        (q.sql.as_str(), q.target.as_str(), q.ttl, q.size),
        (validate::DEFAULT_AUTH_QUERY, "primary", Duration::from_secs(60), 1000)
    );
    let found = issues(&format!("{SEED}auth_query: \"select 1\"\nauth_target: nowhere\nauth_type: sha1\n"));
    for key in ["auth_query", "auth_target", "auth_type"] {
        assert!(found.iter().any(|i| i.key == key), "{key}: {found:?}");
    }
    let users = "  - { name: app, password: \"${APP_PASSWORD}\" }\n  - { name: admin, password: \"${ADMIN_PASSWORD:-}\" }\n";
    let looked_up = load(&format!("{}auth_query: \"select u, p from f($1)\"\n", SEED.replace(users, "")), SEED_ENV);
    assert!(looked_up.is_ok(), "with auth_query, users may be empty and admin users looked up: {looked_up:?}");
}
