//! Routing hints written in the SQL text: a leading `/* pgsplit: target=name */` comment.

/// The target named by a hint comment at the start of the text (after white space), if any.
pub fn leading_target(sql: &str) -> Option<String> {
    let rest = sql.trim_start().strip_prefix("/*")?;
    let end = rest.find("*/")?;
    let body = rest[..end].trim().strip_prefix("pgsplit:")?;
    body.split_whitespace().find_map(|kv| kv.strip_prefix("target=")).map(|t| t.trim_matches(['\'', '"']).to_owned())
}

#[cfg(test)]
mod tests {
    use super::leading_target;

    #[test]
    fn reads_the_target_from_a_leading_comment() {
        assert_eq!(leading_target("/* pgsplit: target=data */ select 1").as_deref(), Some("data"));
        assert_eq!(leading_target("  /*pgsplit: target='primary'*/select 1").as_deref(), Some("primary"));
    }

    #[test]
    fn ignores_other_comments_and_later_hints() {
        assert_eq!(leading_target("/* app: x */ select 1"), None);
        assert_eq!(leading_target("select 1 /* pgsplit: target=data */"), None);
        assert_eq!(leading_target("/* pgsplit: target=data"), None);
    }
}
