//! `burrow migrate` through the real tunnel into a real MariaDB.

mod support;

use support::Burrow;
use support::mariadb::MariaDb;
use support::sshd::Sshd;

fn migrate(sshd: &Sshd, db: &MariaDb, dir: &std::path::Path, status: bool) -> (i32, String) {
    let mut b = Burrow::builder()
        .subcommand("migrate")
        .arg("--dir")
        .arg(dir.display().to_string())
        .through(sshd, db.port);
    if status {
        b = b.arg("--status");
    }
    b.run_to_exit()
}

#[test]
fn migrations_apply_once_in_order_and_changed_files_are_refused() {
    let db = MariaDb::shared();
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, sql: &str| std::fs::write(dir.path().join(name), sql).unwrap();
    write(
        "0001_create.sql",
        "CREATE TABLE mig_items (id INT PRIMARY KEY, name VARCHAR(20));\n",
    );
    write(
        "0002_seed.sql",
        "INSERT INTO mig_items VALUES (1, 'one');\nINSERT INTO mig_items VALUES (2, 'two');\n",
    );
    write("notes.txt", "not a migration");

    let (code, out) = migrate(&sshd, db, dir.path(), false);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("applied migration 0001_create.sql"), "{out}");
    assert_eq!(
        db.sql("SELECT id, name FROM app.mig_items ORDER BY id"),
        "1\tone\n2\ttwo\n"
    );

    // Again: nothing to do, nothing re-run (a re-run would fail on the key).
    let (code, out) = migrate(&sshd, db, dir.path(), false);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 applied now, 2 in total"), "{out}");

    write(
        "0003_more.sql",
        "INSERT INTO mig_items VALUES (3, 'three');",
    );
    let (code, out) = migrate(&sshd, db, dir.path(), true);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("applied  0001_create.sql"), "{out}");
    assert!(out.contains("pending  0003_more.sql"), "{out}");
    assert_eq!(
        db.sql("SELECT COUNT(*) FROM app.mig_items"),
        "2\n",
        "--status applies nothing"
    );

    write(
        "0001_create.sql",
        "CREATE TABLE mig_items (id INT PRIMARY KEY, name VARCHAR(99));\n",
    );
    let (code, out) = migrate(&sshd, db, dir.path(), false);
    assert_ne!(code, 0);
    assert!(
        out.contains("`0001_create.sql` was changed after it was applied"),
        "{out}"
    );
    assert_eq!(
        db.sql("SELECT COUNT(*) FROM app.mig_items"),
        "2\n",
        "nothing applied after a refusal"
    );
}

#[test]
fn a_failing_migration_is_named_and_not_recorded() {
    let db = MariaDb::shared();
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_bad.sql"),
        "CREATE TABLE mig_bad (id INT PRIMARY KEY;",
    )
    .unwrap();
    let (code, out) = migrate(&sshd, db, dir.path(), false);
    assert_ne!(code, 0);
    assert!(out.contains("migration `0001_bad.sql` failed"), "{out}");
    assert_eq!(
        db.sql("SELECT COUNT(*) FROM app.burrow_migrations WHERE name = '0001_bad.sql'"),
        "0\n"
    );
}
