//! `GET /api/health` (SPEC §6), as a pure function of the mode and each target's last known reachability.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Mode;

/// One target as the health report sees it.
#[derive(Debug, Clone, Copy)]
pub struct TargetHealth<'a> {
    /// Target name (the key under `databases`).
    pub name: &'a str,
    /// Reachable as the last background probe or connection attempt saw it.
    pub up: bool,
}

/// What an instance knows of the fleet's shared mode (`mode_store`).
#[derive(Debug, Clone, Copy)]
pub struct StoreHealth<'a> {
    /// The target holding it.
    pub target: &'a str,
    /// Listening for changes now.
    pub listening: bool,
    /// When the stored mode was last read or notified.
    pub last_seen: Option<SystemTime>,
    /// Why the store cannot be reached, while it cannot.
    pub error: Option<&'a str>,
}

/// The report: HTTP status and JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// 200 for healthy or degraded, 503 for unhealthy.
    pub http_status: u16,
    /// `healthy`, `degraded` or `unhealthy`.
    pub status: &'static str,
    /// The JSON body.
    pub body: String,
}

/// The health of the proxy: in split mode the default target down is `unhealthy`, another target down is
/// `degraded`; in single mode only the single target counts and the others are `unused`.
/// `essential` is the default target in split mode and the single target in single mode.
/// `store`, when configured, adds `mode_store`: its target, `listening` or `unreachable`, when the mode was last
/// seen, and why it cannot be reached.
pub fn report(
    mode: Mode,
    essential: usize,
    targets: &[TargetHealth<'_>],
    store: Option<StoreHealth<'_>>,
    now: SystemTime,
) -> Report {
    let mut databases = Vec::with_capacity(targets.len());
    let mut status = "healthy";
    for (i, t) in targets.iter().enumerate() {
        let state = match (mode, i == essential, t.up) {
            (Mode::Single, false, _) => "unused",
            (_, _, true) => "connected",
            (_, true, false) => {
                status = "unhealthy";
                "disconnected"
            }
            (Mode::Split, false, false) => {
                if status == "healthy" {
                    status = "degraded";
                }
                "disconnected"
            }
        };
        databases.push((t.name, state));
    }
    let mode = match mode {
        Mode::Split => "split",
        Mode::Single => "single",
    };
    let mode_store = store.map(|s| StoreJson {
        target: s.target,
        status: if s.listening { "listening" } else { "unreachable" },
        last_seen: s.last_seen.map(rfc3339),
        error: s.error,
    });
    let body = Body { status, mode, databases: Databases(&databases), mode_store, timestamp: rfc3339(now) };
    let body = serde_json::to_string(&body).unwrap_or_default();
    Report { http_status: if status == "unhealthy" { 503 } else { 200 }, status, body }
}

/// The JSON body, fields in the order SPEC §6 shows them.
#[derive(serde::Serialize)]
struct Body<'a> {
    status: &'static str,
    mode: &'static str,
    databases: Databases<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mode_store: Option<StoreJson<'a>>,
    timestamp: String,
}

/// `mode_store` in the body.
#[derive(serde::Serialize)]
struct StoreJson<'a> {
    target: &'a str,
    status: &'static str,
    last_seen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// Targets in configuration order, as a JSON object.
struct Databases<'a>(&'a [(&'a str, &'static str)]);

impl serde::Serialize for Databases<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, state) in self.0 {
            map.serialize_entry(name, state)?;
        }
        map.end()
    }
}

/// `now` as RFC 3339 in UTC with millisecond precision, e.g. `2026-01-31T23:59:59.123Z`.
pub fn rfc3339(now: SystemTime) -> String {
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, d.subsec_millis())
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    fn targets(primary: bool, data: bool) -> [TargetHealth<'static>; 2] {
        [TargetHealth { name: "primary", up: primary }, TargetHealth { name: "data", up: data }]
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(at(0, 0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(at(951_782_400, 5)), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(at(1_767_225_599, 999)), "2025-12-31T23:59:59.999Z");
    }

    #[test]
    fn split_mode_all_up_is_healthy_with_the_spec_shape() {
        let r = report(Mode::Split, 0, &targets(true, true), None, at(0, 0));
        assert_eq!((r.http_status, r.status), (200, "healthy"));
        assert_eq!(
            r.body,
            r#"{"status":"healthy","mode":"split","databases":{"primary":"connected","data":"connected"},"timestamp":"1970-01-01T00:00:00.000Z"}"#
        );
    }

    #[test]
    fn split_mode_other_target_down_is_degraded_default_down_is_unhealthy() {
        let r = report(Mode::Split, 0, &targets(true, false), None, at(0, 0));
        assert_eq!((r.http_status, r.status), (200, "degraded"));
        assert!(r.body.contains("\"data\":\"disconnected\""), "{}", r.body);
        let r = report(Mode::Split, 0, &targets(false, true), None, at(0, 0));
        assert_eq!((r.http_status, r.status), (503, "unhealthy"));
        let r = report(Mode::Split, 0, &targets(false, false), None, at(0, 0));
        assert_eq!((r.http_status, r.status), (503, "unhealthy"));
    }

    #[test]
    fn single_mode_depends_only_on_the_single_target() {
        let r = report(Mode::Single, 0, &targets(true, false), None, at(0, 0));
        assert_eq!((r.http_status, r.status), (200, "healthy"));
        assert!(r.body.contains("\"data\":\"unused\"") && r.body.contains("\"mode\":\"single\""), "{}", r.body);
        let r = report(Mode::Single, 1, &targets(true, false), None, at(0, 0));
        assert_eq!((r.http_status, r.status), (503, "unhealthy"));
        assert!(r.body.contains("\"primary\":\"unused\""), "{}", r.body);
    }

    #[test]
    fn a_mode_store_says_whether_it_is_listening_and_when_the_mode_was_last_seen() {
        let store = StoreHealth { target: "primary", listening: false, last_seen: Some(at(60, 0)), error: Some("refused") };
        let r = report(Mode::Single, 0, &targets(true, true), Some(store), at(120, 0));
        assert!(
            r.body.contains(r#""mode_store":{"target":"primary","status":"unreachable","last_seen":"1970-01-01T00:01:00.000Z","error":"refused"}"#),
            "{}",
            r.body
        );
        let store = StoreHealth { target: "primary", listening: true, last_seen: None, error: None };
        let r = report(Mode::Split, 0, &targets(true, true), Some(store), at(0, 0));
        assert!(r.body.contains(r#""mode_store":{"target":"primary","status":"listening","last_seen":null}"#), "{}", r.body);
    }
}
