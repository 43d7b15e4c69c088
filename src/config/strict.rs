//! Strictness before validation: every key the file's structs do not know is an error with its line and a "did you
//! mean", and a value of the wrong type under one key does not hide the problems under the others. Both are found on
//! the parsed YAML tree, so every problem of a file is reported at once.
//!
//! The known keys are read from the structs themselves (`fields_of`): a field added to a `Raw*` struct is known here
//! with nothing else to update. Top-level keys starting with `x-` are the file's own (YAML anchors to reuse, notes):
//! allowed and ignored, as in Compose files.

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde_yaml::{Mapping, Value};

use super::load::{RawCache, RawCachedTable, RawConfig, RawMigrations, RawPool, RawServerTls, RawSessionCache, RawTarget};
use super::model::{ClientTls, ServerLogin, User};
use super::validate::line_of;
use super::Issue;

/// The keys a struct accepts, by its `Deserialize` implementation (what serde's `deserialize_struct` is given).
fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Introspect(&mut fields));
    fields
}

/// A deserializer that only records the field list it is asked for, then gives up.
struct Introspect<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for Introspect<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("introspection only"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("introspection only"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit unit_struct
        newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

/// A mapping level of the file: the struct that reads it and the levels below it.
struct Node {
    /// Its keys.
    fields: fn() -> &'static [&'static str],
    /// Keys whose values are themselves checked.
    below: &'static [(&'static str, Below)],
}

