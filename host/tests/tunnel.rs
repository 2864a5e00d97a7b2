//! `burrow tunnel` against a real OpenSSH sshd started for each test, with
//! host and client keys generated at test time.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::sshd::{Sshd, echo_server, free_port, greeting_server, keygen, public_key};
use support::{Burrow, BurrowBuilder, pattern};

/// `burrow tunnel` through `sshd` to `target` (host:port, resolved by the
/// bastion), on a random local port.
fn tunnel_to(sshd: &Sshd, target: &str) -> BurrowBuilder {
    Burrow::builder()
        .env("SSH_HOST", "127.0.0.1")
        .env("SSH_PORT", sshd.port.to_string())
        .env("SSH_USER", &sshd.user)
        .env("SSH_KEY", sshd.client_key.display().to_string())
        .env("SSH_KNOWN_HOSTS", sshd.known_hosts().display().to_string())
        .env("SSH_FORWARD", format!("0:{target}"))
}

/// Sends `data` through `addr` to an echo server and returns what came back.
fn round_trip(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    try_round_trip(addr, data).unwrap()
}

fn try_round_trip(addr: SocketAddr, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut writer = stream.try_clone()?;
    let owned = data.to_vec();
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        writer.write_all(&owned)?;
        writer.shutdown(Shutdown::Write)
    });
    let mut back = Vec::with_capacity(data.len());
    let mut reader = stream;
    reader.read_to_end(&mut back)?;
    sender.join().unwrap()?;
    Ok(back)
}

/// True when a fresh connection to `addr` is closed by the other side
/// within `within` without delivering data.
fn closes_fast(addr: SocketAddr, within: Duration) -> bool {
    let started = Instant::now();
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return true;
    };
    stream.set_read_timeout(Some(within)).unwrap();
    let _ = stream.write_all(b"ping");
    let mut buf = [0u8; 16];
    match stream.read(&mut buf) {
        Ok(0) => started.elapsed() < within,
        Ok(_) => false,
        Err(e) => {
            e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::TimedOut
        }
    }
}

fn fingerprint(private_key: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(format!("{}.pub", private_key.display()))
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}

fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if check() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn bytes_round_trip_exactly_from_1_byte_to_64_mib() {
    let sshd = Sshd::start();
    let echo = echo_server();
    let tunnel = tunnel_to(&sshd, &echo.to_string()).start_tunnel();
    for len in [1, 1000, 65_537, 1 << 20, 64 << 20] {
        let data = pattern(len);
        let back = round_trip(tunnel.addr, &data);
        assert_eq!(back.len(), len, "length for {len}");
        assert!(back == data, "bytes differ for {len}");
    }
}

#[test]
fn a_hundred_concurrent_channels() {
    let sshd = Sshd::start();
    let echo = echo_server();
    let tunnel = tunnel_to(&sshd, &echo.to_string()).start_tunnel();
    let addr = tunnel.addr;
    let workers: Vec<_> = (0..100)
        .map(|i| {
            std::thread::spawn(move || {
                let data: Vec<u8> = pattern(32 * 1024 + i)
                    .into_iter()
                    .map(|b| b ^ i as u8)
                    .collect();
                round_trip(addr, &data) == data
            })
        })
        .collect();
    let ok = workers
        .into_iter()
        .map(|w| w.join().unwrap())
        .filter(|ok| *ok)
        .count();
    assert_eq!(ok, 100);
}

#[test]
fn a_server_that_speaks_first_greets_on_the_first_connection() {
    let sshd = Sshd::start();
    let greeter = greeting_server(b"220 hello from the target\r\n");
    // `localhost` is resolved by the bastion, not by burrow.
    let tunnel = tunnel_to(&sshd, &format!("localhost:{}", greeter.port())).start_tunnel();
    let mut stream = TcpStream::connect(tunnel.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 27];
    stream.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"220 hello from the target\r\n");
}

#[test]
fn an_unknown_host_key_is_refused_with_its_fingerprint_and_the_line_to_add() {
    let sshd = Sshd::start();
    let empty = sshd.dir.path().join("empty_known_hosts");
    std::fs::write(&empty, "# nothing yet\n").unwrap();
    let (code, out) = tunnel_to(&sshd, "127.0.0.1:9")
        .env("SSH_KNOWN_HOSTS", empty.display().to_string())
        .tunnel()
        .run_to_failure();
    assert_ne!(code, 0);
    assert!(out.contains("is not in"), "{out}");
    assert!(out.contains(&fingerprint(&sshd.host_key)), "{out}");
    assert!(
        out.contains("ED25519") || out.contains("ssh-ed25519"),
        "{out}"
    );
    let line = sshd.known_hosts_line();
    assert!(out.contains(line.trim()), "the exact line to add: {out}");
}

