//! Session parameters that follow the client across pooled server connections (SPEC §4 "Session state"): the
//! startup parameters and every `SET` (not `LOCAL`), `RESET`, `RESET ALL`, `DISCARD ALL` the server accepted,
//! applied to each server connection the client uses as a diff against what that connection already has.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};

use crate::backend::Outcome;
use crate::protocol::encoding::ClientEncoding;
use crate::protocol::{STATUS_IDLE, STATUS_IN_TX};
use crate::quote;
use crate::router::resolve::{parse_search_path, search_path_of_set_value, search_path_sql};
use crate::router::Command;

/// search_path when nobody set one: PostgreSQL's default.
const DEFAULT_SEARCH_PATH: &str = "\"$user\", public";

/// Startup-packet keys that are not session parameters.
const NOT_PARAMS: [&str; 4] = ["user", "database", "options", "replication"];

/// The client's view of its session parameters.
#[derive(Debug, Default, Clone)]
pub struct Params {
    /// What the client has now: name (lower case) → SQL value text, ready for `SET name TO value`. Shared with the
    /// startup settings (and the connections it was applied to) until the client changes it.
    current: Settings,
    /// What it started with (startup packet): `RESET` returns here. Shared by every session that started with the
    /// same settings (`intern`).
    defaults: Settings,
    /// Changes made inside the open transaction: they count only if it commits.
    pending: Vec<Command>,
}

impl Params {
    /// The parameters of a startup packet (`options=-c name=value` included).
    pub fn from_startup(startup: &BTreeMap<String, String>) -> Params {
        let mut defaults = BTreeMap::new();
        for (k, v) in startup {
            let key = k.to_lowercase();
            if !NOT_PARAMS.contains(&key.as_str()) {
                defaults.insert(key.clone(), guc_value_sql(&key, v));
            }
        }
        if let Some(options) = startup.get("options") {
            for (k, v) in options_settings(options) {
                let key = k.to_lowercase().replace('-', "_");
                defaults.insert(key.clone(), guc_value_sql(&key, &v));
            }
        }
        let defaults = intern(defaults);
        Params { current: defaults.clone(), defaults, pending: Vec::new() }
    }

    /// The first setting of a startup packet whose name PostgreSQL refuses (`quote::valid_guc_name`), for the
    /// FATAL 42602 it answers; `None` when every name may be sent to a server.
    pub fn invalid_startup_name(startup: &BTreeMap<String, String>) -> Option<String> {
        let keys = startup.keys().filter(|k| !NOT_PARAMS.contains(&k.to_lowercase().as_str())).cloned();
        let options = startup.get("options").map(|o| options_settings(o)).unwrap_or_default();
        keys.chain(options.into_iter().map(|(k, _)| k.replace('-', "_"))).find(|name| !quote::valid_guc_name(name))
    }

    /// A startup `client_encoding` PostgreSQL does not know (it ends such a connection with 22023), if there is one.
    pub fn unknown_startup_encoding(startup: &BTreeMap<String, String>) -> Option<String> {
        let value = unquote(Params::from_startup(startup).current.get("client_encoding")?);
        ClientEncoding::from_name(&value).is_none().then_some(value)
    }

    /// The statements that make a server connection with `applied` match the client, or `None` if it already does.
    /// Behind a transaction pooler (`pooler`) only the parameters the pooler tracks itself are set this way.
    pub fn diff_sql(&self, applied: &Settings, pooler: bool) -> Option<String> {
        // The common case, a connection last used by a client with the same settings: the very same map (clients
        // that started alike share theirs), else the maps' lengths, then one ordered walk of both.
        let same = if pooler {
            self.session_level(true).eq(applied.iter())
        } else {
            Arc::ptr_eq(&self.current, applied) || self.current == *applied
        };
        if same {
            return None;
        }
        let mut sql = String::new();
        for (name, value) in self.session_level(pooler) {
            if applied.get(name) != Some(value) {
                sql.push_str(&format!("SET {} TO {value};", quote::guc_name(name)));
            }
        }
        for name in applied.keys() {
            if !self.current.contains_key(name) {
                sql.push_str(&format!("RESET {};", quote::guc_name(name)));
            }
        }
        (!sql.is_empty()).then_some(sql)
    }

    /// After `diff_sql` ran on a connection: it now has exactly the client's parameters (those set at session level).
    pub fn synced(&self, applied: &mut Settings, pooler: bool) {
        *applied = match pooler {
            false => self.current.clone(),
            true => Arc::new(self.session_level(true).map(|(k, v)| (k.clone(), v.clone())).collect()),
        };
    }

