#![no_main]
//! Runs `burrow::fuzzing::db_to_mysql`; the properties it checks are documented there.

libfuzzer_sys::fuzz_target!(|data: &[u8]| burrow::fuzzing::db_to_mysql(data));
