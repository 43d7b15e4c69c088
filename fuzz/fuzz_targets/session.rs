//! Fuzz target: random client logins and message sequences through one pgsplit session in front of a fake server
//! (`pgsplit::fuzzing::SessionHarness`); one pgsplit, fake server and runtime per fuzzing process.
#![no_main]

use std::sync::OnceLock;

use pgsplit::fuzzing::SessionHarness;

static HARNESS: OnceLock<SessionHarness> = OnceLock::new();

fn harness() -> &'static SessionHarness {
    HARNESS.get_or_init(|| {
        // PGSPLIT_FUZZ_LOG=debug (an EnvFilter) shows pgsplit's logs, to find the cause of a crash.
        if let Ok(filter) = std::env::var("PGSPLIT_FUZZ_LOG") {
            tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
        }
        // PGSPLIT_FUZZ_STRICT=1: the fake server tolerates no known bug, to replay fuzz/artifacts/session/pending/.
        if std::env::var_os("PGSPLIT_FUZZ_STRICT").is_some() {
            SessionHarness::strict()
        } else {
            SessionHarness::new()
        }
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness().run(data));