    /// The parameters set on a server connection at session level: all of them, or behind a transaction pooler
    /// those it tracks itself.
    fn session_level(&self, pooler: bool) -> impl Iterator<Item = (&String, &String)> {
        self.current.iter().filter(move |(name, _)| !pooler || tracked_by_pooler(name))
    }

    /// The client's parameters now (name, SQL value text), in name order: the session cache's key.
    pub fn current(&self) -> impl Iterator<Item = (&String, &String)> {
        self.current.iter()
    }

    /// Behind a transaction pooler: `SET LOCAL` of every parameter the pooler does not track, for the start of each
    /// transaction; `None` when there are none (the common case costs nothing).
    pub fn local_sql(&self) -> Option<String> {
        let mut sql = String::new();
        for (name, value) in self.current.iter().filter(|(name, _)| !tracked_by_pooler(name)) {
            sql.push_str(&format!("SET LOCAL {} TO {value};", quote::guc_name(name)));
        }
        (!sql.is_empty()).then_some(sql)
    }

    /// Behind a transaction pooler: the parameters the open transaction changed at session level that the pooler
    /// does not track. They must be reset before it commits, or they would stay on the PostgreSQL backend for the
    /// pooler's next client.
    pub fn pending_untracked(&self) -> impl Iterator<Item = &str> {
        untracked(&self.pending)
    }

    /// Follows the parameter changes of an exchange the server has answered: `changes` were sent in it, `was_in_tx`
    /// says whether a transaction was open before it, `status` and `outcome` are what the server answered.
    /// `applied` is the connection's record, which always follows what the server did.
    pub fn follow(&mut self, changes: &[Command], was_in_tx: bool, status: u8, outcome: Outcome, applied: &mut Settings) {
        if outcome.error {
            // The failed statement's changes never happened; in a failed transaction the earlier ones will be
            // rolled back with it; after an implicit transaction failed, none of the text's changes happened.
            if status == STATUS_IDLE {
                self.pending.clear();
            }
            return;
        }
        match status {
            STATUS_IN_TX => self.pending.extend(changes.iter().cloned()),
            STATUS_IDLE => {
                let pending = std::mem::take(&mut self.pending);
                if outcome.rolled_back {
                    return;
                }
                if was_in_tx {
                    for c in &pending {
                        self.apply(c, applied);
                    }
                }
                for c in changes {
                    self.apply(c, applied);
                }
            }
            _ => {}
        }
    }

    /// Applies one accepted change to the client's view and the connection's record.
    fn apply(&mut self, change: &Command, applied: &mut Settings) {
        match change {
            Command::SetParam { name, value } => {
                // A partial DateStyle changes only its part of the session's value: the whole value is replayed.
                let value = match self.current.get(name) {
                    Some(now) if name == "datestyle" => {
                        compose_datestyle(now, value, self.defaults.get(name)).unwrap_or_else(|| value.clone())
                    }
                    _ => value.clone(),
                };
                Arc::make_mut(&mut self.current).insert(name.clone(), value.clone());
                Arc::make_mut(applied).insert(name.clone(), value);
            }
            Command::ResetParam(name) => {
                match self.defaults.get(name) {
                    Some(v) => Arc::make_mut(&mut self.current).insert(name.clone(), v.clone()),
                    None => Arc::make_mut(&mut self.current).remove(name),
                };
                if applied.contains_key(name) {
                    Arc::make_mut(applied).remove(name);
                }
            }
            Command::ResetAll | Command::DiscardAll => {
                self.current = self.defaults.clone();
                *applied = Settings::default();
            }
            _ => {}
        }
    }

    /// `DISCARD ALL` / `RESET ALL` answered without a server: back to the startup values.
    pub fn discard_all(&mut self) {
        self.current = self.defaults.clone();
        self.pending.clear();
    }

    /// The schemas of the client's search_path, for resolving unqualified names.
    pub fn search_path(&self) -> Vec<String> {
        match self.current.get("search_path") {
            Some(v) => search_path_of_set_value(v),
            None => parse_search_path(DEFAULT_SEARCH_PATH),
        }
    }

    /// The client's encoding: what it set (`client_encoding`, `SET NAMES`) or started with, else UTF8 (the default
    /// of a UTF8 database). A value the server accepted is always one PostgreSQL knows.
    pub fn client_encoding(&self) -> ClientEncoding {
        self.current.get("client_encoding").and_then(|v| ClientEncoding::from_name(&unquote(v))).unwrap_or_default()
    }

