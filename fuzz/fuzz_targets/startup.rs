//! Fuzz target: the first bytes of a connection through startup framing and the startup packet decoder (`pgsplit::fuzzing::startup`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pgsplit::fuzzing::startup(data));
