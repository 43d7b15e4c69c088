//! `pgsplit demo`: two throwaway clusters (PRIMARY with TLS and SCRAM, DATA plain with md5), sample schemas, and
//! pgsplit in front of them, until Ctrl-C.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rand::distr::{Alphanumeric, SampleString};
use tokio_util::sync::CancellationToken;

use crate::cluster::{Cluster, ClusterError, ClusterSpec, ServerAuth};

/// The role pgsplit logs in to both clusters as.
const SERVER_ROLE: &str = "pgsplit";
/// The demo application user clients log in to pgsplit as.
const APP_USER: &str = "app";

/// PRIMARY's sample schema: logins and customers.
const PRIMARY_SQL: &str = "
create schema config authorization pgsplit;
create schema customer authorization pgsplit;
set role pgsplit;
create table config.users (id serial primary key, email text not null unique, name text not null);
create table config.sessions (token text primary key, user_id int not null references config.users, expires_at timestamptz not null);
create table customer.accounts (id serial primary key, name text not null, plan text not null default 'basic');
insert into config.users (email, name) values ('ada@example.com', 'Ada'), ('linus@example.com', 'Linus');
insert into customer.accounts (name, plan) values ('Acme', 'pro'), ('Globex', 'basic');
";

/// The session cache's triggers on PRIMARY's sessions (README, *Session cache*): every pgsplit instance hears which
/// session changed. Run as the superuser after `PRIMARY_SQL` (the function lives in `public`).
const PRIMARY_CACHE_SQL: &str = "
create trigger pgsplit_cache after insert or update or delete on config.sessions
  for each row execute function public.pgsplit_cache_notify('token');
create trigger pgsplit_cache_truncate after truncate on config.sessions
  for each statement execute function public.pgsplit_cache_notify();
";

