//! Fuzz target: client-first and client-final messages through the server side of SCRAM-SHA-256 (`pgsplit::fuzzing::scram`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pgsplit::fuzzing::scram(data));
