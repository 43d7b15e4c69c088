//! Which texts the session cache may answer (`Analysis::cacheable`) and which are plain reads (`Analysis::plain`).

use crate::router::Analysis;

#[test]
fn only_single_reads_of_data_and_settings_are_cacheable() {
    for sql in [
        "select user_id from config.sessions where token = 'abc'",
        "SELECT count(*), max(expires_at) FROM config.sessions WHERE user_id = $1",
        "select lower(email), coalesce(name, '') from config.users where id = 7",
        "with s as (select * from config.sessions) select token from s",
    ] {
        assert!(Analysis::of(sql).cacheable, "{sql}");
    }
    for sql in [
        "select now(), token from config.sessions",
        "select random() from config.sessions",
        "select current_user, token from config.sessions",
        "select nextval('config.s')",
        "select currval('config.s'), lastval()",
        "select token from config.sessions where expires_at > 'now'::timestamptz",
        "select token from config.sessions where expires_at > 'TODAY'",
        "select token from config.sessions for update",
        "select token from config.sessions for share",
        "select token from config.sessions; select 1",
        "select my_function(token) from config.sessions",
        "select token into config.copy from config.sessions",
        "with d as (delete from config.sessions returning *) select * from d",
        "update config.sessions set user_id = 1",
        "/* pgsplit: target=primary */ select token from config.sessions",
        "select version()",
    ] {
        assert!(!Analysis::of(sql).cacheable, "{sql}");
    }
    // Plain (binds tentatively) yet not cacheable: the clock, the role.
    assert!(Analysis::of("select now() from config.sessions").plain);
    assert!(!Analysis::of("update config.sessions set user_id = 1").plain);
    assert!(!Analysis::of("select token from config.sessions for update").plain);
}

#[test]
fn a_single_table_statement_gives_the_values_its_columns_are_fixed_to() {
    use crate::router::keys::{KeyValue, Keys};
    let keys = |sql: &str| Analysis::of(sql).keys.map(|k| *k);
    let text = |s: &str| KeyValue::Text(s.into());
    let eq = |pairs: &[(&str, KeyValue)]| pairs.iter().map(|(c, v)| ((*c).to_owned(), v.clone())).collect::<Vec<_>>();
    assert_eq!(
        keys("select user_id from config.sessions where token = $1"),
        Some(Keys { equal: eq(&[("token", KeyValue::Param(1))]), assigned: vec![] })
    );
    let k = keys("select * from config.sessions s where (s.user_id = 7 and 'abc' = s.Token) and expires_at > $2").unwrap();
    assert_eq!(k.value_of("token"), Some(&text("abc")), "numbers are not kept: they are shaped");
    assert_eq!(k.value_of("user_id"), None);
    let k = keys("update config.sessions set expires_at = now() where token = $1::text").unwrap();
    assert_eq!((k.value_of("token"), k.assigned.as_slice()), (Some(&KeyValue::Param(1)), &["expires_at".to_owned()][..]));
    let k = keys("update config.sessions set token = 'x' where token = 'y'").unwrap();
    assert!(k.assigned.contains(&"token".to_owned()));
    assert_eq!(keys("delete from config.sessions where token = 'q'").unwrap().value_of("token"), Some(&text("q")));
    let k = keys("insert into config.sessions (token, user_id, expires_at) values ($1, 2, now())").unwrap();
    assert_eq!(k.value_of("token"), Some(&KeyValue::Param(1)));
    // Anything that may reach other rows or other tables: no keys.
    for sql in [
        "select * from config.sessions where token = 'a' or token = 'b'",
        "select * from config.sessions",
        "select * from config.sessions s join config.users u on u.id = s.user_id where token = 'a'",
        "with x as (select 1) select * from config.sessions where token = 'a'",
        "select * from config.sessions where token = 'a' union select * from config.sessions where token = 'b'",
        "update config.sessions set user_id = 1",
        "update config.sessions s set user_id = u.id from config.users u where s.token = 'a'",
        "delete from config.sessions using config.users u where token = 'a'",
        "insert into config.sessions (token, user_id) values ('a', 1), ('b', 2)",
        "insert into config.sessions (token, user_id) values ('a', 1) on conflict (token) do update set user_id = 2",
        "insert into config.sessions select * from config.sessions",
        "truncate config.sessions",
        "select 1 from config.sessions where token = 'a'; select 2",
    ] {
        let k = keys(sql);
        assert!(k.as_ref().is_none_or(|k| k.value_of("token").is_none()), "{sql}: {k:?}");
    }
}
