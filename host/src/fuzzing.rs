//! `fuzzing.rs` holds the whole body of every fuzz target in `fuzz/`, so
//! that the targets and the regression tests (`tests/fuzz_regressions.rs`)
//! run the same code. Each function reads arbitrary bytes as one input for
//! one parser of outside data and asserts what must hold for it; a panic is
//! a finding. It owns no behaviour of the host: it only drives the modules
//! that parse what comes from outside.
//!
//! - [`config`]: `burrow.toml` text, environment and flags → [`Config`];
//! - [`forward`]: `SSH_FORWARD` ([`config::parse_forward`]);
//! - [`known_hosts`]: known_hosts text ([`known_hosts::check`]);
//! - [`db_to_mysql`] and [`db_from_mysql`]: database values both ways;
//! - [`http`]: a request stream through hyper, the server's checks and the
//!   conversion into the guest's `wasi:http` request, and the guest's
//!   response back out.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64ct::{Base64, Encoding};
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use mysql_async::Value as My;
use mysql_async::consts::{ColumnFlags, ColumnType as Wire};
use russh::keys::PublicKey;
use sha1::Sha1;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use wasmtime::Store;
use wasmtime::component::Resource;
use wasmtime_wasi::p2::StreamError;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types as wit;
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};

use crate::config::{self, Config, Forward, Overrides};
use crate::db::bindings::burrow::db::types::{ColumnType, Date, Datetime, Time, Value};
use crate::db::values::{self, ColumnInfo};
use crate::runtime::{CallLimits, GuestState, Runtime};
use crate::server::{self, RequestIds, ResponseBody};
use crate::tunnel::known_hosts::{self, Verdict};

/// Reads structured values off the front of a fuzz input; once the input
/// runs dry every read returns zeros or nothing, so any input is valid.
struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    fn bool(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        for b in &mut out {
            *b = self.byte();
        }
        out
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }

    fn bytes(&mut self, len: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(len.min(self.data.len()));
        self.data = rest;
        head
    }

    /// A chunk of up to 255 bytes, preceded by its length.
    fn chunk(&mut self) -> &'a [u8] {
        let len = usize::from(self.byte());
        self.bytes(len)
    }

    fn text(&mut self) -> String {
        String::from_utf8_lossy(self.chunk()).into_owned()
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[usize::from(self.byte()) % items.len()]
    }

    fn rest(self) -> &'a [u8] {
        self.data
    }
}

// ---------------------------------------------------------------- config

/// Every environment variable `Config` reads.
const ENV_NAMES: [&str; 33] = [
    "BURROW_ADMIN_LISTEN",
    "BURROW_ADMIN_TOKEN",
    "BURROW_ADMIN_TOKEN_FILE",
    "BURROW_CACHE_DIR",
    "BURROW_LISTEN",
    "BURROW_MAX_CONNECTIONS",
    "BURROW_MAX_REQUESTS",
    "BURROW_WATCH",
    "BURROW_WATCH_DEBOUNCE",
    "DB_ACQUIRE_TIMEOUT",
    "DB_HOST",
    "DB_NAME",
    "DB_PASSWORD",
    "DB_POOL_MAX",
    "DB_PORT",
    "DB_STATEMENT_TIMEOUT",
    "DB_USER",
    "DJANGO_DEBUG",
    "DJANGO_SECRET_KEY",
    "HOME",
    "SSH_AUTH_SOCK",
    "SSH_FORWARD",
    "SSH_HOST",
    "SSH_KEEPALIVE_INTERVAL",
    "SSH_KEEPALIVE_MAX",
    "SSH_KEY",
    "SSH_KEY_PASSPHRASE",
    "SSH_KEY_PASSPHRASE_FILE",
    "SSH_KNOWN_HOSTS",
    "SSH_PORT",
    "SSH_STRICT_HOST_KEY_CHECKING",
    "SSH_USER",
    "XDG_CACHE_HOME",
];

/// Variables whose values are secrets and must never be printed.
const SECRET_ENV: [&str; 4] = [
    "DJANGO_SECRET_KEY",
    "DB_PASSWORD",
    "SSH_KEY_PASSPHRASE",
    "BURROW_ADMIN_TOKEN",
];

/// Variables naming a file that holds a secret.
const SECRET_FILE_ENV: [&str; 2] = ["SSH_KEY_PASSPHRASE_FILE", "BURROW_ADMIN_TOKEN_FILE"];

/// Starts every secret the target hands in, so a leak is easy to see.
const SECRET_MARK: &str = "zq-secret-";

/// Every name an error message may use for the setting it is about: the
/// environment, the flags and the keys of `burrow.toml`.
#[rustfmt::skip]
const SETTING_NAMES: &[&str] = &[
    // environment and flags
    "BURROW_", "DB_", "DJANGO_", "SSH_", "--route", "--listen",
    // burrow.toml: sections and top-level keys
    "listen", "debug", "cache_dir", "limits", "route", "app", "tunnel", "database", "admin",
    "watch",
    // [limits]
    "max_requests", "header_timeout", "shutdown_grace", "max_connections", "max_header_bytes",
    "max_headers", "memory", "deadline", "max_body",
    // [[route]]
    "name", "prefix", "component", "statement_timeout",
    // [tunnel]
    "host", "port", "user", "key", "known_hosts", "strict_host_key_checking", "forward",
    "keepalive", "timeout",
    // [database], [admin], [watch]
    "pool_min", "pool_max", "max_rows", "max_result_bytes", "token_file", "enabled", "debounce",
];

