//! `known_hosts.rs` decides whether the bastion's host key is the one we
//! expect, reading OpenSSH's `known_hosts` format: plain and hashed (`|1|`)
//! host patterns, `[host]:port` for non-standard ports, comma-separated
//! lists, `!` negation, `*`/`?` wildcards and the `@revoked` marker. It knows
//! nothing of sockets; the session asks it about one key.

use std::path::Path;

use anyhow::{Context, Result};
use base64ct::{Base64, Encoding};
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::{HashAlg, PublicKey};
use sha1::Sha1;

/// What the file says about a host's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A line lists this key for this host.
    Trusted,
    /// An `@revoked` line lists this key.
    Revoked,
    /// Lines name this host, but with other keys: the key changed (or the
    /// host is being impersonated). Holds those keys' fingerprints.
    Changed(Vec<String>),
    /// No line names this host.
    Unknown,
}

/// The host name as OpenSSH writes it in known_hosts: bare for port 22,
/// `[host]:port` otherwise.
pub fn host_pattern(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// The line to add to known_hosts to trust `key` for `host:port`.
pub fn line_for(host: &str, port: u16, key: &PublicKey) -> Result<String> {
    let mut key = key.clone();
    key.set_comment("");
    let text = key.to_openssh().context("encoding the host key")?;
    Ok(format!("{} {}", host_pattern(host, port), text.trim()))
}

/// `SHA256:…`, as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Checks `key` for `host:port` against the text of a known_hosts file.
pub fn check(text: &str, host: &str, port: u16, key: &PublicKey) -> Verdict {
    let name = host_pattern(host, port);
    let mut others = Vec::new();
    let mut trusted = false;
    for line in text.lines() {
        let Some(entry) = Entry::parse(line) else {
            continue;
        };
        if !entry.matches_host(&name) {
            continue;
        }
        let same = entry.key.key_data() == key.key_data();
        match (entry.marker, same) {
            (Marker::Revoked, true) => return Verdict::Revoked,
            (Marker::Revoked, false) | (Marker::CertAuthority, _) => {}
            (Marker::None, true) => trusted = true,
            (Marker::None, false) => others.push(fingerprint(&entry.key)),
        }
    }
    if trusted {
        Verdict::Trusted
    } else if others.is_empty() {
        Verdict::Unknown
    } else {
        Verdict::Changed(others)
    }
}

/// How many trusting (not `@revoked`) lines of `text` name `host:port`.
pub fn entries_for(text: &str, host: &str, port: u16) -> usize {
    let name = host_pattern(host, port);
    text.lines()
        .filter_map(Entry::parse)
        .filter(|e| e.marker == Marker::None && e.matches_host(&name))
        .count()
}

/// Reads `path` (a missing file knows no hosts) and checks `key`.
pub fn check_file(path: &Path, host: &str, port: u16, key: &PublicKey) -> Result<Verdict> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", path.display())),
    };
    Ok(check(&text, host, port, key))
}

/// Appends the line trusting `key` (the `accept-new` policy).
pub fn append(path: &Path, host: &str, port: u16, key: &PublicKey) -> Result<()> {
    use std::io::Write;
    let line = line_for(host, port, key)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).ok();
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    writeln!(file, "{line}").with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

struct Entry<'a> {
    marker: Marker,
    hosts: &'a str,
    key: PublicKey,
}

impl<'a> Entry<'a> {
    /// One line; `None` for comments, blanks and lines that do not parse
    /// (OpenSSH skips those too).
    fn parse(line: &'a str) -> Option<Self> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let mut fields = line.split_whitespace();
        let mut first = fields.next()?;
        let marker = match first {
            "@revoked" => Marker::Revoked,
            "@cert-authority" => Marker::CertAuthority,
            _ => Marker::None,
        };
        if marker != Marker::None {
            first = fields.next()?;
        }
        let key_type = fields.next()?;
        let key_data = fields.next()?;
        let key = PublicKey::from_openssh(&format!("{key_type} {key_data}")).ok()?;
        Some(Entry {
            marker,
            hosts: first,
            key,
        })
    }

    /// OpenSSH semantics: any positive match and no negated match.
    fn matches_host(&self, name: &str) -> bool {
        if let Some(hashed) = self.hosts.strip_prefix("|1|") {
            return hashed_matches(hashed, name);
        }
        let mut matched = false;
        for pattern in self.hosts.split(',') {
            if let Some(negated) = pattern.strip_prefix('!') {
                if wildcard(negated, name) {
                    return false;
                }
            } else if wildcard(pattern, name) {
                matched = true;
            }
        }
        matched
    }
}

