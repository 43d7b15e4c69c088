//! Fuzz target: arbitrary SQL text through the analysis and the routing decision (`pgsplit::fuzzing::route`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pgsplit::fuzzing::route(data));