#[test]
fn a_changed_host_key_is_refused_naming_both_fingerprints() {
    let sshd = Sshd::start();
    let other = keygen(sshd.dir.path(), "impostor", "ed25519", &[]);
    let pubkey = public_key(&other);
    let mut fields = pubkey.split_whitespace();
    let path = sshd.dir.path().join("stale_known_hosts");
    std::fs::write(
        &path,
        format!(
            "[127.0.0.1]:{} {} {}\n",
            sshd.port,
            fields.next().unwrap(),
            fields.next().unwrap()
        ),
    )
    .unwrap();
    let (code, out) = tunnel_to(&sshd, "127.0.0.1:9")
        .env("SSH_KNOWN_HOSTS", path.display().to_string())
        .tunnel()
        .run_to_failure();
    assert_ne!(code, 0);
    assert!(out.contains("HOST KEY CHANGED"), "{out}");
    assert!(
        out.contains(&fingerprint(&sshd.host_key)),
        "presented key: {out}"
    );
    assert!(out.contains(&fingerprint(&other)), "expected key: {out}");
}

#[test]
fn a_revoked_host_key_is_refused() {
    let sshd = Sshd::start();
    let path = sshd.dir.path().join("revoking_known_hosts");
    let line = sshd.known_hosts_line();
    let key = line.split_once(' ').unwrap().1;
    std::fs::write(&path, format!("{line}@revoked * {key}")).unwrap();
    let (code, out) = tunnel_to(&sshd, "127.0.0.1:9")
        .env("SSH_KNOWN_HOSTS", path.display().to_string())
        .tunnel()
        .run_to_failure();
    assert_ne!(code, 0);
    assert!(out.contains("@revoked"), "{out}");
}

#[test]
fn accept_new_records_an_unknown_bastion_then_trusts_it() {
    let sshd = Sshd::start();
    let echo = echo_server();
    let path = sshd.dir.path().join("fresh/known_hosts");
    let start = || {
        tunnel_to(&sshd, &echo.to_string())
            .env("SSH_KNOWN_HOSTS", path.display().to_string())
            .env("SSH_STRICT_HOST_KEY_CHECKING", "accept-new")
            .start_tunnel()
    };
    let first = start();
    assert!(
        first.log().contains("accept-new: recorded"),
        "{}",
        first.log()
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        sshd.known_hosts_line()
    );
    assert_eq!(round_trip(first.addr, b"abc"), b"abc");
    drop(first);
    let second = start();
    assert!(
        !second.log().contains("accept-new: recorded"),
        "already known"
    );
}

#[test]
fn a_wrong_client_key_is_a_clear_authentication_error() {
    let sshd = Sshd::start();
    let stranger = keygen(sshd.dir.path(), "stranger", "ed25519", &[]);
    let (code, out) = tunnel_to(&sshd, "127.0.0.1:9")
        .env("SSH_KEY", stranger.display().to_string())
        .tunnel()
        .run_to_failure();
    assert_ne!(code, 0);
    assert!(out.contains("refused key"), "{out}");
    assert!(out.contains(&fingerprint(&stranger)), "{out}");
    assert!(out.contains("authorized_keys"), "{out}");
}

#[test]
fn every_key_type_and_format_logs_in() {
    // (type, ssh-keygen options, passphrase). OpenSSH 9 refuses SHA-1 RSA
    // signatures by default, so the RSA logins prove rsa-sha2 is used.
    let keys_dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<&str>, Option<&str>)> = vec![
        ("rsa", vec!["-b", "2048"], None),
        ("rsa", vec!["-b", "2048", "-m", "PEM"], None),
        (
            "rsa",
            vec!["-b", "2048", "-m", "PKCS8", "-N", "pkcs8 pass"],
            Some("pkcs8 pass"),
        ),
        ("ecdsa", vec![], None),
        ("ecdsa", vec!["-m", "PEM"], None),
        (
            "ed25519",
            vec!["-N", "correct horse"],
            Some("correct horse"),
        ),
    ];
    let keys: Vec<_> = cases
        .iter()
        .enumerate()
        .map(|(i, (kind, opts, _))| keygen(keys_dir.path(), &format!("key{i}"), kind, opts))
        .collect();
    let authorized: Vec<String> = keys.iter().map(|k| public_key(k)).collect();
    let sshd = Sshd::start_with(&authorized);
    let echo = echo_server();
    for ((kind, opts, pass), key) in cases.iter().zip(&keys) {
        let mut builder =
            tunnel_to(&sshd, &echo.to_string()).env("SSH_KEY", key.display().to_string());
        if let Some(pass) = pass {
            builder = builder.env("SSH_KEY_PASSPHRASE", *pass);
        }
        let tunnel = builder.start_tunnel();
        assert_eq!(
            round_trip(tunnel.addr, b"key works"),
            b"key works",
            "{kind} {opts:?}"
        );
        if let Some(pass) = pass {
            assert!(
                !tunnel.log().contains(pass),
                "the passphrase must not be logged"
            );
        }
    }

    let encrypted = &keys[5];
    let (_, out) = tunnel_to(&sshd, &echo.to_string())
        .env("SSH_KEY", encrypted.display().to_string())
        .tunnel()
        .run_to_failure();
    assert!(
        out.contains("is encrypted") && out.contains("SSH_KEY_PASSPHRASE"),
        "{out}"
    );
    let (_, out) = tunnel_to(&sshd, &echo.to_string())
        .env("SSH_KEY", encrypted.display().to_string())
        .env("SSH_KEY_PASSPHRASE", "wrong horse")
        .tunnel()
        .run_to_failure();
    assert!(
        out.contains("cannot decrypt") && !out.contains("wrong horse"),
        "{out}"
    );
}

