//! The admin console (SPEC §6): the database `pgsplit`, for `admin_users`, over the simple query protocol.
//!
//! `SHOW POOLS | CLIENTS | SERVERS | STATS | ROUTES | CONFIG | MODE`, `RELOAD`, `PAUSE [target]`,
//! `RESUME [target]`, `SET mode = single | split`. Several commands may share one Query, separated by `;`.

use std::time::Duration;

use crate::config::Mode;
use crate::metrics::TargetSnapshot;
use crate::protocol::encode::{self, PgError};
use crate::protocol::{codes, decode, STATUS_IDLE};

use super::Session;
use super::SessionError;

/// How long PAUSE waits for the target's server connections in use to come back.
const PAUSE_WAIT: Duration = Duration::from_secs(30);

/// SQLSTATE for a configuration file that cannot be applied (config_file_error).
const CONFIG_FILE_ERROR: &str = "F0000";

/// SQLSTATE for an admin command pgsplit does not know (syntax_error).
const SYNTAX_ERROR: &str = "42601";

/// A result set: column names and text rows.
struct Table {
    columns: &'static [&'static str],
    rows: Vec<Vec<String>>,
}

/// What one admin command answers.
enum Answer {
    /// Rows, then CommandComplete `SHOW`.
    Rows(Table),
    /// CommandComplete with this tag only.
    Done(&'static str),
}

impl Session {
    /// Serves an admin console session until the client leaves.
    pub(super) async fn run_admin(&mut self) -> Result<(), SessionError> {
        let mut skipping = false;
        loop {
            // Ends with FATAL 57P01 when pgsplit shuts down, like any session at rest.
            let Some(frame) = self.next_frame_or_drain().await? else { return Ok(()) };
            match frame.tag {
                b'Q' => {
                    let sql = decode::query(frame.body()).map_err(|e| {
                        SessionError::Fatal(PgError::fatal(codes::PROTOCOL_VIOLATION, format!("invalid Query message: {e}")))
                    })?;
                    let sql = sql.to_owned();
                    self.admin_query(&sql).await;
                }
                b'X' => return Ok(()),
                b'S' => {
                    skipping = false;
                    encode::ready_for_query(&mut self.client.wbuf, STATUS_IDLE);
                }
                b'P' | b'B' | b'D' | b'E' | b'C' | b'H' => {
                    if !skipping {
                        skipping = true;
                        PgError::error(codes::FEATURE_NOT_SUPPORTED, "the admin console speaks the simple query protocol only")
                            .encode(&mut self.client.wbuf);
                    }
                }
                b'd' | b'c' | b'f' => {}
                other => return Err(SessionError::unexpected_message(other)),
            }
            self.client.flush().await?;
        }
    }

    /// Runs each `;`-separated command of a Query; the first error ends the Query, as in PostgreSQL.
    async fn admin_query(&mut self, sql: &str) {
        let commands: Vec<&str> = sql.split(';').map(str::trim).filter(|c| !c.is_empty()).collect();
        if commands.is_empty() {
            encode::empty_query(&mut self.client.wbuf);
        }
        for command in commands {
            match self.admin_command(command).await {
                Ok(Answer::Rows(t)) => {
                    encode::row_description(&mut self.client.wbuf, t.columns);
                    for row in &t.rows {
                        let values: Vec<Option<&str>> = row.iter().map(|v| Some(v.as_str())).collect();
                        encode::data_row(&mut self.client.wbuf, &values);
                    }
                    encode::command_complete(&mut self.client.wbuf, "SHOW");
                }
                Ok(Answer::Done(tag)) => encode::command_complete(&mut self.client.wbuf, tag),
                Err(e) => {
                    tracing::info!(user = %self.user, command, error = %e, "admin command refused");
                    e.encode(&mut self.client.wbuf);
                    break;
                }
            }
        }
        encode::ready_for_query(&mut self.client.wbuf, STATUS_IDLE);
    }

