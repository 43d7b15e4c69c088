//! Fuzz target: SQL text through the literal shaper (a text and its shape must route alike) and the fallback scan (`pgsplit::fuzzing::literals`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pgsplit::fuzzing::literals(data));
