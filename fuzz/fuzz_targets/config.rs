//! Fuzz target: arbitrary text through the routing.yaml loader and its validation (`pgsplit::fuzzing::config`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pgsplit::fuzzing::config(data));
