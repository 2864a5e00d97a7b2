#![no_main]
//! Runs `burrow::fuzzing::forward`; the properties it checks are documented there.

libfuzzer_sys::fuzz_target!(|data: &[u8]| burrow::fuzzing::forward(data));