    async fn admin_command(&mut self, command: &str) -> Result<Answer, PgError> {
        let lower = command.to_ascii_lowercase();
        let words: Vec<&str> = lower.split_whitespace().collect();
        match words.as_slice() {
            ["show", what] => self.show(what).map(Answer::Rows),
            ["reload"] => {
                tracing::info!(user = %self.user, "RELOAD from the admin console");
                match self.app.reload().await {
                    Ok(_) => Ok(Answer::Done("RELOAD")),
                    Err(e) => {
                        tracing::error!(error = %e, "configuration not reloaded; the running configuration stays");
                        Err(PgError::error(CONFIG_FILE_ERROR, format!("configuration not reloaded: {e}"))
                            .with_hint("the running configuration stays in force"))
                    }
                }
            }
            ["pause", rest @ ..] => {
                let targets = self.admin_targets(rest)?;
                for &t in &targets {
                    self.app.backend(t).set_paused(true);
                }
                tracing::warn!(user = %self.user, targets = ?names(self, &targets), "PAUSE: new transactions wait");
                // Transactions running on the targets finish; PAUSE answers when they have (or after PAUSE_WAIT).
                let deadline = tokio::time::Instant::now() + PAUSE_WAIT;
                while targets.iter().any(|&t| self.app.backend(t).in_use() > 0) && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let busy: u32 = targets.iter().map(|&t| self.app.backend(t).in_use()).sum();
                if busy > 0 {
                    tracing::warn!(connections = busy, "PAUSE: connections still in use after 30 s (pinned sessions or long transactions); new transactions wait");
                }
                Ok(Answer::Done("PAUSE"))
            }
            ["resume", rest @ ..] => {
                let targets = self.admin_targets(rest)?;
                for &t in &targets {
                    self.app.backend(t).set_paused(false);
                }
                tracing::info!(user = %self.user, targets = ?names(self, &targets), "RESUME");
                Ok(Answer::Done("RESUME"))
            }
            ["set", "mode", rest @ ..] => {
                let value = match rest {
                    ["=" | "to", v] => *v,
                    [v] => v.strip_prefix('=').unwrap_or(v),
                    _ => "",
                };
                let mode = match value.trim_matches('\'') {
                    "single" => Mode::Single,
                    "split" => Mode::Split,
                    other => {
                        return Err(PgError::error(
                            codes::INVALID_PARAMETER_VALUE,
                            format!("invalid value for mode: \"{other}\""),
                        )
                        .with_hint("SET mode = single | split"))
                    }
                };
                tracing::warn!(user = %self.user, mode = mode.as_str(), "SET mode from the admin console");
                self.app.set_mode(mode);
                Ok(Answer::Done("SET"))
            }
            _ => Err(PgError::error(SYNTAX_ERROR, format!("unknown admin command: {command}")).with_hint(
                "SHOW POOLS|CLIENTS|SERVERS|STATS|ROUTES|CONFIG|MODE, RELOAD, PAUSE [target], RESUME [target], SET mode = single|split",
            )),
        }
    }

    /// The targets a PAUSE or RESUME names: all of them when none is named.
    fn admin_targets(&self, words: &[&str]) -> Result<Vec<usize>, PgError> {
        let table = self.app.table();
        match words {
            [] => Ok((0..table.targets.len()).collect()),
            [name] => {
                let name = name.trim_matches('"');
                table.target_id(name).map(|t| vec![t]).ok_or_else(|| {
                    PgError::error(codes::INVALID_PARAMETER_VALUE, format!("unknown target \"{name}\""))
                        .with_hint(format!("targets: {}", table.targets.join(", ")))
                })
            }
            _ => Err(PgError::error(SYNTAX_ERROR, "PAUSE and RESUME take at most one target")),
        }
    }