    /// Whether changes wait on the open transaction's outcome.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

/// The DateStyle a session has after `SET datestyle TO new` when it had `now` (both SQL text as pgsplit keeps them),
/// as PostgreSQL's `check_datestyle` computes it: a style (ISO, SQL, Postgres, German) and an order (YMD, DMY, MDY);
/// what `new` leaves out stays as it was, except that German alone implies DMY; `DEFAULT` is the startup value
/// (`default`). `None` for anything it does not read (the value is then kept as written).
fn compose_datestyle(now: &str, new: &str, default: Option<&String>) -> Option<String> {
    let words = |sql: &str| -> Vec<String> {
        sql.split(|c: char| c == '\'' || c == ',' || c.is_whitespace())
            .filter(|w| !w.is_empty())
            .map(str::to_ascii_lowercase)
            .collect()
    };
    let read = |words: &[String], mut style: Option<&'static str>, mut order: Option<&'static str>| {
        let (mut styles, mut orders) = (0, 0);
        for w in words {
            match w.as_str() {
                "iso" => (style, styles) = (Some("ISO"), styles + 1),
                "sql" => (style, styles) = (Some("SQL"), styles + 1),
                "postgres" => (style, styles) = (Some("Postgres"), styles + 1),
                "german" => {
                    (style, styles) = (Some("German"), styles + 1);
                    if orders == 0 {
                        order = Some("DMY");
                    }
                }
                "ymd" => (order, orders) = (Some("YMD"), orders + 1),
                "dmy" => (order, orders) = (Some("DMY"), orders + 1),
                w if w.starts_with("euro") => (order, orders) = (Some("DMY"), orders + 1),
                "mdy" | "us" => (order, orders) = (Some("MDY"), orders + 1),
                w if w.starts_with("noneuro") => (order, orders) = (Some("MDY"), orders + 1),
                _ => return None,
            }
        }
        (styles <= 1 && orders <= 1).then_some((style, order))
    };
    let (style, order) = read(&words(now), None, None)?;
    let new = words(new);
    let (style, order) = if new == ["default"] { read(&words(default?), None, None)? } else { read(&new, style, order)? };
    Some(quote::literal(&format!("{}, {}", style?, order?)))
}

/// The text of a value as `guc_value_sql` or the router wrote it: a literal's content (`'it''s'` is `it's`), anything
/// else as it is.
fn unquote(value: &str) -> String {
    match value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        Some(inner) => inner.replace("''", "'"),
        None => value.to_owned(),
    }
}

/// The parameters a transaction pooler keeps per client itself (PgBouncer's `track_extra_parameters` defaults, all
/// reported by PostgreSQL through ParameterStatus): a session-level SET of them is safe behind it.
pub const TRACKED_BY_POOLER: [&str; 5] =
    ["client_encoding", "datestyle", "timezone", "standard_conforming_strings", "application_name"];

/// Whether a transaction pooler restores `name` for each of its clients itself.
pub fn tracked_by_pooler(name: &str) -> bool {
    TRACKED_BY_POOLER.contains(&name)
}

/// Names of the parameters `changes` set or reset at session level that a transaction pooler does not track.
pub fn untracked(changes: &[Command]) -> impl Iterator<Item = &str> {
    changes.iter().filter_map(|c| match c {
        Command::SetParam { name, .. } | Command::ResetParam(name) if !tracked_by_pooler(name) => Some(name.as_str()),
        _ => None,
    })
}

/// A value as the startup packet or `set_config` gives it (a plain string) as SQL text for `SET name TO ...`.
fn guc_value_sql(name: &str, value: &str) -> String {
    if name == "search_path" {
        search_path_sql(&parse_search_path(value))
    } else {
        quote::literal(value)
    }
}

/// `-c name=value` and `--name=value` settings of the startup `options` string (backslash escapes spaces).
pub(super) fn options_settings(options: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => cur.extend(chars.next()),
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    let mut out = Vec::new();
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let setting =
            if w == "-c" { it.next() } else { w.strip_prefix("-c").or_else(|| w.strip_prefix("--")).map(str::to_owned) };
        if let Some((k, v)) = setting.as_deref().and_then(|s| s.split_once('=')) {
            out.push((k.to_owned(), v.to_owned()));
        }
    }
    out
}

/// Session settings, name (lower case) → SQL value text; shared, copied when changed (`Arc::make_mut`).
pub type Settings = Arc<BTreeMap<String, String>>;