/// DATA's sample schema: imports and reference data.
const DATA_SQL: &str = "
create schema workspace authorization pgsplit;
create schema reference authorization pgsplit;
set role pgsplit;
create table workspace.imports (id serial primary key, file_name text not null, row_count int not null, created_at timestamptz not null default now());
create table reference.countries (code text primary key, name text not null);
insert into workspace.imports (file_name, row_count) values ('orders-2024-12.csv', 1200), ('returns.csv', 87);
insert into reference.countries values ('DE', 'Germany'), ('FR', 'France'), ('JP', 'Japan');
";

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A cluster could not be created or set up.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The demo's configuration file could not be written.
    #[error("{path}: {source}")]
    WriteConfig {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The written configuration did not load (a bug in `config_yaml`).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The configuration did not build an App.
    #[error(transparent)]
    App(#[from] crate::app::AppError),
    /// pgsplit's port is taken.
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Listen {
        /// The port asked for.
        port: u16,
        /// Why.
        source: std::io::Error,
    },
    /// No port at all for health and metrics.
    #[error("cannot listen (http): {0}")]
    HttpListen(std::io::Error),
}

/// Creates the clusters and the sample data, writes `DIR/routing.yaml`, runs pgsplit on `port` until Ctrl-C.
pub async fn run(dir: &Path, port: u16) -> Result<(), DemoError> {
    let (primary, data, app_password) = set_up(dir).await?;
    let yaml = config_yaml(dir, &primary, &data, port, &app_password);
    let config_path = dir.join("routing.yaml");
    crate::config::write_private(&config_path, yaml.as_bytes())
        .map_err(|source| DemoError::WriteConfig { path: config_path.display().to_string(), source })?;
    let config = crate::config::load_file(&config_path)?;
    let app = Arc::new(crate::App::build(config)?.with_source(&config_path));
    let listener =
        tokio::net::TcpListener::bind(("127.0.0.1", port)).await.map_err(|source| DemoError::Listen { port, source })?;
    let dsn = format!("postgresql://{APP_USER}:{app_password}@127.0.0.1:{port}/handled");
    let admin = format!("postgresql://admin:{app_password}@127.0.0.1:{port}/pgsplit");
    // Health and metrics beside the proxy (9930 for the default 6432), or on any free port if that one is taken.
    let http = match tokio::net::TcpListener::bind(("127.0.0.1", port.wrapping_add(3498))).await {
        Ok(l) => l,
        Err(_) => tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(DemoError::HttpListen)?,
    };
    let health = http.local_addr().map(|a| format!("http://{a}/api/health")).unwrap_or_default();
    let mut listener = crate::server::Listeners::from(listener);
    let socket = match listener.add_unix(&app.config().limits) {
        Ok(()) => listener
            .unix_name()
            .map(|name| format!("  socket:  {name} (psql -h {})\n", name.rsplit_once('/').map_or(name, |(dir, _)| dir))),
        Err((name, e)) => Some(format!("  socket:  none: {name}: {e}\n")),
    };
    let http_stop = CancellationToken::new();
    tokio::spawn(crate::http::serve(http, Arc::downgrade(&app), http_stop.clone()));
    println!(
        "\npgsplit demo is running.\n\n  DSN:     {dsn}\n  admin:   {admin} (SHOW POOLS, SET mode = single, ...)\n{}  health:  {health} (metrics: /metrics)\n  config:  {}\n  PRIMARY: 127.0.0.1:{} (TLS, SCRAM; schemas config, customer)\n  DATA:    127.0.0.1:{} (plain, md5; schemas workspace, reference)\n\nTry:\n  psql '{dsn}'\n    select * from config.users;                      -- runs on PRIMARY\n    select * from workspace.imports;                 -- runs on DATA\n    select inet_server_port();                       -- no routed schema: default target (PRIMARY)\n    select * from config.users u join workspace.imports i on true;  -- refused: 0A000\n    select user_id from config.sessions where token = 'x';  -- twice: the second from the session cache (SHOW CACHE)\n\nCtrl-C stops pgsplit and removes both clusters.\n",
        socket.unwrap_or_default(),
        config_path.display(),
        primary.port(),
        data.port()
    );
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    crate::run(listener, app, shutdown, Duration::from_secs(5)).await;
    http_stop.cancel();
    println!("stopping clusters");
    drop(primary);
    drop(data);
    Ok(())
}

/// Both clusters with roles, databases and sample data; returns them and the app user's password.
pub async fn set_up(dir: &Path) -> Result<(Cluster, Cluster, String), crate::cluster::ClusterError> {
    std::fs::create_dir_all(dir).map_err(|e| crate::cluster::ClusterError::Io(dir.display().to_string(), e))?;
    let password = || Alphanumeric.sample_string(&mut rand::rng(), 16);
    let server_password = password();
    let primary = Cluster::create(
        dir,
        ClusterSpec { name: "primary".into(), tls: true, auth: ServerAuth::Scram, superuser_password: password() },
    )
    .await?;
    let data = Cluster::create(
        dir,
        ClusterSpec { name: "data".into(), tls: false, auth: ServerAuth::Md5, superuser_password: password() },
    )
    .await?;
    for (cluster, db, sql) in [(&primary, "handled_primary", PRIMARY_SQL), (&data, "handled_data", DATA_SQL)] {
        cluster.create_role(SERVER_ROLE, &server_password).await?;
        cluster.create_database(db, SERVER_ROLE).await?;
        cluster.psql(db, sql).await?;
    }
    primary.psql("handled_primary", include_str!("../docs/session-cache-notify.sql")).await?;
    primary.psql("handled_primary", PRIMARY_CACHE_SQL).await?;
    crate::config::write_private(&dir.join("server-password"), server_password.as_bytes())
        .map_err(|e| crate::cluster::ClusterError::Io(dir.display().to_string(), e))?;
    Ok((primary, data, password()))
}

fn config_yaml(dir: &Path, primary: &Cluster, data: &Cluster, port: u16, app_password: &str) -> String {
    let server_password = std::fs::read_to_string(dir.join("server-password")).unwrap_or_default();
    let ca = primary.ca_cert().map(|p| p.display().to_string()).unwrap_or_default();
    format!(
        "# Written by `pgsplit demo`; the clusters it names are removed when the demo stops.
listen: 127.0.0.1:{port}
tls: {{ mode: disabled }}
mode: split
database: handled
default_target: primary
single_target: primary
targets:
  primary:
    url: postgresql://{SERVER_ROLE}:{server_password}@localhost:{pport}/handled_primary
    tls: {{ mode: verify-full, ca: \"{ca}\" }}
    pool: {{ max: 15, min: 0, checkout_timeout: 5s, idle_timeout: 10m }}
    schemas: [config, customer]
  data:
    url: postgresql://{SERVER_ROLE}:{server_password}@127.0.0.1:{dport}/handled_data
    pool: {{ max: 100 }}
    schemas: [workspace, reference]
users:
  - {{ name: {APP_USER}, password: \"{app_password}\" }}
  - {{ name: admin, password: \"{app_password}\" }}
admin_users: [admin]
cache:
  tables:
    - {{ name: config.sessions, ttl: 30s, key: token }}
",
        pport = primary.port(),
        dport = data.port(),
    )
}