/// How a key's value holds the level below.
enum Below {
    /// The value is that level.
    One(&'static Node),
    /// The value is a mapping (names to levels) or a sequence of levels.
    Each(&'static Node),
}

static TOP: Node = Node {
    fields: fields_of::<RawConfig>,
    below: &[
        ("tls", Below::One(&CLIENT_TLS)),
        ("targets", Below::Each(&TARGET)),
        ("users", Below::Each(&USER)),
        ("route_cache", Below::One(&ROUTE_CACHE)),
        ("cache", Below::One(&CACHE)),
        ("migrations", Below::One(&MIGRATIONS)),
    ],
};
static CLIENT_TLS: Node = Node { fields: fields_of::<ClientTls>, below: &[] };
static TARGET: Node =
    Node { fields: fields_of::<RawTarget>, below: &[("tls", Below::One(&SERVER_TLS)), ("pool", Below::One(&POOL))] };
static SERVER_TLS: Node = Node { fields: fields_of::<RawServerTls>, below: &[] };
static POOL: Node = Node { fields: fields_of::<RawPool>, below: &[] };
static USER: Node = Node { fields: fields_of::<User>, below: &[("targets", Below::Each(&LOGIN))] };
static LOGIN: Node = Node { fields: fields_of::<ServerLogin>, below: &[] };
static ROUTE_CACHE: Node = Node { fields: fields_of::<RawCache>, below: &[] };
static CACHE: Node = Node { fields: fields_of::<RawSessionCache>, below: &[("tables", Below::Each(&CACHED_TABLE))] };
static CACHED_TABLE: Node = Node { fields: fields_of::<RawCachedTable>, below: &[] };
static MIGRATIONS: Node = Node { fields: fields_of::<RawMigrations>, below: &[] };

/// PgBouncer's names for what pgsplit spells otherwise: an operator's first guess, answered with where it lives.
const PGBOUNCER_NAMES: &[(&str, &str)] = &[
    ("listen_addr", "listen (host:port)"),
    ("listen_port", "listen (host:port)"),
    ("pool_size", "targets.<name>.pool.max"),
    ("default_pool_size", "targets.<name>.pool.max"),
    ("max_db_connections", "targets.<name>.pool.max"),
    ("min_pool_size", "targets.<name>.pool.min"),
    ("client_tls_sslmode", "tls.mode"),
    ("client_tls_cert_file", "tls.cert"),
    ("client_tls_key_file", "tls.key"),
    ("server_tls_sslmode", "targets.<name>.tls.mode"),
    ("server_tls_ca_file", "targets.<name>.tls.ca"),
    ("auth_dbname", "auth_target"),
    ("databases", "targets"),
    ("admin_user", "admin_users"),
];

/// Reports and removes every unknown key (at any level), then every top-level value (and every target, user or cached
/// that does not read as its struct; what is left reads as a `RawConfig`.
pub fn clean(root: &mut Value, text: &str) -> Vec<Issue> {
    let mut issues = Vec::new();
    let Value::Mapping(top) = root else {
        if !root.is_null() {
            issues.push(Issue { line: Some(1), key: String::new(), message: "the file must be a mapping of keys".into() });
        }
        *root = Value::Mapping(Mapping::new());
        return issues;
    };
    top.retain(|k, _| !k.as_str().is_some_and(|k| k.starts_with("x-")));
    unknown_keys(top, &TOP, &mut Vec::new(), text, &mut issues);
    wrong_values(top, text, &mut issues);
    issues
}

/// Unknown keys of one level and of the levels below it, each reported at its line and removed.
fn unknown_keys(map: &mut Mapping, node: &Node, path: &mut Vec<String>, text: &str, issues: &mut Vec<Issue>) {
    let known = (node.fields)();
    map.retain(|k, _| {
        let Some(key) = k.as_str() else {
            issues.push(issue(text, path, "", format!("keys must be strings, not {}", short(k))));
            return false;
        };
        if known.contains(&key) {
            return true;
        }
        issues.push(issue(text, path, key, unknown_message(key, known, path.is_empty())));
        false
    });
    for (key, below) in node.below {
        let Some(value) = map.get_mut(*key) else { continue };
        path.push((*key).to_owned());
        match (below, value) {
            (Below::One(n), Value::Mapping(m)) => unknown_keys(m, n, path, text, issues),
            (Below::Each(n), Value::Mapping(m)) => {
                for (name, v) in m.iter_mut() {
                    if let (Some(name), Value::Mapping(inner)) = (name.as_str(), v) {
                        path.push(name.to_owned());
                        unknown_keys(inner, n, path, text, issues);
                        path.pop();
                    }
                }
            }
            (Below::Each(n), Value::Sequence(items)) => {
                for v in items.iter_mut() {
                    if let Value::Mapping(inner) = v {
                        unknown_keys(inner, n, path, text, issues);
                    }
                }
            }
            _ => {}
        }
        path.pop();
    }
}

/// "unknown key": the closest known key when one is close, PgBouncer's names answered with pgsplit's.
fn unknown_message(key: &str, known: &[&str], top: bool) -> String {
    if let Some((_, ours)) = PGBOUNCER_NAMES.iter().find(|(theirs, _)| top && *theirs == key) {
        return format!("unknown key {key:?} (PgBouncer's name; pgsplit's is {ours})");
    }
    let closest = known
        .iter()
        .map(|k| (strsim::jaro_winkler(key, k), *k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match closest {
        Some((_, k)) => format!("unknown key {key:?}; did you mean {k:?}?"),
        None => format!("unknown key {key:?} (known here: {})", known.join(", ")),
    }
}

/// Top-level values that do not read as their field (each user on its own; targets are `validate::targets`'): reported at
/// their key's line and removed, so one mistake does not hide the next.
fn wrong_values(top: &mut Mapping, text: &str, issues: &mut Vec<Issue>) {
    let keys: Vec<Value> = top.keys().cloned().collect();
    for k in keys {
        let Some(key) = k.as_str().map(str::to_owned) else { continue };
        let Some(value) = top.get_mut(&k) else { continue };
        match (key.as_str(), value) {
            // Each target is read on its own by `validate::targets`, which reports the ones that do not read.
            ("targets", _) => {}
            ("users", Value::Sequence(items)) => items.retain(|v| keep::<User>(v, text, &["users", user_name(v)], issues)),
            _ => {
                let single: Mapping = [(k.clone(), top.get(&k).cloned().unwrap_or(Value::Null))].into_iter().collect();
                if !keep::<RawConfig>(&Value::Mapping(single), text, &[&key], issues) {
                    top.remove(&k);
                }
            }
        }
    }
}

/// Whether `v` reads as `T`; if not, the problem is recorded at `path`.
fn keep<T: DeserializeOwned>(v: &Value, text: &str, path: &[&str], issues: &mut Vec<Issue>) -> bool {
    match serde_yaml::from_value::<T>(v.clone()) {
        Ok(_) => true,
        Err(e) => {
            let path: Vec<&str> = path.iter().copied().filter(|p| !p.is_empty()).collect();
            issues.push(Issue { line: line_of(text, &path), key: path.join("."), message: e.to_string() });
            false
        }
    }
}

/// A user entry's name, for pointing at it.
fn user_name(v: &Value) -> &str {
    v.get("name").and_then(Value::as_str).unwrap_or("")
}

fn issue(text: &str, path: &[String], key: &str, message: String) -> Issue {
    let mut full: Vec<&str> = path.iter().map(String::as_str).collect();
    if !key.is_empty() {
        full.push(key);
    }
    Issue { line: line_of(text, &full), key: full.join("."), message }
}

/// A short rendering of a non-string key.
fn short(v: &Value) -> String {
    serde_yaml::to_string(v).map(|s| s.trim().chars().take(40).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_keys_come_from_the_structs() {
        let top = fields_of::<RawConfig>();
        assert!(top.contains(&"listen") && top.contains(&"targets") && top.contains(&"max_client_conn"), "{top:?}");
        assert_eq!(fields_of::<RawServerTls>(), &["mode", "ca"]);
        assert!(fields_of::<User>().contains(&"server_user"));
    }

    #[test]
    fn a_close_misspelling_is_answered_with_the_key() {
        let m = unknown_message("defualt_target", fields_of::<RawConfig>(), true);
        assert_eq!(m, "unknown key \"defualt_target\"; did you mean \"default_target\"?");
        let m = unknown_message("listen_port", fields_of::<RawConfig>(), true);
        assert!(m.contains("pgsplit's is listen"), "{m}");
        let m = unknown_message("zzz", &["mode", "ca"], false);
        assert_eq!(m, "unknown key \"zzz\" (known here: mode, ca)");
    }
}
