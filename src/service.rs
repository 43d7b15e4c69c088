//! Living under a service manager: readiness and state notifications (sd_notify, sent by pgsplit itself), and the
//! signals: SIGHUP reloads, SIGTERM/SIGINT stop gracefully, a second one stops at once.
//!
//! The notifications go to `$NOTIFY_SOCKET` when it is set (systemd's `Type=notify`); without it they cost nothing.

use std::sync::Weak;

use sd_notify::NotifyState;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::App;

/// Tells the service manager pgsplit is serving (`READY=1`), with a status line.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells the service manager the configuration is being re-read (`RELOADING=1` with the monotonic time systemd 253+
/// asks of `Type=notify-reload` services); `ready` follows when done.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now, NotifyState::Status("reloading the configuration")]),
        Err(_) => send(&[NotifyState::Reloading, NotifyState::Status("reloading the configuration")]),
    }
}

/// Tells the service manager pgsplit is stopping (`STOPPING=1`).
pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

fn send(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

/// The status line of a running instance: where it listens and its mode.
pub fn serving_status(app: &App, listen: &str) -> String {
    format!("serving on {listen}, mode {}", app.mode().as_str())
}

/// The signals pgsplit answers, watched from the moment this is made (before `READY=1`: a SIGHUP that follows
/// readiness must find its handler, not the default action, which ends the process).
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    /// Starts watching SIGTERM, SIGINT and SIGHUP.
    pub fn watch() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Answers them until the process ends: SIGHUP reloads `app`; the first SIGTERM or SIGINT cancels `graceful`,
    /// a second one `now`.
    pub fn spawn(self, app: Weak<App>, listen: String, graceful: CancellationToken, now: CancellationToken) {
        let Signals { term, int, hup } = self;
        tokio::spawn(stop_on_signals(term, int, graceful, now));
        tokio::spawn(reload_on_hangup(hup, app, listen));
    }
}

/// The first SIGTERM or SIGINT cancels `graceful` (stop accepting, let transactions finish up to
/// `shutdown_timeout`); a second one cancels `now` (close every session at once), as PgBouncer's second signal does.
async fn stop_on_signals(mut term: Signal, mut int: Signal, graceful: CancellationToken, now: CancellationToken) {
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        // SHUTDOWN on the console cancels `graceful` too: a signal after it still hurries.
        _ = graceful.cancelled() => {}
    }
    stopping("stopping: waiting for open transactions (a second SIGTERM closes them now)");
    graceful.cancel();
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::warn!("second stop signal: closing every session now");
    now.cancel();
}

/// Re-reads the configuration on SIGHUP (`RELOADING=1`, then `READY=1`); a file that cannot be applied is logged and
/// the running one stays.
async fn reload_on_hangup(mut hup: Signal, app: Weak<App>, listen: String) {
    while hup.recv().await.is_some() {
        let Some(app) = app.upgrade() else { return };
        tracing::info!("SIGHUP: reloading the configuration");
        reloading();
        let outcome = app.reload().await;
        if let Err(e) = &outcome {
            tracing::error!(error = %e, "configuration not reloaded; the running configuration stays");
        }
        let mut line = serving_status(&app, &listen);
        if outcome.is_err() {
            line.push_str(" (last reload failed: see the log)");
        }
        ready(&line);
    }
}
