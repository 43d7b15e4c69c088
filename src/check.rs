//! `pgsplit check` (validate the configuration, reach every target) and `pgsplit route` (explain a decision).

use std::path::Path;

use crate::app::{target_spec, App};
use crate::backend::ServerConn;
use crate::router::{self, Analysis, SessionView};

/// Validates the file, builds TLS material, then connects to each target and runs `SELECT version()`.
/// Every problem is printed; the result is an error if any target failed.
pub async fn check(path: &Path) -> Result<(), String> {
    let config = crate::config::load_file(path).map_err(|e| e.to_string())?;
    let mut failed = Vec::new();
    for t in &config.targets {
        let outcome = async {
            let spec = target_spec(t).map_err(|e| e.to_string())?;
            let mut conn = ServerConn::connect(&spec).await.map_err(|e| e.to_string())?;
            let rows = conn.simple("select version()").await.map_err(|e| e.to_string())?;
            let version = rows.first().and_then(|r| r.first().cloned().flatten()).unwrap_or_default();
            Ok::<_, String>((version, conn.is_tls()))
        }
        .await;
        match outcome {
            Ok((version, tls)) => {
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
    if let Err(e) = App::build(config) {
        return Err(e.to_string());
    }
    if failed.is_empty() {
        println!("{}: configuration ok", path.display());
        Ok(())
    } else {
        Err(format!("cannot reach target(s): {}", failed.join(", ")))
    }
}

/// Prints `{"target", "relations", "reason"}` for a statement; a refused statement is an error (exit 1).
pub async fn route(path: &Path, search_path: &[String], sql: &str) -> Result<(), String> {
    let config = crate::config::load_file(path).map_err(|e| e.to_string())?;
    let app = App::build(config).map_err(|e| e.to_string())?;
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
        Err(e) => Err(e.to_string()),
    }
}

/// Whether the search_path names a routed schema (only then can an unqualified name need a catalog).
fn needs_catalog(app: &App, search_path: &[String]) -> bool {
    search_path.iter().any(|s| app.table().schemas.contains_key(s))
}

/// `pgsplit mode single|split`: switches the running instance's routing mode through its admin console (the
/// database `pgsplit` on `listen`), as an admin user: `user`, else the first of `admin_users`. The password is
/// `PGPASSWORD` when set, else that user's password in the file (when it is not a SCRAM verifier).
pub async fn set_mode(path: &Path, mode: crate::config::Mode, user: Option<String>) -> Result<(), String> {
    let config = crate::config::load_file(path).map_err(|e| e.to_string())?;
    let user =
        user.or_else(|| config.admin_users.first().cloned()).ok_or("no admin user: add one to admin_users, or pass --user")?;
    let password = std::env::var("PGPASSWORD").ok().or_else(|| {
        config.users.iter().find(|u| u.name == user).map(|u| u.password.clone()).filter(|p| !p.starts_with("SCRAM-SHA-256$"))
    });
    let (host, port) = match config.listen.rsplit_once(':') {
        Some((h, p)) => (h.trim_matches(['[', ']']), p.parse::<u16>().map_err(|e| format!("listen {}: {e}", config.listen))?),
        None => return Err(format!("listen {}: no port", config.listen)),
    };
    let host = if host == "0.0.0.0" || host.is_empty() { "127.0.0.1" } else { host };
    // Where the console speaks TLS, it is used, and the certificate must be the instance's own `tls.cert`: the
    // password is never sent to something else listening on that address.
    let tls = match (config.tls.mode, &config.tls.cert) {
        (crate::config::ClientTlsMode::Disabled, _) | (_, None) => None,
        (_, Some(cert)) => {
            let cert = crate::backend::tls::first_certificate(cert).map_err(|e| e.to_string())?;
            let c = crate::backend::tls::pinned_client_config(cert).map_err(|e| e.to_string())?;
            Some((c, crate::backend::tls::server_name(host).map_err(|e| e.to_string())?))
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
        tls,
        upstream_pooler: false,
    };
    let mut conn =
        ServerConn::connect(&spec).await.map_err(|e| format!("cannot reach the admin console at {host}:{port}: {e}"))?;
    conn.simple(&format!("SET mode = {}", mode.as_str())).await.map_err(|e| e.to_string())?;
    let rows = conn.simple("SHOW MODE").await.map_err(|e| e.to_string())?;
    let now = rows.first().and_then(|r| r.first().cloned().flatten()).unwrap_or_default();
    println!("mode: {now}");
    Ok(())
}