/// Where the config target's relative paths point: a directory holding one
/// secret file, `token`.
fn config_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("burrow-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating the fuzz config directory");
        std::fs::write(dir.join("token"), format!("{SECRET_MARK}from-a-file\n"))
            .expect("writing the fuzz secret file");
        dir
    })
}

/// A file-valued setting the config target may use: only names inside
/// [`config_dir`], so that no input makes it read a device or a FIFO.
fn safe_file(value: &toml::Value) -> bool {
    value
        .as_str()
        .is_some_and(|s| !s.is_empty() && !s.contains(['/', '\\']) && !s.starts_with('.'))
}

/// `Config::from_toml` on arbitrary text, with a small arbitrary
/// environment and flags: it never panics, an error names a setting, a
/// config it accepts keeps every rule `config.rs` states, and no secret
/// shows in its `Debug` output.
pub fn config(data: &[u8]) {
    let mut input = Input::new(data);
    let dir = config_dir();
    let secret_files = [
        String::new(),
        "/nonexistent/burrow-fuzz".to_string(),
        dir.join("token").display().to_string(),
    ];

    let mut env_values: Vec<(&'static str, String)> = Vec::new();
    for _ in 0..input.byte() % 8 {
        let key = input.pick(&ENV_NAMES);
        let value = if SECRET_ENV.contains(&key) {
            format!("{SECRET_MARK}{}", input.text())
        } else if SECRET_FILE_ENV.contains(&key) {
            secret_files[usize::from(input.byte()) % secret_files.len()].clone()
        } else {
            input.text()
        };
        env_values.push((key, value));
    }
    let overrides = Overrides {
        config_file: None,
        listen: input.bool().then(|| input.text()),
        routes: (0..input.byte() % 3).map(|_| input.text()).collect(),
    };
    let probe = input.text();
    let text = String::from_utf8_lossy(input.rest()).into_owned();

    check_setting_parsers(&probe);

    // The file's own syntax decides whether an error must name a setting
    // (a TOML syntax error is about no setting), and which file-valued
    // settings it has.
    let document = toml::from_str::<toml::Table>(&text).ok();
    if let Some(doc) = &document {
        for (section, key) in [("admin", "token_file"), ("tunnel", "key_passphrase_file")] {
            if let Some(value) = doc.get(section).and_then(|s| s.get(key))
                && !safe_file(value)
            {
                return;
            }
        }
    }

    let env: BTreeMap<&str, &str> = env_values.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // The mark may show only where the input put it outside a secret.
    let marked_elsewhere = text.contains(SECRET_MARK)
        || overrides.listen.iter().any(|l| l.contains(SECRET_MARK))
        || overrides.routes.iter().any(|r| r.contains(SECRET_MARK))
        || env
            .iter()
            .any(|(k, v)| !SECRET_ENV.contains(k) && v.contains(SECRET_MARK));
    match Config::from_toml(&text, dir, &overrides, &env) {
        Ok(config) => {
            check_config(&config);
            let printed = format!("{config:?}");
            assert!(
                marked_elsewhere || !printed.contains(SECRET_MARK),
                "a secret shows in the config's Debug output: {printed}"
            );
        }
        Err(e) => {
            let message = format!("{e:#}");
            assert!(
                marked_elsewhere || !message.contains(SECRET_MARK),
                "a secret shows in an error: {message}"
            );
            // The TOML parser's own errors name the setting by quoting its
            // line, which need not spell the key plainly (`"\u006cimits"`).
            if document.is_some() && !message.starts_with("TOML parse error at line ") {
                assert!(
                    SETTING_NAMES.iter().any(|name| message.contains(name)),
                    "the error names no setting: {message}"
                );
            }
        }
    }
}

/// The rules a validated config keeps, as `config.rs` documents them.
fn check_config(c: &Config) {
    assert!(c.limits.max_requests >= 1);
    assert!(c.limits.max_connections >= 1);
    assert!(c.limits.max_header_bytes >= 8192);
    assert!(c.limits.max_headers >= 1);
    for (i, r) in c.routes.iter().enumerate() {
        assert_eq!(
            config::normalize_prefix("prefix", &r.prefix).ok().as_ref(),
            Some(&r.prefix),
            "route prefix `{}` is not normalised",
            r.prefix
        );
        assert!(
            !r.name.is_empty()
                && r.name.len() <= 64
                && r.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "route name `{}` is outside the safe alphabet",
            r.name
        );
        assert!(r.memory_limit > 0 && r.max_body > 0 && !r.deadline.is_zero());
        for other in &c.routes[i + 1..] {
            assert_ne!(r.prefix, other.prefix, "two routes share a prefix");
            assert_ne!(r.name, other.name, "two routes share a name");
        }
    }
    if let Some(t) = &c.tunnel {
        assert!(!t.host.is_empty() && !t.user.is_empty());
        assert!(t.port != 0 && t.forward.target_port != 0);
        assert!(t.keepalive_max >= 1 && !t.keepalive_interval.is_zero());
        assert!(t.key.is_some() || t.agent.is_some());
    }
    if let Some(db) = &c.database {
        assert!(!db.name.is_empty() && !db.user.is_empty());
        assert!(db.pool_max >= 1 && db.pool_min <= db.pool_max);
        assert!(db.max_rows >= 1);
        if let Some(host) = &db.host {
            assert!(host.parse::<IpAddr>().is_ok(), "DB_HOST `{host}` is no IP");
        }
    }
    if let Some(token) = &c.admin.token {
        assert!(token.expose().len() >= 16);
    }
    if let Some(addr) = c.admin.listen {
        assert!(addr.ip().is_loopback() || c.admin.token.is_some());
    }
    assert!(!c.watch.debounce.is_zero());
}

/// The single-value parsers behind many settings: errors name the key,
/// results are in range, prefixes normalise once and for all.
fn check_setting_parsers(text: &str) {
    const KEY: &str = "fuzz.setting";
    let names_key = |e: anyhow::Error| {
        let message = format!("{e:#}");
        assert!(message.contains(KEY), "error without its key: {message}");
    };
    match config::parse_size(KEY, text) {
        Ok(n) => assert!(n > 0),
        Err(e) => names_key(e),
    }
    match config::parse_duration(KEY, text) {
        Ok(d) => assert!(!d.is_zero()),
        Err(e) => names_key(e),
    }
    if let Err(e) = config::parse_bool(KEY, text) {
        names_key(e);
    }
    match config::normalize_prefix(KEY, text) {
        Ok(p) => {
            assert!(p.starts_with('/'));
            let again = config::normalize_prefix(KEY, &p).expect("a normalised prefix is valid");
            assert_eq!(again, p, "normalising `{text}` twice differs");
        }
        Err(e) => names_key(e),
    }
}

// --------------------------------------------------------------- forward

/// `SSH_FORWARD` in `ssh -L` form, as [`config::parse_forward`] reads it.
fn ssh_l_form(f: &Forward) -> String {
    let bind = match f.bind {
        IpAddr::V6(a) => format!("[{a}]"),
        a => a.to_string(),
    };
    let host = if f.target_host.contains(':') || f.target_host.starts_with('[') {
        format!("[{}]", f.target_host)
    } else {
        f.target_host.clone()
    };
    format!("{bind}:{}:{host}:{}", f.port, f.target_port)
}

/// [`config::parse_forward`] on arbitrary text: it never panics, an error
/// names `SSH_FORWARD`, and an accepted forward written back in `ssh -L`
/// form parses to the same value.
pub fn forward(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match config::parse_forward("SSH_FORWARD", &text) {
        Ok(f) => {
            assert!(f.target_port != 0, "`{text}`: target port 0");
            assert!(
                !f.target_host.is_empty() && !f.target_host.contains(char::is_whitespace),
                "`{text}`: target host `{}`",
                f.target_host
            );
            let again = ssh_l_form(&f);
            let g = config::parse_forward("SSH_FORWARD", &again).unwrap_or_else(|e| {
                panic!("`{text}` gave {f:?}, written as `{again}`, which fails: {e:#}")
            });
            assert_eq!(f, g, "`{text}` → `{again}` does not round-trip");
        }
        Err(e) => {
            let message = format!("{e:#}");
            assert!(message.contains("SSH_FORWARD"), "{message}");
        }
    }
}

// ----------------------------------------------------------- known_hosts

/// Host keys of each kind the tunnel accepts.
const HOST_KEYS: [&str; 3] = [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDCriTqUTf0OBCkr+CIIvIUKRTFgANAQsHOq5nc7kAvs",
    "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBCoqC2B3IB/UQXD8eiU1mN9RoWUdYd2Xh7a2TblhomtYaUNyKA7xSCjuAOLEl5MZOl+Z5DYkh9207CNUgCYxYAg=",
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQChiLCYijKgx6cCK6TiVWaU4x+ogT1WmHAo90vhsxqcj7+UfoXxN1x252MIRsGISnLV5VYUqQ4hnDxpBg7EqS+xntPC6b23etF6LjcAoJnTIX1x37KDAjuEN1x75Ts9hac7RhwJuYujWY46aHBpvOIyRacisBEpK/ctsaItyffcmW86Nwt2sO6lHIvUMAibbEkhquRy3B7l8VtcTn6UzJisrIgqF5h3opxggBulxZir+PVMP/PJqXj++41qBgozRpXP8ndXgyk5GqyNFOqCxHhEoPFikL9ZgBxf8HWdNLDs3jUQv7KMwTMNCsR77tJZH01+++b5WMmlJ80/SEYHKDur",
];

fn host_keys() -> &'static [PublicKey] {
    static KEYS: OnceLock<Vec<PublicKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        HOST_KEYS
            .iter()
            .map(|k| PublicKey::from_openssh(k).expect("a valid test key"))
            .collect()
    })
}

