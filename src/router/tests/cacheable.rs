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
