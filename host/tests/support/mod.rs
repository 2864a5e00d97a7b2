//! Test support: starts the real `burrow` binary on a random port and talks
//! to it over real sockets with a small HTTP/1.1 client that gives full
//! control of the bytes on the wire.

#![allow(dead_code)] // each test binary uses a different part

pub mod mariadb;
pub mod sshd;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a server may take to start (it may have to compile components).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// Path of a guest component built by `scripts/test` (or by hand with
/// `cargo build --target wasm32-wasip2 --release -p <crate>`).
pub fn guest(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let path = root
        .join("target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "guest component `{}` is missing: build the guests first with `scripts/test` \
         (or `cargo build --target wasm32-wasip2 --release -p {name}`)",
        path.display()
    );
    path
}

/// One compile cache for the whole test binary, so each component is
/// compiled once however many servers the tests start.
pub fn shared_cache_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

/// A running `burrow serve` process; killed on drop.
pub struct Burrow {
    child: Child,
    pub addr: SocketAddr,
    /// The admin listener, when the server logged one.
    admin: Arc<Mutex<Option<SocketAddr>>>,
    log: Arc<Mutex<Vec<String>>>,
    /// Secret values the server was given; none may appear in its log.
    secrets: Vec<String>,
}

/// Settings whose values are secrets.
const SECRET_SETTINGS: [&str; 4] = [
    "DB_PASSWORD",
    "DJANGO_SECRET_KEY",
    "SSH_KEY_PASSPHRASE",
    "BURROW_ADMIN_TOKEN",
];

/// The secret values in `env`: the secret settings, and the body of the
/// private key file `SSH_KEY` names.
fn secrets_in(env: &[(String, String)]) -> Vec<String> {
    let mut secrets: Vec<String> = env
        .iter()
        .filter(|(k, v)| SECRET_SETTINGS.contains(&k.as_str()) && v.len() >= 4)
        .map(|(_, v)| v.clone())
        .collect();
    if let Some((_, key)) = env.iter().find(|(k, _)| k == "SSH_KEY")
        && let Ok(text) = std::fs::read_to_string(key)
    {
        secrets.extend(
            text.lines()
                .filter(|l| !l.starts_with("-----") && l.len() >= 40)
                .map(str::to_string),
        );
    }
    secrets
}

/// Panics if `log` contains any of `secrets`.
pub fn assert_no_secrets(log: &str, secrets: &[String]) {
    for secret in secrets {
        assert!(
            !log.contains(secret.as_str()),
            "a secret value (starting `{}`) appears in the server's log",
            &secret[..4]
        );
    }
}

/// Builder for a server: arguments, environment, working directory.
pub struct BurrowBuilder {
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// `tunnel` or `migrate` rather than `serve`.
    subcommand: Option<&'static str>,
}

impl Burrow {
    pub fn builder() -> BurrowBuilder {
        BurrowBuilder {
            subcommand: None,
            args: Vec::new(),
            env: vec![
                (
                    "BURROW_CACHE_DIR".into(),
                    shared_cache_dir().display().to_string(),
                ),
                // Tests run in parallel: never the fixed default port.
                ("BURROW_ADMIN_LISTEN".into(), "127.0.0.1:0".into()),
            ],
        }
    }

    /// Everything the server has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The admin API's address.
    pub fn admin(&self) -> SocketAddr {
        self.admin
            .lock()
            .unwrap()
            .expect("this server logged no admin listener")
    }

    /// A request to the admin API.
    pub fn admin_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> HttpResponse {
        request(self.admin(), method, path, headers, body)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        signal(self.child.id(), "TERM");
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn get(&self, path: &str) -> HttpResponse {
        request(self.addr, "GET", path, &[], None)
    }

    pub fn post(&self, path: &str, body: &[u8]) -> HttpResponse {
        request(self.addr, "POST", path, &[], Some(body))
    }
}

impl Drop for Burrow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Every test doubles as a log scan: whatever it made the server do,
        // no secret it was given may have been logged.
        if !std::thread::panicking() {
            assert_no_secrets(&self.log(), &self.secrets);
        }
    }
}

pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid} failed");
}

