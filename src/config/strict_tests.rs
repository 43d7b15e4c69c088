//! Strictness tests: unknown keys anywhere, wrong values under several keys, and environment values with YAML's
//! special characters, all reported at once with their lines.

use std::path::Path;

use super::*;

const SEED: &str = include_str!("../../routing.yaml");

fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    load_str(text, Path::new("/etc/pgsplit"), &move |k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
}

fn seed_env(password: &str) -> Vec<(&'static str, String)> {
    vec![
        ("PRIMARY_DATABASE_URL", "postgresql://u:pw@db.example.com:25060/p?sslmode=require".to_owned()),
        ("DATA_DATABASE_URL", "postgresql://u:pw@localhost/d".to_owned()),
        ("APP_PASSWORD", password.to_owned()),
    ]
}

fn issues_of(text: &str) -> Vec<Issue> {
    let env = seed_env("s3cret");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    match load(text, &env) {
        Err(ConfigError::Invalid { issues, .. }) => issues,
        other => panic!("expected issues, got {other:?}"),
    }
}

fn line_of_text(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1).unwrap_or_else(|| panic!("{needle} not in the text"))
}

#[test]
fn every_unknown_key_is_reported_at_once_with_its_line_and_a_suggestion() {
    let text = SEED
        .replacen("listen:", "listn:", 1)
        .replace("pool: { max: 100, checkout_timeout", "pool: { max: 100, mx_lifetime: 1h, checkout_timeout")
        .replace("database: handled", "database: handled\nlisten_port: 6432");
    let found = issues_of(&text);
    let keys: Vec<&str> = found.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["listn", "listen_port", "targets.data.pool.mx_lifetime"]);
    assert_eq!(found[0].line, Some(line_of_text(&text, "listn:")));
    assert!(found[0].message.contains("did you mean \"listen\""), "{}", found[0].message);
    assert_eq!(found[1].line, Some(line_of_text(&text, "listen_port:")));
    assert!(found[1].message.contains("PgBouncer's name; pgsplit's is listen"), "{}", found[1].message);
    assert_eq!(found[2].line, Some(line_of_text(&text, "mx_lifetime")));
    assert!(found[2].message.contains("did you mean \"max_lifetime\""), "{}", found[2].message);
}

#[test]
fn wrong_values_under_several_keys_are_all_reported_with_unknown_keys() {
    let text = SEED.replace("mode: split ", "mode: spilt ");
    let text = format!("{text}\npool_mode: sesion\nmax_client_conn: many\nshutdown_timout: 5s\n");
    let found = issues_of(&text);
    let keys: Vec<&str> = found.iter().map(|i| i.key.as_str()).collect();
    for key in ["pool_mode", "max_client_conn", "shutdown_timout", "mode"] {
        assert!(keys.contains(&key), "{key} not reported: {found:?}");
    }
    let pool_mode = found.iter().find(|i| i.key == "pool_mode").unwrap();
    assert_eq!(pool_mode.line, Some(line_of_text(&text, "pool_mode: sesion")));
    assert!(pool_mode.message.contains("unknown variant `sesion`"), "{}", pool_mode.message);
    let user = SEED.replacen("{ name: app, password:", "{ name: app, pasword:", 1);
    let found = issues_of(&user);
    assert!(found.iter().any(|i| i.message.contains("did you mean \"password\"")), "{found:?}");
}

#[test]
fn x_keys_and_merge_keys_are_the_files_own() {
    let text = format!("x-pool: &pool {{ max: 70, min: 0 }}\n{SEED}");
    let text =
        text.replace("pool: { max: 100, checkout_timeout: 5s, idle_timeout: 10m }", "pool: { <<: *pool, checkout_timeout: 2s }");
    let env = seed_env("s3cret");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let c = load(&text, &env).unwrap();
    assert_eq!(c.target("data").unwrap().pool.max, 70);
}

#[test]
fn environment_values_with_yaml_characters_read_back_verbatim() {
    for password in [r#"pa"ss\word"#, "it's", "a: b # c", "*star", "-x", "[1,2]", "two\nlines"] {
        let env = seed_env(password);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let c = load(SEED, &env).unwrap_or_else(|e| panic!("{password:?}: {e}"));
        assert_eq!(c.users[0].password, password, "double-quoted in the seed");
        let plain = SEED.replacen("password: \"${APP_PASSWORD}\"", "password: ${APP_PASSWORD}", 1);
        assert_ne!(plain, SEED);
        let c = load(&plain, &env).unwrap_or_else(|e| panic!("{password:?} plain: {e}"));
        assert_eq!(c.users[0].password, password, "a whole plain scalar");
        let single = SEED.replacen("password: \"${APP_PASSWORD}\"", "password: '${APP_PASSWORD}'", 1);
        match load(&single, &env) {
            Ok(c) => assert_eq!(c.users[0].password, password, "single-quoted"),
            Err(e) => assert!(password.contains('\n') && e.to_string().contains("line break"), "{password:?}: {e}"),
        }
    }
    let env = [("X", "a: b")];
    let err = load::expand_env("k: pre-${X}\n", &|k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned()));
    assert!(err.unwrap_err()[0].message.contains("double quotes"), "part of a plain scalar");
    let ok = load::expand_env("k: pre-${X}\n", &|_: &str| Some("x1".to_owned())).unwrap();
    assert_eq!(ok, "k: pre-x1\n");
}

/// `text` expanded with `env` and read as YAML: the value at `key`, or the expansion's first message.
fn expanded(text: &str, env: &[(&str, &str)], key: &str) -> Result<serde_yaml::Value, Issue> {
    let out = load::expand_env(text, &|k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned()))
        .map_err(|issues| issues[0].clone())?;
    let v: serde_yaml::Value = serde_yaml::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    Ok(v.get(key).cloned().unwrap_or(serde_yaml::Value::Null))
}

#[test]
fn expansion_keeps_escapes_flow_collections_block_scalars_and_null_words_apart() {
    let s = |v: &str| serde_yaml::Value::String(v.to_owned());
    let env = [("A", "it's"), ("B", "a: b"), ("N", "null"), ("Q", "select 1 # not a comment: x")];
    assert_eq!(expanded("k: '${A}${B}'\n", &env, "k"), Ok(s("it'sa: b")), "'' inside single quotes");
    assert_eq!(expanded("k: \"${B}\\\\${A}\"\n", &env, "k"), Ok(s("a: b\\it's")));
    assert_eq!(expanded("k: { x: ${B} }\n", &env, "k").map(|v| v.get("x").cloned()), Ok(Some(s("a: b"))));
    assert_eq!(expanded("k: [${B}, ${A}]\n", &env, "k").map(|v| v.get(0).cloned()), Ok(Some(s("a: b"))));
    let err = expanded("k: a, ${B}\n", &env, "k").unwrap_err().message;
    assert!(err.contains("double quotes"), "a block value's comma is no flow separator: {err}");
    assert_eq!(expanded("k: |\n  ${Q}\n", &env, "k"), Ok(s("select 1 # not a comment: x\n")), "block scalar content");
    assert_eq!(expanded("k: ${N}\n", &env, "k"), Ok(s("null")), "a password spelled null stays text");
    assert_eq!(expanded("k: ${E:-}\n", &env, "k"), Ok(s("")), "an empty default stays an empty string");
}
