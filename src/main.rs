//! The `pgsplit` command line: serve, check, route, mode, migrate, demo, certs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

/// pgsplit: one connection string, several PostgreSQL databases, routed by schema.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The routing configuration (for `serve`, the default command).
    #[arg(long, global = true, env = "PGSPLIT_CONFIG", default_value = "routing.yaml")]
    config: PathBuf,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Why a command failed; printed after `pgsplit: ` on exit 1.
#[derive(Debug, thiserror::Error)]
enum CliError {
    /// The configuration could not be read, parsed or validated.
    #[error(transparent)]
    Config(#[from] pgsplit::config::ConfigError),
    /// The configuration did not build an App.
    #[error(transparent)]
    App(#[from] pgsplit::app::AppError),
    /// The proxy's address (`listen`) could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The configured address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The health and metrics address (`http`) could not be bound.
    #[error("cannot listen on {addr} (http): {source}")]
    HttpListen {
        /// The configured address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// SIGTERM, SIGINT or SIGHUP cannot be watched.
    #[error("cannot watch signals: {0}")]
    Signals(std::io::Error),
    /// `check`, `route` or `mode` failed.
    #[error(transparent)]
    Check(#[from] pgsplit::check::CheckError),
    /// `demo` failed.
    #[error(transparent)]
    Demo(#[from] pgsplit::demo::DemoError),
    /// `certs` failed.
    #[error(transparent)]
    Certs(#[from] pgsplit::certs::CertError),
    /// `migrate` could not start (its files, a migration naming another target's schema).
    #[error(transparent)]
    Migrations(#[from] pgsplit::migrate::MigrateError),
    /// `migrate` ran and something failed, was skipped, is pending or changed (reported above).
    #[error("{0}")]
    Migrate(String),
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum MigrateAction {
    /// List each target's migrations: applied, pending, changed since applied, recorded without a file.
    Status,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Single,
    Split,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default).
    Serve,
    /// Validate the configuration and reach every target.
    Check,
    /// Print the routing decision for a statement as JSON.
    Route {
        /// Session search_path, comma-separated.
        #[arg(long, value_delimiter = ',')]
        search_path: Vec<String>,
        /// The SQL text.
        sql: String,
    },
    /// Start two throwaway PostgreSQL clusters and pgsplit in front of them.
    Demo {
        /// Where the clusters live.
        #[arg(long, default_value = ".pgsplit-demo")]
        dir: PathBuf,
        /// pgsplit's port.
        #[arg(long, default_value_t = 6432)]
        port: u16,
    },
    /// Switch the running instance's routing mode through its admin console (the rollback switch).
    Mode {
        /// single: everything to `single_target`; split: route by schema.
        #[arg(value_enum)]
        mode: ModeArg,
        /// Admin user (default: the first of `admin_users`); the password is PGPASSWORD or the user's in the file.
        #[arg(long)]
        user: Option<String>,
    },
    /// Apply DIR/<target>/NNN_name.sql to each target in order, once, recorded there (`migrate status`: list them).
    Migrate {
        /// `status` lists instead of applying.
        #[arg(value_enum)]
        action: Option<MigrateAction>,
        /// The migrations folder (one subfolder per target).
        #[arg(long, default_value = "migrations")]
        dir: PathBuf,
        /// Print what would run where, and run nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Only the migrations that run on this target.
        #[arg(long)]
        target: Option<String>,
    },
    /// Write a development CA and server certificate into DIR.
    Certs {
        /// Output folder.
        dir: PathBuf,
        /// Host names and addresses the server certificate is valid for.
        #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1,::1")]
        hosts: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let command = cli.command.unwrap_or(Command::Serve);
    // `serve` reads its configuration first: it says how many threads run the proxy (`workers`).
    let config = match command {
        Command::Serve => match pgsplit::config::load_file(&cli.config) {
            Ok(config) => Some(config),
            Err(e) => {
                eprintln!("pgsplit: {e}");
                return ExitCode::from(1);
            }
        },
        _ => None,
    };
    let runtime = match runtime(config.as_ref().map(|c| c.workers)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pgsplit: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match command {
            Command::Serve => serve(&cli.config, config).await,
            Command::Check => Ok(pgsplit::check::check(&cli.config).await?),
            Command::Route { search_path, sql } => Ok(pgsplit::check::route(&cli.config, &search_path, &sql).await?),
            Command::Mode { mode, user } => {
                let mode = match mode {
                    ModeArg::Single => pgsplit::config::Mode::Single,
                    ModeArg::Split => pgsplit::config::Mode::Split,
                };
                Ok(pgsplit::check::set_mode(&cli.config, mode, user).await?)
            }
            Command::Demo { dir, port } => Ok(pgsplit::demo::run(&dir, port).await?),
            Command::Migrate { action, dir, dry_run, json, target } => {
                migrate(&cli.config, action, &dir, &pgsplit::migrate::Options { dry_run, target }, json).await
            }
            Command::Certs { dir, hosts } => {
                let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
                match pgsplit::certs::write_dev_certs(&dir, &hosts) {
                    Ok(files) => {
                        println!(
                            "wrote {}, {}, {}, {}",
                            files.ca_cert.display(),
                            files.ca_key.display(),
                            files.server_cert.display(),
                            files.server_key.display()
                        );
                        Ok(())
                    }
                    Err(e) => Err(CliError::from(e)),
                }
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("pgsplit: {msg}");
            ExitCode::from(1)
        }
    }
}

/// The main runtime. For `serve`, the main thread alone (a current-thread runtime): it accepts, probes and serves
/// the HTTP endpoint, while sessions run on `workers` threads of their own, each its own event loop
/// (`pgsplit::worker`; `workers: 1` is one such thread). The other commands use one thread per core.
fn runtime(workers: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    match workers {
        Some(_) => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        None => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    }
}

/// Runs the proxy on `config`, read from `path` (read here when not read yet).
async fn serve(path: &std::path::Path, config: Option<pgsplit::config::Config>) -> Result<(), CliError> {
    let config = match config {
        Some(c) => c,
        None => pgsplit::config::load_file(path)?,
    };
    tracing::info!(workers = config.workers, "threads running the proxy");
    if let Some(mode) = pgsplit::config::readable_by_others(path) {
        tracing::warn!(file = %path.display(), mode = format!("{mode:o}"), "the configuration file is readable by group or others and may hold passwords: chmod 600 it");
    }
    let listen = config.listen.clone();
    let http = config.http.clone();
    let grace = config.shutdown_timeout;
    let app = Arc::new(pgsplit::App::build(config)?.with_source(path));
    let signals = pgsplit::service::Signals::watch().map_err(CliError::Signals)?;
    let (backlog, reuseport) = (app.config().limits.listen_backlog, app.config().limits.so_reuseport);
    let listener = pgsplit::net::bind(&listen, backlog, reuseport)
        .await
        .map_err(|source| CliError::Listen { addr: listen.clone(), source })?;
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or(listen);
    let shutdown = CancellationToken::new();
    // The operations endpoint outlives the proxy's shutdown: health stays visible while sessions drain.
    let http_stop = CancellationToken::new();
    if let Some(http) = http {
        let l =
            tokio::net::TcpListener::bind(&http).await.map_err(|source| CliError::HttpListen { addr: http.clone(), source })?;
        let http = l.local_addr().map(|a| a.to_string()).unwrap_or(http);
        tracing::info!(%http, "health and metrics at http://{http}/api/health and /metrics");
        tokio::spawn(pgsplit::http::serve(l, Arc::downgrade(&app), http_stop.clone()));
    }
    // Last of what can fail: a socket taken over from a running pgsplit (so_reuseport) must not be dropped (and its
    // file removed) because something after it failed.
    let mut listener = pgsplit::server::Listeners::from(listener);
    listener.add_unix(&app.config().limits).map_err(|(addr, source)| CliError::Listen { addr, source })?;
    let socket = listener.unix_name().unwrap_or_default().to_owned();
    tracing::info!(listen = %addr, unix_socket = %socket, "pgsplit listening");
    let now = CancellationToken::new();
    signals.spawn(Arc::downgrade(&app), addr.clone(), shutdown.clone(), now.clone());
    pgsplit::service::ready(&pgsplit::service::serving_status(&app, &addr));
    pgsplit::run_until(listener, app, shutdown, now, grace).await;
    http_stop.cancel();
    tracing::info!("pgsplit stopped");
    Ok(())
}

/// `pgsplit migrate [status]`: applies (or lists) the migrations under `dir`, printing one line per target and file,
/// or JSON. Fails (exit 1) when a target was skipped or failed, or when `status` finds something pending, changed
/// or unreadable.
async fn migrate(
    path: &std::path::Path,
    action: Option<MigrateAction>,
    dir: &std::path::Path,
    options: &pgsplit::migrate::Options,
    json: bool,
) -> Result<(), CliError> {
    let config = pgsplit::config::load_file(path)?;
    let troubled: Vec<String> = match action {
        None => {
            let runs = pgsplit::migrate::apply(&config, dir, options).await?;
            match json {
                true => println!("{}", serde_json::to_string_pretty(&runs).unwrap_or_default()),
                false => print_runs(&runs, options.dry_run),
            }
            runs.iter().filter(|r| r.error.is_some()).map(|r| r.target.clone()).collect()
        }
        Some(MigrateAction::Status) => {
            let targets = pgsplit::migrate::status(&config, dir, options).await?;
            match json {
                true => println!("{}", serde_json::to_string_pretty(&targets).unwrap_or_default()),
                false => print_status(&targets),
            }
            targets.iter().filter(|t| t.needs_attention()).map(|t| t.target.clone()).collect()
        }
    };
    let what = match action {
        None => "migrations not applied on",
        Some(MigrateAction::Status) => "pending, changed or unreadable migrations on",
    };
    match troubled.is_empty() {
        true => Ok(()),
        false => Err(CliError::Migrate(format!("{what}: {}", troubled.join(", ")))),
    }
}

/// `migrate`'s lines: each file applied (or that would be), each target's error, or that it had nothing to do.
fn print_runs(runs: &[pgsplit::migrate::TargetRun], dry_run: bool) {
    let verb = if dry_run { "would apply" } else { "applied" };
    for r in runs {
        for a in &r.applied {
            println!("{} ({}): {verb} {} ({} ms)", r.target, r.table, a.file, a.duration_ms);
        }
        match &r.error {
            Some(e) => println!("{} ({}): {e}", r.target, r.table),
            None if r.applied.is_empty() => println!("{} ({}): nothing to apply", r.target, r.table),
            None => {}
        }
    }
}

/// `migrate status`'s lines: per target, each migration's state and when it was applied.
fn print_status(targets: &[pgsplit::migrate::TargetStatus]) {
    for t in targets {
        println!("{} ({})", t.target, t.table);
        if let Some(e) = &t.error {
            println!("  {e}");
        }
        for m in &t.migrations {
            let at = m.applied_at.as_deref().map(|a| format!("  {a}")).unwrap_or_default();
            println!("  {:<8} {}{at}", m.state, m.file);
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal (never ANSI codes in a log file or the journal), and never under NO_COLOR.
    use std::io::IsTerminal;
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
