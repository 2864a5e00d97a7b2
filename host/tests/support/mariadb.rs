//! A private MariaDB server (`mariadb-install-db` + `mariadbd` in a temp
//! dir, random loopback port), with a database and an application user.
//! A watchdog process kills it when the test binary exits.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::sshd::free_port;

pub const DB_NAME: &str = "app";
pub const DB_USER: &str = "app";
pub const DB_PASSWORD: &str = "app-secret-pw-7f3a";

pub struct MariaDb {
    pub dir: tempfile::TempDir,
    pub port: u16,
    socket: PathBuf,
    child: Option<Child>,
}

impl MariaDb {
    /// One server shared by every test in this binary.
    pub fn shared() -> &'static MariaDb {
        static SHARED: OnceLock<MariaDb> = OnceLock::new();
        SHARED.get_or_init(MariaDb::start)
    }

    /// A server of its own (for tests that restart it).
    pub fn start() -> MariaDb {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let out = Command::new("mariadb-install-db")
            .args([
                "--no-defaults",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ])
            .arg(format!("--datadir={}", data.display()))
            .output()
            .expect("running mariadb-install-db (install mariadb-server; scripts/setup does)");
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut db = MariaDb {
            socket: dir.path().join("mysql.sock"),
            port: free_port(),
            child: None,
            dir,
        };
        db.spawn();
        db.sql(&format!(
            "CREATE DATABASE {DB_NAME} CHARACTER SET utf8mb4; \
             CREATE USER '{DB_USER}'@'%' IDENTIFIED BY '{DB_PASSWORD}'; \
             GRANT ALL ON {DB_NAME}.* TO '{DB_USER}'@'%';"
        ));
        db
    }

    /// Starts mariadbd on the same port and data directory.
    pub fn spawn(&mut self) {
        let data = self.dir.path().join("data");
        let child = Command::new("mariadbd")
            .args([
                "--no-defaults",
                "--user=root",
                "--skip-name-resolve",
                "--bind-address=127.0.0.1",
            ])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={}", self.port))
            .arg(format!("--socket={}", self.socket.display()))
            .arg(format!(
                "--pid-file={}",
                self.dir.path().join("mariadbd.pid").display()
            ))
            .arg(format!(
                "--log-error={}",
                self.dir.path().join("error.log").display()
            ))
            .args([
                "--innodb-buffer-pool-size=16M",
                "--skip-log-bin",
                "--max-connections=500",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting mariadbd");
        watchdog(child.id(), self.dir.path());
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(60);
        while self.try_sql("SELECT 1").is_none_or(|out| out.trim() != "1") {
            assert!(
                Instant::now() < end,
                "mariadbd did not start: {}",
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server abruptly (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// Runs SQL as root through the Unix socket, as the `mariadb` CLI
    /// shows it (tab-separated, no headers); panics on error.
    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(sql).unwrap_or_else(|| {
            let out = Command::new("mariadb")
                .args(["--no-defaults", "-uroot"])
                .arg(format!("--socket={}", self.socket.display()))
                .arg("-e")
                .arg(sql)
                .output()
                .unwrap();
            panic!(
                "mariadb CLI failed for: {sql}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    pub fn try_sql(&self, sql: &str) -> Option<String> {
        let out = Command::new("mariadb")
            .args([
                "--no-defaults",
                "-uroot",
                "-N",
                "-B",
                "--default-character-set=utf8mb4",
            ])
            .arg(format!("--socket={}", self.socket.display()))
            .arg("-e")
            .arg(sql)
            .stderr(Stdio::piped())
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        Some(String::from_utf8(out.stdout).unwrap())
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A shell that outlives nothing: it kills `pid` once this test process is
/// gone, so a shared server never outlives its test binary.
fn watchdog(pid: u32, dir: &Path) {
    let me = std::process::id();
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while kill -0 {me} 2>/dev/null; do sleep 1; done; kill -9 {pid} 2>/dev/null; rm -rf '{}'",
            dir.display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}
