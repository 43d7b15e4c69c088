//! Fuzz target: client byte streams through the frontend framer and the message decoders (`pgsplit::fuzzing::frontend`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pgsplit::fuzzing::frontend(data));
