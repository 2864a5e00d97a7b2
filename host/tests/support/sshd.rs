//! A private OpenSSH `sshd` on a random loopback port, with a host key and
//! a client key generated for the test, and small TCP targets to forward to.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Generates a key with `ssh-keygen`; returns the private key path.
pub fn keygen(dir: &Path, name: &str, kind: &str, extra: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", kind, "-C", "burrow-test", "-f"])
        .arg(&path);
    if !extra.contains(&"-N") {
        cmd.args(["-N", ""]);
    }
    cmd.args(extra);
    let status = cmd
        .status()
        .expect("running ssh-keygen (install openssh-client)");
    assert!(status.success(), "ssh-keygen -t {kind} {extra:?} failed");
    path
}

pub fn public_key(private: &Path) -> String {
    std::fs::read_to_string(private.with_extension("pub"))
        .unwrap_or_else(|_| std::fs::read_to_string(format!("{}.pub", private.display())).unwrap())
}

fn sshd_path() -> PathBuf {
    for p in ["/usr/sbin/sshd", "/usr/bin/sshd"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("sshd not found: install openssh-server (scripts/setup does)");
}

/// A port free now, below the kernel's ephemeral range so that no outgoing
/// connection (the tests make thousands) takes it before its server binds
/// it, and never the same one twice in this process.
pub fn free_port() -> u16 {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU32, Ordering};
    // One random start per process, then each next port in turn: no port
    // comes up twice until the whole span has been handed out.
    static SEED: OnceLock<u32> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low = 10_000;
    let high = ephemeral_low().min(65_536);
    if high <= low + 1_000 {
        return TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
    }
    let seed = *SEED.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        std::process::id().wrapping_mul(7919) ^ nanos
    });
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let span = high - low;
        let port = low + (seed % span + n % span) % span;
        let port = u16::try_from(port).expect("below 65536");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The first port the kernel hands out for outgoing connections.
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A running sshd; killed (with its sessions) on drop.
pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub host_key: PathBuf,
    pub client_key: PathBuf,
    pub user: String,
    config: PathBuf,
    child: Option<Child>,
}

impl Sshd {
    /// Starts sshd with a fresh ed25519 host key, authorising a fresh
    /// ed25519 client key plus `extra_authorized` public keys.
    pub fn start() -> Sshd {
        Self::start_with(&[])
    }

    pub fn start_with(extra_authorized: &[String]) -> Sshd {
        let dir = tempfile::tempdir().unwrap();
        let host_key = keygen(dir.path(), "host_ed25519", "ed25519", &[]);
        let client_key = keygen(dir.path(), "client_ed25519", "ed25519", &[]);
        let mut authorized = public_key(&client_key);
        for key in extra_authorized {
            authorized.push_str(key);
            authorized.push('\n');
        }
        std::fs::write(dir.path().join("authorized_keys"), authorized).unwrap();
        let user = whoami();
        let config = dir.path().join("sshd_config");
        let mut sshd = Sshd {
            port: 0,
            host_key,
            client_key,
            user,
            config,
            child: None,
            dir,
        };
        sshd.port = free_port();
        sshd.write_config();
        sshd.spawn();
        sshd
    }

    fn write_config(&self) {
        let d = self.dir.path().display();
        std::fs::write(
            &self.config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {d}/sshd.pid\n\
                 AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n\
                 AllowTcpForwarding yes\nPermitOpen any\nLogLevel VERBOSE\nMaxStartups 200\n\
                 MaxSessions 200\nClientAliveInterval 0\n",
                port = self.port,
                hk = self.host_key.display(),
            ),
        )
        .unwrap();
    }

    /// (Re)starts the daemon on the same port with the same keys.
    pub fn spawn(&mut self) {
        // Privilege separation directory, needed when running as root.
        let _ = std::fs::create_dir_all("/run/sshd");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("sshd.log"))
            .unwrap();
        let child = Command::new(sshd_path())
            .args(["-D", "-e", "-f"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting sshd");
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < end, "sshd did not start: {}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the daemon and every session process.
    pub fn kill(&mut self) {
        let sessions = self.session_pids();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for pid in sessions {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }

    /// Pids of the per-connection sshd processes: every descendant of the
    /// daemon (sshd starts each session in a session of its own, so the
    /// process group does not find them).
    pub fn session_pids(&self) -> Vec<u32> {
        let Some(child) = &self.child else {
            return vec![];
        };
        let mut found = Vec::new();
        let mut frontier = vec![child.id()];
        while let Some(parent) = frontier.pop() {
            let out = Command::new("pgrep")
                .args(["-P", &parent.to_string()])
                .output()
                .unwrap();
            for pid in String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
            {
                found.push(pid);
                frontier.push(pid);
            }
        }
        found
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// The known_hosts line for this server.
    pub fn known_hosts_line(&self) -> String {
        let key = public_key(&self.host_key);
        let mut fields = key.split_whitespace();
        format!(
            "[127.0.0.1]:{} {} {}\n",
            self.port,
            fields.next().unwrap(),
            fields.next().unwrap()
        )
    }

    /// Writes a known_hosts file trusting this server; returns its path.
    pub fn known_hosts(&self) -> PathBuf {
        let path = self.dir.path().join("known_hosts");
        std::fs::write(&path, self.known_hosts_line()).unwrap();
        path
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}

fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A TCP echo server on loopback; runs until the process exits.
pub fn echo_server() -> SocketAddr {
    serve(|mut stream| {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    })
}

/// A server that speaks first (as MySQL does), then echoes.
pub fn greeting_server(greeting: &'static [u8]) -> SocketAddr {
    serve(move |mut stream| {
        if stream.write_all(greeting).is_err() {
            return;
        }
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 || stream.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    })
}

fn serve(handler: impl Fn(TcpStream) + Send + Sync + Clone + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let handler = handler.clone();
            std::thread::spawn(move || handler(stream));
        }
    });
    addr
}
