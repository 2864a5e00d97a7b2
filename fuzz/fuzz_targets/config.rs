#![no_main]
//! Runs `burrow::fuzzing::config`; the properties it checks are documented there.

libfuzzer_sys::fuzz_target!(|data: &[u8]| burrow::fuzzing::config(data));