/// A host name that means only itself in a known_hosts host field: no
/// whitespace, no list separator, negation or wildcard, no marker, comment
/// or hash prefix.
fn plain_host(host: &str) -> bool {
    !host.is_empty()
        && !host.starts_with(['@', '#', '|'])
        && !host.contains(|c: char| c.is_whitespace() || ",!*?".contains(c))
}

/// [`known_hosts::check`] on arbitrary text never panics; the line
/// [`known_hosts::line_for`] writes for a key (and its hashed form) trusts
/// exactly that key, even among arbitrary other lines, unless one of those
/// revokes it.
pub fn known_hosts(data: &[u8]) {
    let mut input = Input::new(data);
    let keys = host_keys();
    let which = usize::from(input.byte()) % keys.len();
    let (key, other) = (&keys[which], &keys[(which + 1) % keys.len()]);
    let host = input.text();
    let port = input.u16();
    let salt = input.chunk().to_vec();
    let cut = usize::from(input.u16());
    let rest = String::from_utf8_lossy(input.rest()).into_owned();
    let mut cut = cut % (rest.len() + 1);
    while !rest.is_char_boundary(cut) {
        cut -= 1;
    }
    let (before, after) = rest.split_at(cut);

    let garbage = format!("{before}\n{after}");
    let alone = known_hosts::check(&garbage, &host, port, key);
    known_hosts::entries_for(&garbage, &host, port);
    if !plain_host(&host) {
        return;
    }

    let line = known_hosts::line_for(&host, port, key).expect("encoding a valid key");
    let pattern = known_hosts::host_pattern(&host, port);
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(&salt).expect("HMAC takes any key");
    mac.update(pattern.as_bytes());
    let hashed = format!(
        "|1|{}|{} {}",
        Base64::encode_string(&salt),
        Base64::encode_string(&mac.finalize().into_bytes()),
        line.split_once(' ').expect("host, then key").1
    );
    for line in [&line, &hashed] {
        assert_eq!(
            known_hosts::check(line, &host, port, key),
            Verdict::Trusted,
            "`{line}` does not trust its own key"
        );
        assert_eq!(
            known_hosts::check(line, &host, port, other),
            Verdict::Changed(vec![known_hosts::fingerprint(key)]),
            "`{line}` does not report another key as a change"
        );
        assert_eq!(known_hosts::entries_for(line, &host, port), 1);
        let text = format!("{before}\n{line}\n{after}");
        let expected = if alone == Verdict::Revoked {
            Verdict::Revoked
        } else {
            Verdict::Trusted
        };
        assert_eq!(
            known_hosts::check(&text, &host, port, key),
            expected,
            "`{line}` among other lines: {text:?}"
        );
    }
}

