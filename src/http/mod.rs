//! The operations endpoint on the `http:` address: `GET /api/health` and `GET /metrics` (SPEC §6).
//!
//! Served with hyper's HTTP/1 server directly: two fixed GET routes need no router framework. Handlers read only
//! state that is already there (probe results, atomics, pool states), so they answer at once even while a target
//! hangs. The server holds the App weakly, so it never keeps a shutdown waiting.

pub mod health;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::config::Mode;

/// Most HTTP connections served at once. Past it a new connection closes the oldest one (gracefully: a request in
/// flight is answered first), so idle keep-alive connections can never keep a health check out.
const MAX_CONNECTIONS: usize = 64;

/// How long a new connection waits for the slot of the connection it closed.
const EVICTION_WAIT: Duration = Duration::from_secs(1);

/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The connections being served, oldest first, each with the token that closes it.
type Open = Arc<std::sync::Mutex<VecDeque<(u64, CancellationToken)>>>;

/// Serves `/api/health` and `/metrics` on `listener` until `shutdown` fires or the App is gone.
pub async fn serve(listener: TcpListener, app: Weak<App>, shutdown: CancellationToken) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let open: Open = Arc::default();
    let mut next_id = 0u64;
    loop {
        let tcp = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (app, permits, open) = (app.clone(), permits.clone(), open.clone());
        let id = next_id;
        next_id += 1;
        tokio::spawn(async move {
            let permit = match permits.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    let oldest = open.lock().ok().and_then(|mut q| q.pop_front());
                    if let Some((_, close)) = oldest {
                        close.cancel();
                    }
                    match tokio::time::timeout(EVICTION_WAIT, permits.acquire_owned()).await {
                        Ok(Ok(p)) => p,
                        _ => return,
                    }
                }
            };
            let close = CancellationToken::new();
            if let Ok(mut q) = open.lock() {
                q.push_back((id, close.clone()));
            }
            serve_connection(tcp, app, close).await;
            if let Ok(mut q) = open.lock() {
                q.retain(|(x, _)| *x != id);
            }
            drop(permit);
        });
    }
}

/// One HTTP/1 connection, with keep-alive, until the client closes it or `close` fires (then after the request in
/// flight, if any).
async fn serve_connection(tcp: tokio::net::TcpStream, app: Weak<App>, close: CancellationToken) {
    let service = hyper::service::service_fn(move |req| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(respond(&req, app.upgrade().as_deref())) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(true)
        .serve_connection(TokioIo::new(tcp), service);
    tokio::pin!(conn);
    let served = tokio::select! {
        r = conn.as_mut() => r,
        _ = close.cancelled() => {
            // A request in flight is answered; a connection that is half-way through sending its headers (which
            // graceful shutdown waits for) is dropped after a moment.
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(EVICTION_WAIT / 2, conn).await {
                Ok(r) => r,
                Err(_) => return,
            }
        }
    };
    if let Err(e) = served {
        tracing::debug!(error = %e, "http connection ended");
    }
}

/// Answers one request.
fn respond(req: &Request<Incoming>, app: Option<&App>) -> Response<Full<Bytes>> {
    let Some(app) = app else {
        return reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "pgsplit is stopping\n".into());
    };
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/api/health") => {
            let r = health_report(app);
            let code = StatusCode::from_u16(r.http_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            reply(code, "application/json", r.body)
        }
        (&Method::GET, "/metrics") => {
            reply(StatusCode::OK, crate::metrics::CONTENT_TYPE, crate::metrics::render(crate::metrics::Snapshot::of(app)))
        }
        (_, "/api/health" | "/metrics") => reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "use GET\n".into()),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found: try /api/health or /metrics\n".into()),
    }
}

/// The health report from the probes' last results.
pub fn health_report(app: &App) -> health::Report {
    let mode = app.mode();
    let essential = match mode {
        Mode::Split => app.table().default_target,
        Mode::Single => app.single_target(),
    };
    let targets: Vec<health::TargetHealth<'_>> =
        app.backends().iter().map(|b| health::TargetHealth { name: b.name(), up: b.is_up() }).collect();
    let state = app.mode_store().map(|s| (app.backend(s.target).name(), s.state()));
    let store = state.as_ref().map(|(target, s)| health::StoreHealth {
        target,
        listening: s.listening,
        last_seen: s.last_seen,
        error: s.error.as_deref(),
    });
    health::report(mode, essential, &targets, store, SystemTime::now())
}

fn reply(code: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
    r.headers_mut().insert(hyper::header::CACHE_CONTROL, hyper::header::HeaderValue::from_static("no-store"));
    r
}