/// Most distinct startup settings kept for sharing; past it a session keeps its own.
const INTERNED_MAX: usize = 256;

/// Startup settings shared by the sessions that started with the same ones: a pooled application's clients all
/// send the same, so each session holds a pointer instead of two copies of every name and value (README, *Memory
/// per connection*), and a connection last used by a client with the same settings is recognised by that pointer.
fn intern(settings: BTreeMap<String, String>) -> Settings {
    static INTERNED: Mutex<Vec<Weak<BTreeMap<String, String>>>> = Mutex::new(Vec::new());
    let Ok(mut interned) = INTERNED.lock() else { return Arc::new(settings) };
    if let Some(same) = interned.iter().filter_map(Weak::upgrade).find(|s| **s == settings) {
        return same;
    }
    interned.retain(|w| w.strong_count() > 0);
    let shared = Arc::new(settings);
    if interned.len() < INTERNED_MAX {
        interned.push(Arc::downgrade(&shared));
    }
    shared
}

#[cfg(test)]
mod datestyle_tests {
    use super::compose_datestyle;

    #[test]
    fn a_partial_datestyle_keeps_the_rest_of_the_value_as_postgresql_does() {
        let startup = "'SQL, DMY'".to_owned();
        for (now, new, want) in [
            ("'SQL, DMY'", "'YMD'", Some("'SQL, YMD'")),
            ("'SQL, DMY'", "'iso'", Some("'ISO, DMY'")),
            ("'ISO, MDY'", "'German'", Some("'German, DMY'")),
            ("'ISO, MDY'", "'German', 'MDY'", Some("'German, MDY'")),
            ("'ISO, MDY'", "'MDY', 'German'", Some("'German, MDY'")),
            ("'German, DMY'", "'US'", Some("'German, MDY'")),
            ("'ISO, YMD'", "'European'", Some("'ISO, DMY'")),
            ("'ISO, YMD'", "'default'", Some("'SQL, DMY'")),
            ("'ISO, YMD'", "'ISO', 'SQL'", None),
            ("'ISO, YMD'", "'klingon'", None),
            ("'ISO'", "'YMD'", Some("'ISO, YMD'")),
            ("'ISO'", "'SQL'", None),
        ] {
            assert_eq!(compose_datestyle(now, new, Some(&startup)).as_deref(), want, "{now} + {new}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::STATUS_FAILED;

    fn startup(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn sessions_that_started_alike_share_their_settings_until_one_changes_them() {
        let a = Params::from_startup(&startup(&[("application_name", "x"), ("TimeZone", "UTC")]));
        let mut b = Params::from_startup(&startup(&[("TimeZone", "UTC"), ("application_name", "x")]));
        assert!(Arc::ptr_eq(&a.current, &b.current) && Arc::ptr_eq(&a.defaults, &b.defaults));
        let mut applied = Settings::default();
        assert!(a.diff_sql(&applied, false).is_some());
        a.synced(&mut applied, false);
        assert!(Arc::ptr_eq(&applied, &a.current));
        assert_eq!(b.diff_sql(&applied, false), None);
        // A change is the changer's alone: the other session and what it started with keep theirs.
        b.follow(&[set("timezone", "'Europe/Paris'")], false, STATUS_IDLE, OK, &mut applied);
        assert!(!Arc::ptr_eq(&a.current, &b.current));
        assert_eq!(a.current.get("timezone").map(String::as_str), Some("'UTC'"));
        assert_eq!(b.defaults.get("timezone").map(String::as_str), Some("'UTC'"));
        assert_eq!(a.diff_sql(&applied, false).as_deref(), Some("SET \"timezone\" TO 'UTC';"));
        // Back to the startup settings: shared again.
        b.follow(&[Command::ResetAll], false, STATUS_IDLE, OK, &mut applied);
        assert!(Arc::ptr_eq(&a.current, &b.current));
    }

    fn set(name: &str, value: &str) -> Command {
        Command::SetParam { name: name.into(), value: value.into() }
    }

    const OK: Outcome = Outcome { error: false, rolled_back: false, committed: false, stale_statement: false };

    #[test]
    fn startup_parameters_and_options_become_settings() {
        let p = Params::from_startup(&startup(&[
            ("user", "app"),
            ("database", "handled"),
            ("application_name", "it's me"),
            ("TimeZone", "UTC"),
            ("options", "-c search_path=workspace,Public --statement-timeout=5s -c x=a\\ b"),
        ]));
        assert_eq!(p.current.get("application_name").map(String::as_str), Some("'it''s me'"));
        assert_eq!(p.current.get("timezone").map(String::as_str), Some("'UTC'"));
        assert_eq!(p.current.get("statement_timeout").map(String::as_str), Some("'5s'"));
        assert_eq!(p.current.get("x").map(String::as_str), Some("'a b'"));
        assert_eq!(p.search_path(), ["workspace", "public"]);
        assert!(!p.current.contains_key("user"));
    }

    #[test]
    fn a_connection_gets_only_the_difference() {
        let p = Params::from_startup(&startup(&[("application_name", "a"), ("TimeZone", "UTC")]));
        let mut applied = Settings::default();
        assert_eq!(p.diff_sql(&applied, false).as_deref(), Some("SET \"application_name\" TO 'a';SET \"timezone\" TO 'UTC';"));
        p.synced(&mut applied, false);
        assert_eq!(p.diff_sql(&applied, false), None);
        Arc::make_mut(&mut applied).insert("datestyle".into(), "'German'".into());
        assert_eq!(p.diff_sql(&applied, false).as_deref(), Some("RESET \"datestyle\";"));
    }

    #[test]
    fn accepted_sets_follow_and_failed_or_rolled_back_ones_do_not() {
        let mut p = Params::default();
        let mut applied = Settings::default();
        p.follow(&[set("search_path", "workspace")], false, STATUS_IDLE, OK, &mut applied);
        assert_eq!(p.search_path(), ["workspace"]);
        assert_eq!(applied.get("search_path").map(String::as_str), Some("workspace"));

        let failed = Outcome { error: true, ..OK };
        p.follow(&[set("timezone", "'x'")], false, STATUS_IDLE, failed, &mut applied);
        assert!(!p.current.contains_key("timezone"));

        p.follow(&[set("timezone", "'UTC'")], true, STATUS_IN_TX, OK, &mut applied);
        assert!(p.has_pending() && !p.current.contains_key("timezone"));
        let rollback = Outcome { rolled_back: true, ..OK };
        p.follow(&[], true, STATUS_IDLE, rollback, &mut applied);
        assert!(!p.has_pending() && !p.current.contains_key("timezone"));

        p.follow(&[set("timezone", "'UTC'")], true, STATUS_IN_TX, OK, &mut applied);
        p.follow(&[], true, STATUS_FAILED, Outcome { error: true, ..OK }, &mut applied);
        assert!(p.has_pending());
        p.follow(&[], true, STATUS_IDLE, rollback, &mut applied);
        assert!(!p.current.contains_key("timezone"));

        p.follow(&[set("timezone", "'UTC'")], true, STATUS_IN_TX, OK, &mut applied);
        p.follow(&[], true, STATUS_IDLE, Outcome { committed: true, ..OK }, &mut applied);
        assert_eq!(p.current.get("timezone").map(String::as_str), Some("'UTC'"));
    }

    #[test]
    fn reset_returns_to_the_startup_value_and_reset_all_to_all_of_them() {
        let mut p = Params::from_startup(&startup(&[("application_name", "a")]));
        let mut applied = Settings::default();
        p.follow(&[set("application_name", "'b'"), set("datestyle", "'German'")], false, STATUS_IDLE, OK, &mut applied);
        p.follow(&[Command::ResetParam("application_name".into())], false, STATUS_IDLE, OK, &mut applied);
        assert_eq!(p.current.get("application_name").map(String::as_str), Some("'a'"));
        assert!(!applied.contains_key("application_name"), "the server reset it to the connection's own value");
        p.follow(&[Command::ResetAll], false, STATUS_IDLE, OK, &mut applied);
        assert!(!p.current.contains_key("datestyle") && applied.is_empty());
        assert_eq!(p.diff_sql(&applied, false).as_deref(), Some("SET \"application_name\" TO 'a';"));
    }

    #[test]
    fn behind_a_transaction_pooler_only_tracked_parameters_are_set_for_the_session() {
        let mut p = Params::from_startup(&startup(&[("application_name", "a"), ("options", "-c statement_timeout=5s")]));
        let mut applied = Settings::default();
        assert_eq!(p.diff_sql(&applied, true).as_deref(), Some("SET \"application_name\" TO 'a';"));
        p.synced(&mut applied, true);
        assert_eq!(applied.keys().collect::<Vec<_>>(), ["application_name"]);
        assert_eq!(p.local_sql().as_deref(), Some("SET LOCAL \"statement_timeout\" TO '5s';"));
        assert_eq!(Params::from_startup(&startup(&[("TimeZone", "UTC")])).local_sql(), None);
        p.follow(&[set("work_mem", "'1MB'"), set("timezone", "'UTC'")], true, STATUS_IN_TX, OK, &mut applied);
        assert_eq!(p.pending_untracked().collect::<Vec<_>>(), ["work_mem"]);
    }

    /// Checks that `sql` is only `SET [LOCAL] name TO value[, value...];` and `RESET name;` statements whose names
    /// are quoted identifiers and whose values are single literals or quoted identifiers: nothing a client wrote can
    /// have added a statement, a keyword or an expression. Returns the number of statements.
    fn only_quoted_settings(sql: &str) -> usize {
        use sqlparser::dialect::PostgreSqlDialect;
        use sqlparser::keywords::Keyword;
        use sqlparser::tokenizer::{Token, Tokenizer};
        let tokens: Vec<Token> = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize()
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .into_iter()
            .filter(|t| !matches!(t, Token::Whitespace(_)))
            .collect();
        let quoted = |t: &Token| matches!(t, Token::Word(w) if w.quote_style == Some('"'));
        let keyword = |t: &Token, k: Keyword| matches!(t, Token::Word(w) if w.quote_style.is_none() && w.keyword == k);
        let mut statements = 0;
        for st in tokens.split(|t| matches!(t, Token::SemiColon)).filter(|st| !st.is_empty()) {
            statements += 1;
            let mut rest = st;
            let reset = keyword(&rest[0], Keyword::RESET);
            assert!(reset || keyword(&rest[0], Keyword::SET), "{sql}");
            rest = &rest[1..];
            if !reset && rest.first().is_some_and(|t| keyword(t, Keyword::LOCAL)) {
                rest = &rest[1..];
            }
            // name: "a"."b"...
            let mut i = 0;
            loop {
                assert!(rest.get(i).is_some_and(quoted), "{sql}");
                i += 1;
                if !matches!(rest.get(i), Some(Token::Period)) {
                    break;
                }
                i += 1;
            }
            rest = &rest[i..];
            if reset {
                assert!(rest.is_empty(), "{sql}");
                continue;
            }
            assert!(rest.first().is_some_and(|t| keyword(t, Keyword::TO)), "{sql}");
            for (j, t) in rest[1..].iter().enumerate() {
                let value = matches!(t, Token::SingleQuotedString(_) | Token::EscapedStringLiteral(_)) || quoted(t);
                assert!(if j % 2 == 0 { value } else { matches!(t, Token::Comma) }, "{sql}");
            }
        }
        statements
    }

    proptest::proptest! {
        /// No client input — startup names and values, `options`, SET values, set_config names — can make pgsplit
        /// write a statement the client did not send: what it writes is always only quoted settings.
        #[test]
        fn no_client_input_adds_a_statement_to_the_settings_pgsplit_writes(
            names in proptest::collection::vec("\\PC{1,12}", 1..4),
            values in proptest::collection::vec("\\PC{0,12}", 1..4),
            option in "\\PC{0,24}",
            set_value in "\\PC{0,24}",
            config_name in "[a-z]{1,4}\\.\\PC{1,12}",
        ) {
            let mut startup: BTreeMap<String, String> =
                names.iter().zip(values.iter().cycle()).map(|(k, v)| (k.clone(), v.clone())).collect();
            startup.insert("options".into(), format!("-c {option}=v -c x.y={option}"));
            let mut p = Params::from_startup(&startup);
            let mut applied = Settings::default();
            let texts = [
                format!("set app.x = {}", crate::quote::literal(&set_value)),
                format!("set search_path = {}, public", crate::quote::ident(&set_value)),
                format!("select set_config({}, {}, false)", crate::quote::literal(&config_name), crate::quote::literal(&set_value)),
            ];
            for text in &texts {
                let a = crate::router::Analysis::of(text);
                p.follow(&a.session_changes, false, STATUS_IDLE, OK, &mut applied);
            }
            let settings = p.current.len();
            proptest::prop_assert_eq!(only_quoted_settings(&p.diff_sql(&Settings::default(), false).unwrap_or_default()), settings);
            only_quoted_settings(&p.local_sql().unwrap_or_default());
            let stale: BTreeMap<String, String> = names.iter().map(|n| (format!("{n}.stale"), "'x'".to_owned())).collect();
            only_quoted_settings(&p.diff_sql(&Arc::new(stale), false).unwrap_or_default());
        }
    }
}