// ------------------------------------------------------------- db values

/// Every column type of the contract.
const COLUMN_TYPES: [ColumnType; 26] = [
    ColumnType::Tinyint,
    ColumnType::Smallint,
    ColumnType::Mediumint,
    ColumnType::Int,
    ColumnType::Bigint,
    ColumnType::Float,
    ColumnType::Double,
    ColumnType::Decimal,
    ColumnType::Date,
    ColumnType::Time,
    ColumnType::Datetime,
    ColumnType::Timestamp,
    ColumnType::Year,
    ColumnType::Char,
    ColumnType::Varchar,
    ColumnType::Text,
    ColumnType::Binary,
    ColumnType::Varbinary,
    ColumnType::Blob,
    ColumnType::Enum,
    ColumnType::Set,
    ColumnType::Bit,
    ColumnType::Json,
    ColumnType::Geometry,
    ColumnType::Null,
    ColumnType::Other,
];

fn date(input: &mut Input) -> Date {
    Date {
        year: input.u16() % 10_010,
        month: input.byte() % 16,
        day: input.byte() % 40,
    }
}

fn datetime(input: &mut Input) -> Datetime {
    Datetime {
        date: date(input),
        hour: input.byte() % 30,
        minute: input.byte() % 64,
        second: input.byte() % 64,
        microsecond: input.u32() % 1_100_000,
    }
}

