#![no_main]
//! Runs `burrow::fuzzing::known_hosts`; the properties it checks are documented there.

libfuzzer_sys::fuzz_target!(|data: &[u8]| burrow::fuzzing::known_hosts(data));
