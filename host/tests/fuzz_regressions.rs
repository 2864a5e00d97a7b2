//! Replays every input kept under `fuzz/regressions/<target>/` (inputs that
//! once crashed a fuzz target, since fixed) and the hand-written seeds in
//! `fuzz/corpus-seeds/<target>/` through the very function the fuzz target
//! runs, `burrow::fuzzing::<target>`. An input that panics again fails its
//! test, named with its file. `scripts/fuzz` adds new crashing inputs.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut files = Vec::new();
    for kind in ["regressions", "corpus-seeds"] {
        let Ok(entries) = std::fs::read_dir(root.join(kind).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("listing fuzz inputs").path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn replay(target: &str, run: fn(&[u8])) {
    let files = inputs(target);
    assert!(
        !files.is_empty(),
        "no inputs for `{target}`: its seeds belong in fuzz/corpus-seeds/{target}/"
    );
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).expect("reading a fuzz input");
            catch_unwind(AssertUnwindSafe(|| run(&data))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} inputs for `{target}` panic: {failed:#?}",
        failed.len(),
        files.len()
    );
}

#[test]
fn config() {
    replay("config", burrow::fuzzing::config);
}

#[test]
fn forward() {
    replay("forward", burrow::fuzzing::forward);
}

#[test]
fn known_hosts() {
    replay("known_hosts", burrow::fuzzing::known_hosts);
}

#[test]
fn db_to_mysql() {
    replay("db_to_mysql", burrow::fuzzing::db_to_mysql);
}

#[test]
fn db_from_mysql() {
    replay("db_from_mysql", burrow::fuzzing::db_from_mysql);
}

#[test]
fn http() {
    replay("http", burrow::fuzzing::http);
}
