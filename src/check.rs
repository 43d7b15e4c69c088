//! `pgsplit check` (validate the configuration, reach every target) and `pgsplit route` (explain a decision).

use std::path::Path;

use crate::app::{target_spec, App, AppError};
use crate::backend::tls::TlsConfigError;
use crate::backend::{BackendError, ServerConn};
use crate::config::ConfigError;
use crate::router::{self, Analysis, RouteError, SessionView};

/// Why `check`, `route` or `set_mode` failed; printed after `pgsplit: ` on exit 1.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The configuration could not be read, parsed or validated.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The configuration's TLS files or users are unusable.
    #[error(transparent)]
    App(#[from] AppError),
    /// Talking to a target or to the admin console failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Routed schemas missing on their target or present on another (each printed).
    #[error("{0} schema problem(s) found")]
    Schemas(usize),
    /// Some targets did not answer `SELECT version()`.
    #[error("cannot reach target(s): {}", .0.join(", "))]
    Unreachable(Vec<String>),
    /// The statement would be refused.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// `mode` has no user to log in to the console as.
    #[error("no admin user: add one to admin_users, or pass --user")]
    NoAdminUser,
    /// `listen` has a port that is not a number.
    #[error("listen {listen}: {source}")]
    ListenPort {
        /// The configured address.
        listen: String,
        /// Why its port does not parse.
        source: std::num::ParseIntError,
    },
    /// `listen` has no port.
    #[error("listen {0}: no port")]
    NoListenPort(String),
    /// The console's own certificate could not be pinned.
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
    /// The admin console did not accept the connection.
    #[error("cannot reach the admin console at {host}:{port}: {source}")]
    Console {
        /// Host tried.
        host: String,
        /// Port tried.
        port: u16,
        /// Why it failed.
        source: BackendError,
    },
}

/// Validates the file, builds TLS material, then connects to each target, runs `SELECT version()` and reads its
/// schemas: a routed schema missing on its target, or present on another too (its tables there unreachable through
/// pgsplit), fails the check. Every problem is printed; the result is an error if any was found.
pub async fn check(path: &Path) -> Result<(), CheckError> {
    let config = crate::config::load_file(path)?;
    let mut failed = Vec::new();
    let mut found: Vec<(String, Vec<String>)> = Vec::new();
    for t in &config.targets {
        let outcome = async {
            let spec = target_spec(t)?;
            let mut conn = ServerConn::connect(&spec).await?;
            let rows = conn.simple("select version()").await?;
            let version = rows.first().and_then(|r| r.first().cloned().flatten()).unwrap_or_default();
            let schemas = conn.simple("select nspname from pg_catalog.pg_namespace").await?;
            let schemas: Vec<String> = schemas.into_iter().filter_map(|r| r.into_iter().next().flatten()).collect();
            Ok::<_, CheckError>((version, conn.is_tls(), schemas))
        }
        .await;
        match outcome {
            Ok((version, tls, schemas)) => {
                found.push((t.name.clone(), schemas));
                let short = version.split(" on ").next().unwrap_or(&version).to_owned();
                println!(
                    "{}: ok ({short}, {}, schemas: {})",
                    t.name,
                    if tls { "TLS" } else { "plain TCP" },
                    t.schemas.join(", ")
                );
            }
            Err(e) => {
                println!("{}: FAILED: {e}", t.name);
                failed.push(t.name.clone());
            }
        }
    }
    let misplaced = misplaced_schemas(&config, &found);
    for problem in &misplaced {
        println!("{problem}");
    }
    App::build(config)?;
    if !misplaced.is_empty() {
        return Err(CheckError::Schemas(misplaced.len()));
    }
    if failed.is_empty() {
        println!("{}: configuration ok", path.display());
        Ok(())
    } else {
        Err(CheckError::Unreachable(failed))
    }
}

/// What the targets reached (`found`: each one's schemas) say against the routing: in split mode each routed schema
/// must exist on its target and on no other; in single mode every routed schema must exist on `single_target`.
fn misplaced_schemas(config: &crate::config::Config, found: &[(String, Vec<String>)]) -> Vec<String> {
    let has = |target: &str, schema: &str| found.iter().any(|(t, s)| t == target && s.iter().any(|x| x == schema));
    let reached = |target: &str| found.iter().any(|(t, _)| t == target);
    let mut problems = Vec::new();
    for t in &config.targets {
        for schema in &t.schemas {
            match config.mode {
                crate::config::Mode::Split => {
                    if reached(&t.name) && !has(&t.name, schema) {
                        problems.push(format!("{}: schema {schema} is routed here but does not exist", t.name));
                    }
                    for (other, _) in found.iter().filter(|(o, _)| *o != t.name && has(o, schema)) {
                        problems.push(format!(
                            "{other}: schema {schema} exists here too, but is routed to {}: its tables here are unreachable through pgsplit",
                            t.name
                        ));
                    }
                }
                crate::config::Mode::Single => {
                    let single = config.single_target.as_str();
                    if reached(single) && !has(single, schema) {
                        problems.push(format!("{single}: schema {schema} does not exist, and single mode sends it here"));
                    }
                }
            }
        }
    }
    problems
}