impl BurrowBuilder {
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn route(self, prefix: &str, component: &Path) -> Self {
        self.arg("--route")
            .arg(format!("{prefix}={}", component.display()))
    }

    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_burrow"));
        if let Some(sub) = self.subcommand {
            cmd.arg(sub);
        }
        cmd.args(&self.args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("BURROW_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if self.subcommand.is_none() && !self.args.iter().any(|a| a == "--listen") {
            cmd.arg("--listen").arg("127.0.0.1:0");
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// The tunnel and database settings that reach the MariaDB on
    /// `db_port` only through `sshd`: as in production, the pool connects
    /// to the tunnel's local end (a free port here).
    pub fn through(self, sshd: &sshd::Sshd, db_port: u16) -> Self {
        self.env("SSH_HOST", "127.0.0.1")
            .env("SSH_PORT", sshd.port.to_string())
            .env("SSH_USER", &sshd.user)
            .env("SSH_KEY", sshd.client_key.display().to_string())
            .env("SSH_KNOWN_HOSTS", sshd.known_hosts().display().to_string())
            .env("SSH_FORWARD", format!("0:127.0.0.1:{db_port}"))
            .env("DB_NAME", mariadb::DB_NAME)
            .env("DB_USER", mariadb::DB_USER)
            .env("DB_PASSWORD", mariadb::DB_PASSWORD)
    }

    /// `burrow tunnel` instead of `burrow serve`.
    pub fn tunnel(self) -> Self {
        self.subcommand("tunnel")
    }

    /// Runs `burrow SUB` instead of `burrow serve`.
    pub fn subcommand(mut self, sub: &'static str) -> Self {
        self.subcommand = Some(sub);
        self
    }

    /// Starts the server and waits until it listens.
    pub fn start(self) -> Burrow {
        self.start_until("listening on http://")
    }

    /// Starts `burrow tunnel` and waits until it forwards; `addr` is the
    /// tunnel's local end.
    pub fn start_tunnel(self) -> Burrow {
        self.tunnel().start_until("tunnel forwarding ")
    }

    /// Starts the process and waits for a log line containing `marker`
    /// followed by an address.
    fn start_until(self, marker: &'static str) -> Burrow {
        let mut child = self.command().spawn().expect("spawning burrow");
        let log = Arc::new(Mutex::new(Vec::new()));
        let admin = Arc::new(Mutex::new(None));
        let (tx, rx) = std::sync::mpsc::channel();
        for stream in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let log = Arc::clone(&log);
            let admin = Arc::clone(&admin);
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if let Some(rest) = line.split("admin API on http://").nth(1) {
                        *admin.lock().unwrap() = address_at(rest).parse().ok();
                    }
                    if let Some(rest) = line.split(marker).nth(1) {
                        let _ = tx.send(address_at(rest).to_string());
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let addr = match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => addr.parse().unwrap(),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "burrow did not log `{marker}`; its log:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        Burrow {
            child,
            addr,
            admin,
            log,
            secrets: secrets_in(&self.env),
        }
    }

    /// Runs a server that is expected to fail at start-up; returns its exit
    /// code and everything it printed.
    pub fn run_to_failure(self) -> (i32, String) {
        self.run_to_exit()
    }

    /// Runs a command that exits by itself (e.g. `migrate`); returns its
    /// exit code and everything it printed.
    pub fn run_to_exit(self) -> (i32, String) {
        let secrets = secrets_in(&self.env);
        let mut child = self.command().spawn().expect("spawning burrow");
        let end = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut out = String::new();
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut out)
                    .unwrap();
                child
                    .stdout
                    .take()
                    .unwrap()
                    .read_to_string(&mut out)
                    .unwrap();
                assert_no_secrets(&out, &secrets);
                return (status.code().unwrap_or(-1), out);
            }
            if Instant::now() > end {
                let _ = child.kill();
                panic!("burrow did not exit");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The `IP:PORT` at the start of `text` (a log line may go on with a
/// space, or, in JSON, with a quote).
fn address_at(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_hexdigit() || ".:[]".contains(c)))
        .unwrap_or(text.len());
    &text[..end]
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
}

/// One request on a fresh connection, with a Content-Length body.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> HttpResponse {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut wire = head.into_bytes();
    if let Some(body) = body {
        wire.extend_from_slice(body);
    }
    exchange(addr, &wire)
}

/// One request whose body is sent with chunked transfer encoding, in the
/// given pieces.
pub fn request_chunked(addr: SocketAddr, path: &str, chunks: &[&[u8]]) -> HttpResponse {
    let mut wire = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for chunk in chunks {
        wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        wire.extend_from_slice(chunk);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    exchange(addr, &wire)
}

/// Writes raw bytes, reads one response.
pub fn exchange(addr: SocketAddr, wire: &[u8]) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).expect("connecting to burrow");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream.write_all(wire).unwrap();
    read_response(&mut BufReader::new(stream))
}

pub fn read_response(reader: &mut impl BufRead) -> HttpResponse {
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("reading status");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"))
        .parse()
        .unwrap();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').unwrap();
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if let Some(len) = find("content-length") {
        body.resize(len.parse().unwrap(), 0);
        reader.read_exact(&mut body).unwrap();
    } else if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).unwrap();
            let size = usize::from_str_radix(size.trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size {size:?}"));
            if size == 0 {
                let mut end = String::new();
                reader.read_line(&mut end).unwrap();
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..]).unwrap();
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf).unwrap();
        }
    } else {
        let _ = reader.read_to_end(&mut body);
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// Bytes with every value 0–255 in a pattern that is not periodic in
/// powers of two, so shifted or dropped bytes show.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Writes a config file into a fresh temp dir and returns both.
pub fn config_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("burrow.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}