/// Decimal-looking text: mostly digits, with signs, points and exponents.
fn decimal_text(input: &mut Input) -> String {
    const ALPHABET: &[u8] = b"0123456789012345678901234567890123456789.-+eE";
    input
        .chunk()
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

fn wit_value(input: &mut Input) -> Value {
    match input.byte() % 15 {
        0 => Value::Null,
        1 => Value::Int(input.u64() as i64),
        2 => Value::Uint(input.u64()),
        3 => Value::Float(f32::from_bits(input.u32())),
        4 => Value::Double(f64::from_bits(input.u64())),
        5 => Value::Decimal(decimal_text(input)),
        6 => Value::Decimal(input.text()),
        7 => Value::Text(input.text()),
        8 => Value::Bytes(input.chunk().to_vec()),
        9 => Value::Date(date(input)),
        10 => Value::Time(Time {
            negative: input.bool(),
            hours: input.u16() % 900,
            minutes: input.byte() % 64,
            seconds: input.byte() % 64,
            microseconds: input.u32() % 1_100_000,
        }),
        11 => Value::Datetime(datetime(input)),
        12 => Value::Timestamp(datetime(input)),
        13 => Value::Json(input.text()),
        _ => Value::Bit(input.u64()),
    }
}

/// The column a value of this kind is read back from, exactly.
fn column_for(value: &Value, input: &mut Input) -> ColumnInfo {
    let (kind, unsigned) = match value {
        Value::Null => (input.pick(&COLUMN_TYPES), input.bool()),
        Value::Int(_) => (
            input.pick(&[
                ColumnType::Tinyint,
                ColumnType::Smallint,
                ColumnType::Mediumint,
                ColumnType::Int,
                ColumnType::Bigint,
                ColumnType::Year,
            ]),
            false,
        ),
        Value::Uint(_) => (ColumnType::Bigint, true),
        Value::Float(_) => (ColumnType::Float, false),
        Value::Double(_) => (ColumnType::Double, false),
        Value::Decimal(_) => (ColumnType::Decimal, false),
        Value::Text(_) => (
            input.pick(&[
                ColumnType::Char,
                ColumnType::Varchar,
                ColumnType::Text,
                ColumnType::Enum,
                ColumnType::Set,
            ]),
            false,
        ),
        Value::Bytes(_) => (
            input.pick(&[
                ColumnType::Binary,
                ColumnType::Varbinary,
                ColumnType::Blob,
                ColumnType::Geometry,
            ]),
            false,
        ),
        Value::Date(_) => (ColumnType::Date, false),
        Value::Time(_) => (ColumnType::Time, false),
        Value::Datetime(_) => (ColumnType::Datetime, false),
        Value::Timestamp(_) => (ColumnType::Timestamp, false),
        Value::Json(_) => (ColumnType::Json, false),
        Value::Bit(_) => (ColumnType::Bit, true),
    };
    ColumnInfo { kind, unsigned }
}

/// How the server sends `value` over the text protocol (queries without
/// parameters), for the value kinds that have a text form.
fn text_protocol(value: &My, column: &ColumnInfo) -> Option<My> {
    let text = match value {
        My::Int(i) => i.to_string(),
        My::UInt(u) if column.kind == ColumnType::Bit => {
            return Some(My::Bytes(u.to_be_bytes().to_vec()));
        }
        My::UInt(u) => u.to_string(),
        My::Float(f) => f.to_string(),
        My::Double(d) => d.to_string(),
        My::Date(y, m, d, ..) if column.kind == ColumnType::Date => {
            format!("{y:04}-{m:02}-{d:02}")
        }
        My::Date(y, mo, d, h, mi, s, us) => {
            format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}")
        }
        My::Time(negative, days, h, m, s, us) => format!(
            "{}{:02}:{m:02}:{s:02}.{us:06}",
            if *negative { "-" } else { "" },
            days * 24 + u32::from(*h)
        ),
        My::NULL | My::Bytes(_) => return None,
    };
    Some(My::Bytes(text.into_bytes()))
}

/// Values compared as the guest would see them (the bindings derive no
/// `PartialEq`; `Debug` tells `-0.0` from `0.0` and shows every field).
fn same(a: &Value, b: &Value) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

/// [`values::to_mysql`] on arbitrary guest values never panics, and every
/// value it accepts comes back unchanged from [`values::from_mysql`] for a
/// column of its type, over both the binary and the text protocol.
pub fn db_to_mysql(data: &[u8]) {
    let mut input = Input::new(data);
    while !input.data.is_empty() {
        let value = wit_value(&mut input);
        let column = column_for(&value, &mut input);
        let wire = match values::to_mysql(value.clone()) {
            Ok(wire) => wire,
            Err(message) => {
                assert!(!message.is_empty());
                assert!(
                    matches!(
                        value,
                        Value::Float(_)
                            | Value::Double(_)
                            | Value::Decimal(_)
                            | Value::Date(_)
                            | Value::Time(_)
                            | Value::Datetime(_)
                            | Value::Timestamp(_)
                    ),
                    "{value:?} refused: {message}"
                );
                continue;
            }
        };
        let back = values::from_mysql(wire.clone(), &column)
            .unwrap_or_else(|e| panic!("{value:?} → {wire:?} → {column:?}: {e}"));
        assert!(same(&back, &value), "{value:?} → {wire:?} → {back:?}");
        if let Some(text) = text_protocol(&wire, &column) {
            let back = values::from_mysql(text.clone(), &column)
                .unwrap_or_else(|e| panic!("{value:?} as text {text:?} → {column:?}: {e}"));
            assert!(same(&back, &value), "{value:?} as text {text:?} → {back:?}");
        }
    }
}

fn mysql_value(input: &mut Input) -> My {
    match input.byte() % 8 {
        0 => My::NULL,
        1 => My::Bytes(input.chunk().to_vec()),
        2 => My::Int(input.u64() as i64),
        3 => My::UInt(input.u64()),
        4 => My::Float(f32::from_bits(input.u32())),
        5 => My::Double(f64::from_bits(input.u64())),
        6 => My::Date(
            input.u16(),
            input.byte(),
            input.byte(),
            input.byte(),
            input.byte(),
            input.byte(),
            input.u32(),
        ),
        _ => My::Time(
            input.bool(),
            input.u32(),
            input.byte(),
            input.byte(),
            input.byte(),
            input.u32(),
        ),
    }
}