/// `|1|salt|hash`: hash = HMAC-SHA1(key = salt, name), both base64.
fn hashed_matches(hashed: &str, name: &str) -> bool {
    let Some((salt, hash)) = hashed.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (Base64::decode_vec(salt), Base64::decode_vec(hash)) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// Case-insensitive glob with `*` and `?`, as OpenSSH matches host patterns.
fn wildcard(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let n: Vec<char> = name.to_ascii_lowercase().chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN97qfSGsTUUHknl29xtaX8JO4mQABbKJVNJ+cQ/5Vtv";

    fn key(text: &str) -> PublicKey {
        PublicKey::from_openssh(text).unwrap()
    }

    fn hashed(name: &str, salt: &[u8]) -> String {
        let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(salt).unwrap();
        mac.update(name.as_bytes());
        let hash = mac.finalize().into_bytes();
        format!(
            "|1|{}|{}",
            Base64::encode_string(salt),
            Base64::encode_string(&hash)
        )
    }

    #[test]
    fn plain_entries_ports_and_lists() {
        let a = key(KEY_A);
        let file = format!(
            "# comment\n\nbastion.example.edu,10.0.0.5 {KEY_A}\n[db.example.edu]:2222 {KEY_A}\n"
        );
        assert_eq!(
            check(&file, "bastion.example.edu", 22, &a),
            Verdict::Trusted
        );
        assert_eq!(check(&file, "10.0.0.5", 22, &a), Verdict::Trusted);
        assert_eq!(
            check(&file, "BASTION.example.edu", 22, &a),
            Verdict::Trusted
        );
        assert_eq!(check(&file, "db.example.edu", 2222, &a), Verdict::Trusted);
        // Port 22 entries do not cover other ports, and vice versa.
        assert_eq!(
            check(&file, "bastion.example.edu", 2222, &a),
            Verdict::Unknown
        );
        assert_eq!(check(&file, "db.example.edu", 22, &a), Verdict::Unknown);
    }

    #[test]
    fn hashed_entries_match_only_their_host() {
        let a = key(KEY_A);
        let file = format!(
            "{} {KEY_A}\n",
            hashed("[127.0.0.1]:2200", b"0123456789abcdefghij")
        );
        assert_eq!(check(&file, "127.0.0.1", 2200, &a), Verdict::Trusted);
        assert_eq!(check(&file, "127.0.0.1", 2201, &a), Verdict::Unknown);
        assert_eq!(
            check("|1|garbage|more {KEY_A}", "x", 22, &a),
            Verdict::Unknown
        );
    }

    #[test]
    fn a_different_key_is_a_change_and_revoked_wins() {
        let (a, b) = (key(KEY_A), key(KEY_B));
        let file = format!("bastion {KEY_B}\n");
        assert_eq!(
            check(&file, "bastion", 22, &a),
            Verdict::Changed(vec![fingerprint(&b)])
        );
        let file = format!("bastion {KEY_A}\n@revoked * {KEY_A}\n");
        assert_eq!(check(&file, "bastion", 22, &a), Verdict::Revoked);
        let file = format!("@revoked * {KEY_B}\nbastion {KEY_A}\n");
        assert_eq!(check(&file, "bastion", 22, &a), Verdict::Trusted);
    }

    #[test]
    fn wildcards_and_negation() {
        let a = key(KEY_A);
        let file = format!("*.example.edu,!evil.example.edu {KEY_A}\n");
        assert_eq!(
            check(&file, "bastion.example.edu", 22, &a),
            Verdict::Trusted
        );
        assert_eq!(check(&file, "evil.example.edu", 22, &a), Verdict::Unknown);
        assert!(wildcard("b?st*", "bastion"));
        assert!(!wildcard("b?st", "bastion"));
    }

    #[test]
    fn the_line_to_add_round_trips() {
        let a = key(KEY_A);
        let line = line_for("127.0.0.1", 2200, &a).unwrap();
        assert!(line.starts_with("[127.0.0.1]:2200 ssh-ed25519 "), "{line}");
        assert_eq!(check(&line, "127.0.0.1", 2200, &a), Verdict::Trusted);
        assert!(fingerprint(&a).starts_with("SHA256:"));
    }
}