    fn show(&self, what: &str) -> Result<Table, PgError> {
        let app = &self.app;
        let table = app.table();
        let targets = || app.backends().iter().enumerate();
        let t = match what {
            "pools" => Table {
                columns: &["target", "max", "connections", "idle", "in_use", "waiting", "up", "paused"],
                rows: targets()
                    .map(|(_, b)| {
                        let (connections, idle) = b.pool_state();
                        let s = TargetSnapshot::of(b.name(), &b.stats);
                        vec![
                            b.name().to_owned(),
                            b.max().to_string(),
                            connections.to_string(),
                            idle.to_string(),
                            b.in_use().to_string(),
                            s.waiting.to_string(),
                            b.is_up().to_string(),
                            b.is_paused().to_string(),
                        ]
                    })
                    .collect(),
            },
            "servers" => {
                let config = app.config();
                Table {
                    columns: &["target", "host", "port", "database", "user", "tls", "upstream", "connections", "up"],
                    rows: targets()
                        .zip(&config.targets)
                        .map(|((_, b), t)| {
                            vec![
                                b.name().to_owned(),
                                t.server.host.clone(),
                                t.server.port.to_string(),
                                t.server.dbname.clone(),
                                t.server.user.clone(),
                                format!("{:?}", t.tls.mode).to_lowercase(),
                                format!("{:?}", t.upstream).to_lowercase(),
                                b.pool_state().0.to_string(),
                                b.is_up().to_string(),
                            ]
                        })
                        .collect(),
                }
            }
            "clients" => Table {
                columns: &["pid", "user", "database", "peer", "tls", "connected_since", "running_on"],
                rows: app
                    .cancels()
                    .all()
                    .into_iter()
                    .filter_map(|(pid, slot)| {
                        let info = slot.info.get()?;
                        let running = match slot.running.try_lock() {
                            Ok(r) => r.map(|r| table.name(r.target).to_owned()).unwrap_or_default(),
                            Err(_) => "(cancel in progress)".to_owned(),
                        };
                        Some(vec![
                            pid.to_string(),
                            info.user.clone(),
                            info.database.clone(),
                            info.peer.clone(),
                            info.tls.to_string(),
                            crate::http::health::rfc3339(info.since),
                            running,
                        ])
                    })
                    .collect(),
            },
            "stats" => {
                let cache = app.cache().stats();
                let mut rows: Vec<Vec<String>> = targets()
                    .map(|(_, b)| {
                        let s = TargetSnapshot::of(b.name(), &b.stats);
                        let failures: u64 = s.checkout_failures.iter().sum();
                        let routed: u64 = s.routed.iter().sum();
                        vec![
                            b.name().to_owned(),
                            s.queries.to_string(),
                            s.errors.to_string(),
                            routed.to_string(),
                            failures.to_string(),
                        ]
                    })
                    .collect();
                let pinned = app.pinned_sessions().load(std::sync::atomic::Ordering::Relaxed);
                rows.push(vec!["(pinned sessions)".into(), pinned.to_string(), String::new(), String::new(), String::new()]);
                rows.push(vec![
                    "(route cache)".into(),
                    format!("{} hits", cache.hits),
                    format!("{} misses", cache.misses),
                    format!("{} entries", cache.entries),
                    format!("{} bytes", cache.bytes),
                ]);
                Table { columns: &["target", "queries", "errors", "routed", "checkout_failures"], rows }
            }
            "routes" => {
                let mut rows: Vec<Vec<String>> =
                    table.schemas.iter().map(|(schema, t)| vec![schema.clone(), table.name(*t).to_owned()]).collect();
                rows.sort();
                rows.push(vec!["(default)".into(), table.name(table.default_target).to_owned()]);
                rows.push(vec!["(single mode)".into(), table.name(app.single_target()).to_owned()]);
                Table { columns: &["schema", "target"], rows }
            }
            "config" => Table { columns: &["key", "value"], rows: config_rows(app) },
            "mode" => Table { columns: &["mode"], rows: vec![vec![app.mode().as_str().to_owned()]] },
            other => {
                return Err(PgError::error(SYNTAX_ERROR, format!("unknown SHOW item: {other}"))
                    .with_hint("SHOW POOLS|CLIENTS|SERVERS|STATS|ROUTES|CONFIG|MODE"))
            }
        };
        Ok(t)
    }
}

fn names(session: &Session, targets: &[usize]) -> Vec<String> {
    let table = session.app.table();
    targets.iter().map(|&t| table.name(t).to_owned()).collect()
}

/// SHOW CONFIG: the configuration in force, secrets redacted (passwords never appear).
fn config_rows(app: &crate::App) -> Vec<Vec<String>> {
    let c = app.config();
    let mut rows = vec![
        ("listen".to_owned(), c.listen.clone()),
        ("http".into(), c.http.clone().unwrap_or_default()),
        ("mode".into(), app.mode().as_str().to_owned()),
        ("mode (file)".into(), c.mode.as_str().to_owned()),
        ("database".into(), c.database.clone()),
        ("default_target".into(), c.default_target.clone()),
        ("single_target".into(), c.single_target.clone()),
        ("tls.mode".into(), format!("{:?}", c.tls.mode).to_lowercase()),
    ];
    for t in &c.targets {
        let a = &t.server;
        let secret = if a.password.is_some() { ":********" } else { "" };
        let p = |k: &str| format!("targets.{}.{k}", t.name);
        rows.push((p("url"), format!("postgresql://{}{secret}@{}:{}/{}", a.user, a.host, a.port, a.dbname)));
        rows.push((p("tls"), format!("{:?}", t.tls.mode).to_lowercase()));
        rows.push((p("upstream"), format!("{:?}", t.upstream).to_lowercase()));
        rows.push((p("schemas"), t.schemas.join(", ")));
        rows.push((p("pool.max"), t.pool.max.to_string()));
        rows.push((p("pool.min"), t.pool.min.to_string()));
        rows.push((p("pool.checkout_timeout"), format!("{:?}", t.pool.checkout_timeout)));
        rows.push((p("alert_connections"), t.alert_connections.map(|a| a.to_string()).unwrap_or_default()));
    }
    rows.push(("users".into(), c.users.iter().map(|u| u.name.as_str()).collect::<Vec<_>>().join(", ")));
    rows.push(("admin_users".into(), c.admin_users.join(", ")));
    rows.push(("route_cache_bytes".into(), c.route_cache_bytes.to_string()));
    rows.push(("catalog_refresh".into(), format!("{:?}", c.catalog_refresh)));
    rows.push(("shutdown_timeout".into(), format!("{:?}", c.shutdown_timeout)));
    rows.push(("client_login_timeout".into(), format!("{:?}", c.client_login_timeout)));
    rows.push(("client_first_packet_timeout".into(), format!("{:?}", c.client_first_packet_timeout)));
    rows.push(("max_client_conn".into(), c.max_client_conn.to_string()));
    rows.push(("max_login_conn".into(), c.max_login_conn.to_string()));
    rows.into_iter().map(|(k, v)| vec![k, v]).collect()
}