/// Whether `value` is what a column of this kind may yield.
fn fits(value: &Value, column: &ColumnInfo) -> bool {
    use ColumnType as C;
    match (column.kind, value) {
        (_, Value::Null) => true,
        (C::Year, Value::Int(_)) => true,
        (C::Tinyint | C::Smallint | C::Mediumint | C::Int | C::Bigint, Value::Int(_)) => {
            !column.unsigned
        }
        (C::Tinyint | C::Smallint | C::Mediumint | C::Int | C::Bigint, Value::Uint(_)) => {
            column.unsigned
        }
        (C::Float, Value::Float(_)) | (C::Double, Value::Double(_)) => true,
        (C::Decimal, Value::Decimal(_)) | (C::Json, Value::Json(_)) => true,
        (C::Date, Value::Date(_)) | (C::Time, Value::Time(_)) => true,
        (C::Datetime, Value::Datetime(_)) | (C::Timestamp, Value::Timestamp(_)) => true,
        (C::Bit, Value::Bit(_)) => true,
        (C::Binary | C::Varbinary | C::Blob | C::Geometry, Value::Bytes(_)) => true,
        (C::Char | C::Varchar | C::Text | C::Enum | C::Set, Value::Text(_)) => true,
        (
            C::Null | C::Other,
            Value::Text(_)
            | Value::Bytes(_)
            | Value::Int(_)
            | Value::Uint(_)
            | Value::Float(_)
            | Value::Double(_),
        ) => true,
        _ => false,
    }
}

/// Arbitrary column metadata through [`values::describe`] and arbitrary
/// server values through [`values::from_mysql`] never panic; a value read
/// has the column's kind, and when the guest could send it back as a
/// parameter ([`values::to_mysql`]) it reads back the same.
pub fn db_from_mysql(data: &[u8]) {
    let mut input = Input::new(data);
    let wire_type = Wire::try_from(input.byte()).unwrap_or(Wire::MYSQL_TYPE_STRING);
    let name = input.chunk();
    let column = mysql_async::Column::new(wire_type)
        .with_flags(ColumnFlags::from_bits_truncate(input.u16()))
        .with_character_set(input.pick(&[63, 33, 45, 8, 255]))
        .with_decimals(input.byte())
        .with_name(name);
    let (described, info) = values::describe(&column);
    assert_eq!(described.column_type, info.kind);
    assert_eq!(described.unsigned, info.unsigned);
    assert_eq!(described.name, String::from_utf8_lossy(name));
    if !matches!(
        info.kind,
        ColumnType::Decimal | ColumnType::Time | ColumnType::Datetime | ColumnType::Timestamp
    ) {
        assert_eq!(described.decimals, 0);
    }

    while !input.data.is_empty() {
        let wire = mysql_value(&mut input);
        let Ok(value) = values::from_mysql(wire.clone(), &info) else {
            continue;
        };
        assert!(fits(&value, &info), "{wire:?} as {info:?} gave {value:?}");
        if let Ok(param) = values::to_mysql(value.clone()) {
            let back = values::from_mysql(param.clone(), &info)
                .unwrap_or_else(|e| panic!("{value:?} sent back as {param:?} fails: {e}"));
            assert!(
                same(&back, &value),
                "{wire:?} as {info:?} gave {value:?}, sent back as {param:?} gave {back:?}"
            );
        }
    }
}

// ------------------------------------------------------------------ http

/// Route prefixes the HTTP target may serve (a subset per input).
const PREFIXES: [&str; 5] = ["/", "/api", "/api/v1", "/static", "/a-b.c"];

/// One tokio runtime and one wasmtime [`Runtime`] for every input.
fn runtimes() -> &'static (tokio::runtime::Runtime, Arc<Runtime>) {
    static BOTH: OnceLock<(tokio::runtime::Runtime, Arc<Runtime>)> = OnceLock::new();
    BOTH.get_or_init(|| {
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("building a tokio runtime");
        let runtime = Runtime::new(
            1,
            16 * 1024 * 1024,
            None,
            wasmtime_wasi_config::WasiConfigVariables::new(),
            None,
        )
        .expect("building the wasmtime runtime");
        (tokio, Arc::new(runtime))
    })
}

