//! `migrate.rs` is `burrow migrate`: it applies `migrations/*.sql` in file
//! name order, each once, recording name and SHA-256 in the table
//! `burrow_migrations`. A file that changed after it was applied is an
//! error, never silently re-run. A named lock keeps two replicas from
//! migrating at once. It talks to the database through the same settings
//! (and tunnel) as the server.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};

use crate::config::Config;
use crate::runtime::sha256_hex;
use crate::tunnel::Tunnel;

/// Where migrations live unless `--dir` says otherwise.
pub const DEFAULT_DIR: &str = "migrations";
/// How long to wait for another replica's migration to finish.
const LOCK_TIMEOUT_SECS: u32 = 60;

/// One migration file.
#[derive(Debug)]
struct Migration {
    name: String,
    path: PathBuf,
    sha256: String,
}

/// A migration's state, for `--status`.
#[derive(Debug, PartialEq, Eq)]
enum State {
    Applied,
    Pending,
    Changed,
}

/// Runs `burrow migrate` (or `--status` when `status_only`).
pub async fn run(config: Config, dir: &Path, status_only: bool) -> Result<()> {
    let Some(settings) = config.database.clone() else {
        bail!("no database is configured: set DB_NAME, DB_USER and DB_PASSWORD");
    };
    let migrations = read_dir(dir)?;
    let tunnel = match config.tunnel.clone() {
        Some(t) => Some(Tunnel::start(t).await?),
        None => None,
    };
    let (host, port) = settings.address(tunnel.as_ref().map(|t| t.local_addr()));
    let opts = Opts::from(crate::db::connect_opts(&settings, &host, port));
    let mut conn = Conn::new(opts).await.with_context(|| {
        format!(
            "cannot connect to the database `{}` at {host}:{port}",
            settings.name
        )
    })?;
    let result = apply(&mut conn, &migrations, status_only).await;
    let _ = conn.disconnect().await;
    if let Some(tunnel) = tunnel {
        tunnel.close().await;
    }
    result
}

fn read_dir(dir: &Path) -> Result<Vec<Migration>> {
    let entries = std::fs::read_dir(dir).with_context(|| {
        format!(
            "cannot read the migrations directory `{}` (set it with --dir)",
            dir.display()
        )
    })?;
    let mut migrations = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("sql") {
            continue;
        }
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read `{}`", path.display()))?;
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.len() > 255 {
            bail!("migration file name `{name}` is longer than 255 characters");
        }
        migrations.push(Migration {
            sha256: sha256_hex(&bytes),
            name,
            path,
        });
    }
    migrations.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(migrations)
}

async fn apply(conn: &mut Conn, migrations: &[Migration], status_only: bool) -> Result<()> {
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS burrow_migrations (
            name VARCHAR(255) NOT NULL PRIMARY KEY,
            sha256 CHAR(64) NOT NULL,
            applied_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
        ) CHARACTER SET utf8mb4",
    )
    .await
    .context("cannot create the burrow_migrations table")?;
    let got: Option<i64> = conn
        .query_first(format!(
            "SELECT GET_LOCK('burrow_migrate', {LOCK_TIMEOUT_SECS})"
        ))
        .await?
        .flatten();
    if got != Some(1) {
        bail!("another `burrow migrate` holds the migration lock; try again when it has finished");
    }
    let result = apply_locked(conn, migrations, status_only).await;
    let _ = conn.query_drop("DO RELEASE_LOCK('burrow_migrate')").await;
    result
}

async fn apply_locked(conn: &mut Conn, migrations: &[Migration], status_only: bool) -> Result<()> {
    let applied: Vec<(String, String)> = conn
        .query("SELECT name, sha256 FROM burrow_migrations ORDER BY name")
        .await?;
    let state = |m: &Migration| match applied.iter().find(|(name, _)| *name == m.name) {
        Some((_, sha)) if *sha == m.sha256 => State::Applied,
        Some(_) => State::Changed,
        None => State::Pending,
    };

    if status_only {
        for m in migrations {
            let label = match state(m) {
                State::Applied => "applied",
                State::Pending => "pending",
                State::Changed => "CHANGED since applied",
            };
            println!("{label:>22}  {}", m.name);
        }
        for (name, _) in &applied {
            if !migrations.iter().any(|m| m.name == *name) {
                println!("{:>22}  {name}", "applied, file missing");
            }
        }
        return Ok(());
    }

    if let Some(changed) = migrations.iter().find(|m| state(m) == State::Changed) {
        bail!(
            "migration `{}` was changed after it was applied: applied migrations are never re-run. \
             Restore the file and put the change in a new migration",
            changed.name
        );
    }
    let mut count = 0;
    for m in migrations.iter().filter(|m| state(m) == State::Pending) {
        let sql = std::fs::read_to_string(&m.path)
            .with_context(|| format!("cannot read `{}`", m.path.display()))?;
        conn.query_drop(sql.as_str())
            .await
            .with_context(|| format!("migration `{}` failed", m.name))?;
        conn.exec_drop(
            "INSERT INTO burrow_migrations (name, sha256) VALUES (?, ?)",
            (m.name.as_str(), m.sha256.as_str()),
        )
        .await?;
        tracing::info!("applied migration {}", m.name);
        count += 1;
    }
    tracing::info!(
        "migrations up to date: {count} applied now, {} in total",
        migrations.len()
    );
    Ok(())
}
