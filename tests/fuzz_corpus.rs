//! Replays every fuzz corpus input and every crash input (`fuzz/corpus/<target>/`, `fuzz/artifacts/<target>/`)
//! through the fuzz targets' bodies (`pgsplit::fuzzing`) on stable Rust, each in a thread with a normal 2 MiB
//! stack: a crash found once stays fixed. Inputs in `fuzz/artifacts/<target>/pending/` are known bugs being fixed
//! and are skipped (see `fuzz/README.md`). An input that overflows the stack aborts the whole binary; run with
//! `PGSPLIT_FUZZ_REPLAY_TRACE=1 ... -- --nocapture` to see each input's name before it runs.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use pgsplit::fuzzing;

/// The stack a session or statement gets in practice (a tokio worker's, a spawned thread's): inputs must not need more.
const STACK: usize = 2 << 20;

/// The threads that panicked, by name, recorded by the hook `count_panics` installs: a panic inside a task that the
/// runtime catches must fail the replay too. The session harness runs its tasks on the thread that drives it (a
/// current-thread runtime), so a panic belongs to the thread it happened on, and a crash replayed by one test never
/// fails another test running beside it.
static PANICKED: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn count_panics() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let name = std::thread::current().name().unwrap_or("<unnamed>").to_owned();
            PANICKED.lock().unwrap_or_else(|e| e.into_inner()).push(name);
            previous(info);
        }));
    });
}

/// How many panics the thread called `name` has had.
fn panics_on(name: &str) -> usize {
    PANICKED.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|n| *n == name).count()
}

/// This thread's name, as `count_panics` records it.
fn this_thread() -> String {
    std::thread::current().name().unwrap_or("<unnamed>").to_owned()
}

/// The corpus and crash inputs of a target, pending ones excepted, in name order.
fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for dir in [root.join("corpus").join(target), root.join("artifacts").join(target)] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        files.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
    }
    files.sort();
    files
}

/// Runs `body` on every input of `target`, each in its own thread; fails listing every input that panicked.
fn replay(target: &str, body: impl Fn(&[u8]) + Sync) {
    count_panics();
    let files = inputs(target);
    assert!(!files.is_empty(), "no corpus for fuzz target {target}: the replay would prove nothing");
    let trace = std::env::var_os("PGSPLIT_FUZZ_REPLAY_TRACE").is_some();
    let mut crashed = Vec::new();
    for file in &files {
        if trace {
            eprintln!("replaying {}", file.display());
        }
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let thread = format!("replay {target}");
        let before = panics_on(&thread);
        let joined = std::thread::scope(|s| {
            let run = std::thread::Builder::new().name(thread.clone()).stack_size(STACK).spawn_scoped(s, || body(&data));
            match run {
                Ok(handle) => handle.join().is_ok(),
                Err(e) => panic!("cannot start a replay thread: {e}"),
            }
        });
        if !joined || panics_on(&thread) != before {
            crashed.push(file.display().to_string());
        }
    }
    assert!(
        crashed.is_empty(),
        "{} of {} inputs of fuzz target {target} crash:\n{}",
        crashed.len(),
        files.len(),
        crashed.join("\n")
    );
}

#[test]
fn frontend_framing_and_decoders_survive_their_corpus() {
    replay("frontend", fuzzing::frontend);
}

#[test]
fn startup_packet_parsing_survives_its_corpus() {
    replay("startup", fuzzing::startup);
}

#[test]
fn scram_server_exchange_survives_its_corpus() {
    replay("scram", fuzzing::scram);
}

#[test]
fn router_survives_its_corpus() {
    replay("router", fuzzing::route);
}

#[test]
fn literal_shapes_route_like_their_texts_over_the_corpus() {
    replay("literals", fuzzing::literals);
}

#[test]
fn config_loader_survives_its_corpus() {
    replay("config", fuzzing::config);
}

/// Session inputs that once hung pgsplit (a Query sent to a server skipping until Sync): replayed against a server
/// that tolerates no known bug, so that a hang there fails this test.
#[test]
fn fixed_session_hangs_stay_fixed_against_a_strict_server() {
    count_panics();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/artifacts/session/strict");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    files.sort();
    assert!(files.len() >= 5, "the strict inputs are missing from {}", dir.display());
    let harness = fuzzing::SessionHarness::strict();
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let before = panics_on(&this_thread());
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| harness.run(&data)));
        assert!(ran.is_ok() && panics_on(&this_thread()) == before, "{} fails against a strict server", file.display());
    }
}

#[test]
fn sessions_survive_their_corpus_without_panic_hang_or_desync() {
    // An input that crashes leaves the harness's pgsplit in an unknown state (a hung session holds a server
    // connection): the next input gets a fresh one, so that one crash fails one input, not all that follow.
    let shared = Mutex::new(fuzzing::SessionHarness::new());
    replay("session", |data| {
        let harness = match shared.lock() {
            Ok(h) => h,
            Err(crashed) => {
                shared.clear_poison();
                let mut h = crashed.into_inner();
                *h = fuzzing::SessionHarness::new();
                h
            }
        };
        harness.run(data);
    });
}