/// What one connection of the HTTP target shares between its requests.
struct Conn {
    runtime: Arc<Runtime>,
    ids: RequestIds,
    /// Longest prefix first, as the registry orders them.
    prefixes: Vec<&'static str>,
    max_body: u64,
    local: Option<SocketAddr>,
    status: u16,
    /// The stand-in guests' tasks, joined at the end so that their
    /// assertions count.
    guests: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// Arbitrary bytes as the request stream of one connection, served by
/// hyper with burrow's header limits; every request hyper parses goes
/// through the server's checks (request id, route, body size), is turned
/// into a `wasi:http` request the way the runtime does it, and is read by a
/// stand-in guest through the wasi:http host calls a real one makes. The
/// guest answers with the request's headers and body, which go back out
/// through the server's response filter. Nothing panics or stalls, and the
/// guest sees what hyper parsed.
pub fn http(data: &[u8]) {
    let mut input = Input::new(data);
    let max_body = 1 + u64::from(input.u16());
    let local = input
        .bool()
        .then(|| SocketAddr::from(([127, 0, 0, 1], 8000)));
    let mask = input.byte();
    let status = input.u16();
    let stream = input.rest();

    let (tokio, runtime) = runtimes();
    let mut prefixes: Vec<&str> = PREFIXES
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, p)| *p)
        .collect();
    prefixes.sort_by_key(|p| std::cmp::Reverse(p.len()));
    let conn = Arc::new(Conn {
        runtime: Arc::clone(runtime),
        ids: RequestIds::new(),
        prefixes,
        max_body,
        local,
        status,
        guests: Mutex::new(Vec::new()),
    });

    tokio.block_on(async {
        let (client, server_io) = tokio::io::duplex(64 * 1024);
        let (mut client_read, mut client_write) = tokio::io::split(client);
        let write = async move {
            let _ = client_write.write_all(stream).await;
            let _ = client_write.shutdown().await;
        };
        let read = async move {
            let mut out = Vec::new();
            let _ = client_read.read_to_end(&mut out).await;
            out
        };
        let service_conn = Arc::clone(&conn);
        let service = service_fn(move |req| {
            let conn = Arc::clone(&service_conn);
            async move { Ok::<_, std::convert::Infallible>(handle(&conn, req).await) }
        });
        let serve = http1::Builder::new()
            // The whole stream is written, then the client's side shut:
            // without half-close, hyper would drop the last request unread.
            .half_close(true)
            .timer(TokioTimer::new())
            .header_read_timeout(config::DEFAULT_HEADER_TIMEOUT)
            .max_buf_size(config::DEFAULT_MAX_HEADER_BYTES)
            .max_headers(config::DEFAULT_MAX_HEADERS)
            .serve_connection(TokioIo::new(server_io), service);
        let all = async {
            let ((), out, _) = tokio::join!(write, read, serve);
            out
        };
        let out = tokio::time::timeout(Duration::from_secs(30), all)
            .await
            .expect("the connection stalled");
        assert!(
            out.is_empty() || out.starts_with(b"HTTP/1."),
            "the server wrote something other than an HTTP response"
        );
        let guests = std::mem::take(&mut *conn.guests.lock().expect("guest list"));
        for guest in guests {
            if let Err(e) = guest.await
                && e.is_panic()
            {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    });
}

/// What `Server::handle` does with one request, with a stand-in guest.
async fn handle(conn: &Conn, req: Request<Incoming>) -> Response<ResponseBody> {
    let given = req.headers().get("x-request-id").cloned();
    let id: Arc<str> = conn.ids.for_request(given.as_ref()).into();
    assert!(
        !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
        "request id `{id}`"
    );
    assert!(HeaderValue::from_str(&id).is_ok());

    let path = req.uri().path().to_string();
    let Some(prefix) = conn
        .prefixes
        .iter()
        .find(|p| crate::registry::prefix_matches(p, &path))
    else {
        return server::error_response(StatusCode::NOT_FOUND, "Not found.", None, &id);
    };
    assert!(
        *prefix == "/" || path == *prefix || path.starts_with(&format!("{prefix}/")),
        "`{prefix}` matched `{path}` off a segment boundary"
    );

    if let Some(len) = server::content_length(&req)
        && len > conn.max_body
    {
        return server::error_response(StatusCode::PAYLOAD_TOO_LARGE, "too large", None, &id);
    }
    let expected = Expected {
        method: req.method().as_str().to_string(),
        path_with_query: req.uri().path_and_query().map(|p| p.as_str().to_string()),
        headers: req.headers().len(),
        content_length: server::content_length(&req)
            .filter(|_| !req.headers().contains_key(header::TRANSFER_ENCODING)),
        max_body: conn.max_body,
        status: conn.status,
    };
    let host_ok = req.uri().authority().is_some()
        || match req.headers().get(header::HOST) {
            Some(host) => host.to_str().is_ok(),
            None => conn.local.is_some(),
        };

    let req = server::for_guest(req, conn.local, conn.max_body);
    let limits = CallLimits {
        memory: 16 * 1024 * 1024,
        deadline: Duration::from_secs(10),
        statement_timeout: None,
    };
    let mut store = conn.runtime.new_store(
        Arc::clone(&id),
        Arc::from(*prefix),
        limits,
        Instant::now() + limits.deadline,
    );
    let (sender, receiver) = oneshot::channel();
    let (wasi_req, out) = match crate::runtime::incoming_request(&mut store, req, sender) {
        Ok(handles) => handles,
        Err(failure) => {
            assert!(
                !host_ok,
                "a request with an authority was refused: {failure}"
            );
            return server::error_response(StatusCode::INTERNAL_SERVER_ERROR, "error", None, &id);
        }
    };
    let guest = tokio::spawn(guest(store, wasi_req, out, expected));
    conn.guests.lock().expect("guest list").push(guest);

    match receiver.await {
        Ok(Ok(response)) => {
            let mut response = response.map(|body| {
                body.map_err(|e| -> Box<dyn std::error::Error + Send + Sync> {
                    format!("guest body: {e:?}").into()
                })
                .boxed_unsync()
            });
            server::drop_hop_by_hop(response.headers_mut(), &id, prefix);
            if let Ok(value) = HeaderValue::from_str(&id) {
                response.headers_mut().insert("x-request-id", value);
            }
            response
        }
        Ok(Err(_)) | Err(_) => {
            server::error_response(StatusCode::INTERNAL_SERVER_ERROR, "error", None, &id)
        }
    }
}

/// What the stand-in guest must see, from the request hyper parsed.
struct Expected {
    method: String,
    path_with_query: Option<String>,
    headers: usize,
    /// The declared body length, when it is the one that frames the body.
    content_length: Option<u64>,
    max_body: u64,
    /// The status it answers with.
    status: u16,
}

/// The same handle again, as the guest passes a borrowed one.
fn again<T: 'static>(handle: &Resource<T>) -> Resource<T> {
    Resource::new_borrow(handle.rep())
}