/// Prints `{"target", "relations", "reason"}` for a statement; a refused statement is an error (exit 1).
pub async fn route(path: &Path, search_path: &[String], sql: &str) -> Result<(), CheckError> {
    let config = crate::config::load_file(path)?;
    let app = App::build(config)?;
    // Offline works: unqualified names that need a target's catalog are resolved only when that target answers.
    if needs_catalog(&app, search_path) {
        app.refresh_catalogs().await;
    }
    let table = app.table();
    let analysis = Analysis::of(sql);
    let view = SessionView { search_path, target_hint: None };
    match router::decide(&table, &app.catalog(), &analysis, &view) {
        Ok(d) => {
            let relations: Vec<serde_json::Value> = router::routed_relations(&table, &app.catalog(), &analysis, &view)
                .iter()
                .map(|(r, t)| serde_json::json!({ "relation": r, "target": table.name(*t) }))
                .collect();
            let out = serde_json::json!({ "target": table.name(d.target), "relations": relations, "reason": d.reason.as_str() });
            println!("{out}");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether the search_path names a routed schema (only then can an unqualified name need a catalog).
fn needs_catalog(app: &App, search_path: &[String]) -> bool {
    search_path.iter().any(|s| app.table().schemas.contains_key(s))
}

/// `pgsplit mode single|split`: switches the running instance's routing mode through its admin console (the
/// database `pgsplit` on `listen`), as an admin user: `user`, else the first of `admin_users`. The password is
/// `PGPASSWORD` when set, else that user's password in the file (when it is not a SCRAM verifier).
pub async fn set_mode(path: &Path, mode: crate::config::Mode, user: Option<String>) -> Result<(), CheckError> {
    let config = crate::config::load_file(path)?;
    let user = user.or_else(|| config.admin_users.first().cloned()).ok_or(CheckError::NoAdminUser)?;
    let password = std::env::var("PGPASSWORD").ok().or_else(|| {
        config.users.iter().find(|u| u.name == user).map(|u| u.password.clone()).filter(|p| !p.starts_with("SCRAM-SHA-256$"))
    });
    let (host, port) = match config.listen.rsplit_once(':') {
        Some((h, p)) => {
            let port = p.parse::<u16>().map_err(|source| CheckError::ListenPort { listen: config.listen.clone(), source })?;
            (h.trim_matches(['[', ']']), port)
        }
        None => return Err(CheckError::NoListenPort(config.listen.clone())),
    };
    let host = if host == "0.0.0.0" || host.is_empty() { "127.0.0.1" } else { host };
    // Where the console speaks TLS, it is used, and the certificate must be the instance's own `tls.cert`: the
    // password is never sent to something else listening on that address.
    let tls = match (config.tls.mode, &config.tls.cert) {
        (crate::config::ClientTlsMode::Disabled, _) | (_, None) => None,
        (_, Some(cert)) => {
            let cert = crate::backend::tls::first_certificate(cert)?;
            let c = crate::backend::tls::pinned_client_config(cert)?;
            Some((c, crate::backend::tls::server_name(host)?))
        }
    };
    let spec = crate::backend::TargetSpec {
        name: "pgsplit admin console".into(),
        host: host.to_owned(),
        port,
        user,
        password,
        dbname: crate::session::ADMIN_DATABASE.into(),
        verified: tls.is_some(),
        tls_required: true,
        tls,
        upstream_pooler: false,
        servers: Default::default(),
    };
    let mut conn =
        ServerConn::connect(&spec).await.map_err(|source| CheckError::Console { host: host.to_owned(), port, source })?;
    conn.simple(&format!("SET mode = {}", mode.as_str())).await?;
    let rows = conn.simple("SHOW MODE").await?;
    let now = rows.first().and_then(|r| r.first().cloned().flatten()).unwrap_or_default();
    println!("mode: {now}");
    Ok(())
}
