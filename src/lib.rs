//! pgsplit: a PostgreSQL wire-protocol proxy that splits one logical database across several by schema.
//!
//! The data path, in the direction the bytes flow:
//!
//! ```text
//! client socket ─► server (accept, limit, shutdown) ─► session (startup, auth; session::machine decides)
//!                                                         │ asks session::route, which asks
//!                                                         ▼
//!                                       router (pure: SQL + session view → target)
//!                                                         │
//!                 backend pool ─► backend::relay (the exchange) ─► server connection ─► PostgreSQL
//! ```
//!
//! `protocol` frames and builds messages without I/O; `auth` verifies clients; `config` loads `routing.yaml`;
//! `app` holds what sessions share; `admin` runs the admin console's commands over it. `cluster`, `certs` and `demo`
//! are the commands that are not the proxy.

pub mod admin;
pub mod app;
pub mod auth;
pub mod backend;
pub mod cache;
pub mod cancel;
pub mod catalog;
pub mod certs;
pub mod check;
pub mod client;
pub mod cluster;
pub mod config;
pub mod demo;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod locks;
pub mod metrics;
pub mod migrate;
pub mod net;
pub mod protocol;
pub mod quote;
pub mod router;
pub mod server;
pub mod service;
pub mod session;
pub mod stream;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use app::App;

/// Runs the proxy on `listener` (a `TcpListener`, or `server::Listeners` with a Unix-domain socket too) until
/// `shutdown` fires, then stops accepting, ends idle sessions, and waits up to `grace` for sessions in a transaction
/// to end; the sessions still open then are closed.
pub async fn run(listener: impl Into<server::Listeners>, app: Arc<App>, shutdown: CancellationToken, grace: Duration) {
    run_until(listener, app, shutdown, CancellationToken::new(), grace).await
}

/// `run`, where `now` cuts the wait for open transactions short (a second SIGTERM): the sessions still open are
/// closed at once.
pub async fn run_until(
    listener: impl Into<server::Listeners>,
    app: Arc<App>,
    shutdown: CancellationToken,
    now: CancellationToken,
    grace: Duration,
) {
    // Unqualified names resolve through the catalog: read it before the first client, then keep it fresh.
    app.first_catalogs().await;
    app.serve_until(shutdown.clone());
    let refresher = tokio::spawn(background(app.clone(), shutdown.clone()));
    let mut cache_tasks = cache::listen::start(&app);
    if app.mode_store().is_some() {
        cache_tasks.push(tokio::spawn(app::mode_store::follow(Arc::downgrade(&app))));
        // The fleet's mode before the first client, when the store answers in time.
        if !app.stored_mode_seen(app::mode_store::FIRST_READ).await {
            tracing::warn!(mode = app.mode().as_str(), "mode store not read yet: serving in the file's mode until it is");
        }
    }
    let mut sessions = server::Sessions::default();
    let workers = match worker::Workers::start(app.config().workers) {
        Ok(w) => w,
        Err(e) => {
            // Sessions then run on this runtime.
            tracing::error!(error = %e, "cannot start the worker threads: sessions run on the main thread");
            worker::Workers::none()
        }
    };
    server::run(listener.into(), app.clone(), shutdown, &mut sessions, &workers).await;
    // The listener is closed: new connections are refused. Idle sessions end now, the others with their transaction.
    app.start_draining();
    refresher.abort();
    let _ = refresher.await;
    for t in cache_tasks {
        t.abort();
    }
    tracing::info!(sessions = app.metrics().clients(), ?grace, "shutting down: waiting for open transactions");
    let ended = tokio::select! {
        ended = sessions.ended_within(grace) => ended,
        _ = now.cancelled() => false,
    };
    if !ended {
        tracing::warn!(sessions = app.metrics().clients(), "shutdown timeout reached: closing the sessions still open");
        sessions.close_the_rest(&workers).await;
    }
    // No session holds the App any more: dropping the last Arc drops the pools, closing their server connections.
    drop(workers);
}

/// Until shutdown: probes the targets every `health_interval` (health, and a catalog for a target that came back)
/// and re-reads every catalog each `catalog_refresh` period.
async fn background(app: Arc<App>, shutdown: CancellationToken) {
    let mut catalogs = tokio::time::interval(app.catalog_refresh());
    catalogs.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    catalogs.tick().await;
    let mut probes = tokio::time::interval(app.config().health_interval);
    probes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    probes.tick().await;
    let period = app.config().stats_period;
    let mut stats = tokio::time::interval(period);
    stats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    stats.tick().await;
    let mut queries = tokio::time::interval(app::timeouts::WATCH_PERIOD);
    queries.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watch = app::timeouts::QueryWatch::default();
    app.open_min_connections().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = catalogs.tick() => app.refresh_catalogs().await,
            _ = probes.tick() => app.probe_targets().await,
            _ = stats.tick() => app.roll_stats(period),
            _ = queries.tick() => app.watch_queries(&mut watch),
        }
    }
}