fn method_name(method: &wit::Method) -> String {
    use wit::Method as M;
    match method {
        M::Get => "GET".into(),
        M::Head => "HEAD".into(),
        M::Post => "POST".into(),
        M::Put => "PUT".into(),
        M::Delete => "DELETE".into(),
        M::Connect => "CONNECT".into(),
        M::Options => "OPTIONS".into(),
        M::Trace => "TRACE".into(),
        M::Patch => "PATCH".into(),
        M::Other(other) => other.clone(),
    }
}

/// A guest that reads everything of the request through the wasi:http host
/// calls and answers with its headers and body. Table lookups of handles it
/// was just given must succeed; whatever the request holds may fail.
async fn guest(
    mut store: Store<GuestState>,
    req: Resource<HostIncomingRequest>,
    out: Resource<HostResponseOutparam>,
    expected: Expected,
) {
    let mut view = store.data_mut().http();
    let method = wit::HostIncomingRequest::method(&mut view, again(&req)).expect("method");
    assert_eq!(method_name(&method), expected.method);
    let path = wit::HostIncomingRequest::path_with_query(&mut view, again(&req)).expect("path");
    assert_eq!(path, expected.path_with_query);
    let authority = wit::HostIncomingRequest::authority(&mut view, again(&req)).expect("authority");
    assert!(authority.is_some());
    let headers = wit::HostIncomingRequest::headers(&mut view, again(&req)).expect("headers");
    let entries = wit::HostFields::entries(&mut view, again(&headers)).expect("entries");
    assert!(entries.len() >= expected.headers, "headers lost");

    let body = wit::HostIncomingRequest::consume(&mut view, again(&req))
        .expect("consume")
        .expect("the body is there once");
    assert!(
        wit::HostIncomingRequest::consume(&mut view, again(&req))
            .expect("consume")
            .is_err(),
        "the body was handed out twice"
    );
    let stream = wit::HostIncomingBody::stream(&mut view, again(&body))
        .expect("stream")
        .expect("the stream is there once");
    let mut received = Vec::new();
    let mut complete = false;
    loop {
        let input = view.table.get_mut(&stream).expect("the input stream");
        match input.read(4096) {
            Ok(bytes) if bytes.is_empty() => input.ready().await,
            Ok(bytes) => received.extend_from_slice(&bytes),
            Err(StreamError::Closed) => {
                complete = true;
                break;
            }
            Err(_) => break,
        }
    }
    assert!(
        received.len() as u64 <= expected.max_body,
        "the guest got {} bytes past the {}-byte limit",
        received.len(),
        expected.max_body
    );
    if complete && let Some(len) = expected.content_length {
        assert_eq!(received.len() as u64, len, "body length");
    }
    view.table.delete(stream).expect("dropping the stream");
    wit::HostIncomingBody::finish(&mut view, body).expect("finishing the body");

    let fields = wit::HostFields::new(&mut view).expect("new fields");
    for (name, value) in entries {
        let _ = wit::HostFields::append(&mut view, again(&fields), name, value);
    }
    let response = wit::HostOutgoingResponse::new(&mut view, fields).expect("new response");
    let _ =
        wit::HostOutgoingResponse::set_status_code(&mut view, again(&response), expected.status);
    let out_body = wit::HostOutgoingResponse::body(&mut view, again(&response)).expect("body");
    wit::HostResponseOutparam::set(&mut view, out, Ok(response)).expect("sending the response");
    let Ok(out_body) = out_body else {
        return;
    };
    let output = wit::HostOutgoingBody::write(&mut view, again(&out_body))
        .expect("write")
        .expect("the output stream is there once");
    let stream = view.table.get_mut(&output).expect("the output stream");
    let _ = stream.blocking_write_and_flush(Bytes::from(received)).await;
    view.table
        .delete(output)
        .expect("dropping the output stream");
    let _ = wit::HostOutgoingBody::finish(&mut view, out_body, None);
}