#[test]
fn a_key_readable_by_others_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let sshd = Sshd::start();
    let echo = echo_server();
    std::fs::set_permissions(&sshd.client_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let tunnel = tunnel_to(&sshd, &echo.to_string()).start_tunnel();
    assert!(tunnel.log().contains("too open"), "{}", tunnel.log());
    assert!(tunnel.log().contains("chmod 600"), "{}", tunnel.log());
}

#[test]
fn a_taken_local_port_stops_start_up() {
    let sshd = Sshd::start();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (code, out) = tunnel_to(&sshd, "127.0.0.1:9")
        .env("SSH_FORWARD", format!("{port}:127.0.0.1:9"))
        .tunnel()
        .run_to_failure();
    assert_ne!(code, 0);
    assert!(
        out.contains(&format!("127.0.0.1:{port}")) && out.contains("port taken"),
        "{out}"
    );
}

#[test]
fn a_killed_bastion_is_detected_callers_fail_fast_and_traffic_resumes() {
    let mut sshd = Sshd::start();
    let echo = echo_server();
    let tunnel = tunnel_to(&sshd, &echo.to_string()).start_tunnel();
    assert_eq!(round_trip(tunnel.addr, b"before"), b"before");

    // A connection open across the failure must be closed, not left hanging.
    let mut open = TcpStream::connect(tunnel.addr).unwrap();
    open.write_all(b"x").unwrap();
    let mut one = [0u8; 1];
    open.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    open.read_exact(&mut one).unwrap();

    sshd.kill();
    assert!(
        tunnel.wait_for_log("tunnel down", Duration::from_secs(5)),
        "{}",
        tunnel.log()
    );
    let mut rest = Vec::new();
    let started = Instant::now();
    let _ = open.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the bridged socket was closed"
    );
    assert!(
        closes_fast(tunnel.addr, Duration::from_secs(1)),
        "new connections fail fast while down"
    );

    std::thread::sleep(Duration::from_secs(2));
    sshd.spawn();
    let back = wait_until(Duration::from_secs(10), || {
        try_round_trip(tunnel.addr, b"after").is_ok_and(|back| back == b"after")
    });
    assert!(back.is_some(), "traffic did not resume:\n{}", tunnel.log());
    assert!(tunnel.log().contains("tunnel up again"), "{}", tunnel.log());
}

#[test]
fn a_frozen_bastion_is_detected_by_keepalives() {
    let sshd = Sshd::start();
    let echo = echo_server();
    let tunnel = tunnel_to(&sshd, &echo.to_string())
        .env("SSH_KEEPALIVE_INTERVAL", "1s")
        .env("SSH_KEEPALIVE_MAX", "2")
        .start_tunnel();
    assert_eq!(round_trip(tunnel.addr, b"warm"), b"warm");
    let sessions = sshd.session_pids();
    assert!(!sessions.is_empty(), "no session process found");
    for pid in &sessions {
        support::signal(*pid, "STOP");
    }
    let started = Instant::now();
    let detected = tunnel.wait_for_log("stopped answering keepalives", Duration::from_secs(10));
    let elapsed = started.elapsed();
    for pid in &sessions {
        support::signal(*pid, "CONT");
    }
    assert!(detected, "{}", tunnel.log());
    // keepalive 1 s × 2 unanswered, plus one tick of slack.
    assert!(
        elapsed <= Duration::from_secs(5),
        "detected after {elapsed:?}"
    );
}

#[test]
fn a_channel_to_a_closed_port_fails_fast_and_the_session_stays_up() {
    let sshd = Sshd::start();
    let port = free_port();
    let tunnel = tunnel_to(&sshd, &format!("127.0.0.1:{port}")).start_tunnel();
    assert!(closes_fast(tunnel.addr, Duration::from_secs(3)));
    assert!(tunnel.wait_for_log("could not open a channel", Duration::from_secs(5)));

    // Now something listens there: the same session carries it.
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let _ = s.write_all(b"now open");
        }
    });
    let mut stream = TcpStream::connect(tunnel.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 8];
    stream.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"now open");
    assert!(!tunnel.log().contains("tunnel down"), "{}", tunnel.log());
}
