//! What an operator of a deployed burrow relies on: readiness that follows
//! the tunnel and the database, Prometheus metrics that move with traffic,
//! `burrow check`'s checklist, `burrow healthcheck`, JSON logs, and no
//! secret in any log.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use support::mariadb::MariaDb;
use support::sshd::{self, Sshd};
use support::{Burrow, guest};

const TOKEN: &str = "ops-admin-token-0123456789abcdef";

fn trouble() -> std::path::PathBuf {
    guest("trouble-guest")
}

/// Parses the Prometheus text format strictly: every line is a comment or
/// `name{labels} value`, every sample belongs to a family with a `# TYPE`.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    let mut typed = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap().to_string();
            let kind = parts.next().unwrap();
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "bad type line {line:?}"
            );
            typed.push(name);
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "bad labels in {line:?}"
            );
        }
        assert!(
            typed.iter().any(|t| name == t
                || name
                    .strip_prefix(t.as_str())
                    .is_some_and(|s| { ["_bucket", "_sum", "_count"].contains(&s) })),
            "sample {name} has no # TYPE"
        );
        samples.insert(series.to_string(), value);
    }
    samples
}

fn scrape(server: &Burrow) -> BTreeMap<String, f64> {
    let auth = format!("Bearer {TOKEN}");
    let r = server.admin_request("GET", "/_burrow/metrics", &[("Authorization", &auth)], None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    parse_metrics(&r.text())
}

fn ready(server: &Burrow) -> (u16, serde_json::Value) {
    let r = server.admin_request("GET", "/_burrow/ready", &[], None);
    (r.status, r.json())
}

#[test]
fn metrics_parse_as_prometheus_text_and_move_with_traffic() {
    let server = Burrow::builder()
        .route("/", &trouble())
        .env("BURROW_ADMIN_TOKEN", TOKEN)
        .start();
    let before = scrape(&server);
    for _ in 0..5 {
        assert_eq!(server.get("/hello").status, 200);
    }
    assert_eq!(server.get("/panic").status, 500);
    let after = scrape(&server);
    let get = |m: &BTreeMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);
    let ok = r#"burrow_http_requests_total{route="trouble-guest",status="200"}"#;
    assert_eq!(get(&after, ok) - get(&before, ok), 5.0, "{after:#?}");
    let failed = r#"burrow_http_requests_total{route="trouble-guest",status="500"}"#;
    assert_eq!(get(&after, failed), 1.0);
    let traps = r#"burrow_guest_failures_total{route="trouble-guest",kind="trap"}"#;
    assert_eq!(get(&after, traps), 1.0);
    let count = r#"burrow_http_request_duration_seconds_count{route="trouble-guest"}"#;
    assert_eq!(get(&after, count), 6.0);
    let inf = r#"burrow_http_request_duration_seconds_bucket{route="trouble-guest",le="+Inf"}"#;
    assert_eq!(get(&after, inf), 6.0);
    assert_eq!(get(&after, "burrow_http_requests_in_flight"), 0.0);
    // Served requests leave their memory slots warm for the next ones, and
    // the process reports its own resident set.
    assert!(
        get(&after, "burrow_wasm_unused_warm_memories") >= 1.0,
        "{after:#?}"
    );
    assert!(get(&after, "burrow_wasm_unused_memory_resident_bytes") > 0.0);
    assert!(get(&after, "process_resident_memory_bytes") > f64::from(1 << 20));
    assert!(after.contains_key("burrow_heap_trims_total"));
    assert_eq!(
        get(
            &after,
            r#"burrow_component_swaps_total{route="trouble-guest"}"#
        ),
        0.0
    );
}

#[test]
fn readiness_follows_the_tunnel_and_the_database() {
    let db = MariaDb::shared();
    let mut sshd = Sshd::start();
    let server = Burrow::builder()
        .route("/", &guest("dbprobe-guest"))
        .through(&sshd, db.port)
        .env("BURROW_ADMIN_TOKEN", TOKEN)
        .start();
    let (status, body) = ready(&server);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["tunnel"]["ok"], true);
    assert_eq!(body["checks"]["database"]["ok"], true);
    assert_eq!(body["checks"]["routes"]["ok"], true);
    let metrics = scrape(&server);
    assert_eq!(metrics["burrow_tunnel_up"], 1.0);
    assert!(metrics["burrow_db_acquired_total"] >= 1.0);

    sshd.kill();
    let started = Instant::now();
    loop {
        let (status, body) = ready(&server);
        if status == 503 {
            let failing: Vec<_> = body["not_ready"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["check"].as_str().unwrap().to_string())
                .collect();
            assert!(failing.contains(&"tunnel".to_string()), "{body}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still ready: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(scrape(&server)["burrow_tunnel_up"], 0.0);
    // Health is liveness: the process is fine even while the tunnel is not.
    assert_eq!(
        server
            .admin_request("GET", "/_burrow/health", &[], None)
            .status,
        200
    );

    sshd.spawn();
    let started = Instant::now();
    while ready(&server).0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not ready again: {}\n{}",
            ready(&server).1,
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let metrics = scrape(&server);
    assert_eq!(metrics["burrow_tunnel_up"], 1.0);
    assert!(metrics["burrow_tunnel_reconnects_total"] >= 1.0);
}

#[test]
fn readiness_is_503_with_the_reason_while_the_database_is_unreachable() {
    let sshd = Sshd::start();
    // The tunnel is up, but its target port has nothing behind it.
    let server = Burrow::builder()
        .route("/", &guest("dbprobe-guest"))
        .through(&sshd, sshd::free_port())
        .env("DB_ACQUIRE_TIMEOUT", "500ms")
        .start();
    let (status, body) = ready(&server);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["tunnel"]["ok"], true, "{body}");
    assert_eq!(body["not_ready"][0]["check"], "database", "{body}");
}

#[test]
fn healthcheck_exits_0_only_when_the_server_is_ready() {
    let server = Burrow::builder().route("/", &trouble()).start();
    let (code, out) = Burrow::builder()
        .subcommand("healthcheck")
        .env("BURROW_ADMIN_LISTEN", server.admin().to_string())
        .run_to_exit();
    assert_eq!(code, 0, "{out}");
    let addr = server.admin();
    drop(server);
    let (code, out) = Burrow::builder()
        .subcommand("healthcheck")
        .env("BURROW_ADMIN_LISTEN", addr.to_string())
        .run_to_exit();
    assert_ne!(code, 0);
    assert!(out.contains("nothing answers"), "{out}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let server = Burrow::builder()
        .arg("--log-format")
        .arg("json")
        .route("/", &trouble())
        .start();
    assert_eq!(server.get("/hello").status, 200);
    assert!(server.wait_for_log("GET /hello 200", Duration::from_secs(5)));
    let log = server.log();
    let mut access = 0;
    for line in log.lines() {
        let doc: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        assert!(
            doc["timestamp"].is_string() && doc["level"].is_string(),
            "{line}"
        );
        if doc["target"] == "burrow::access" {
            access += 1;
            assert!(doc["request_id"].is_string(), "{line}");
        }
    }
    assert_eq!(access, 1, "{log}");
}

/// `burrow check` with the given settings; returns its exit code and output.
fn check(builder: support::BurrowBuilder) -> (i32, String) {
    builder.subcommand("check").run_to_exit()
}

#[test]
fn check_passes_every_step_of_a_working_setup() {
    let db = MariaDb::shared();
    let sshd = Sshd::start();
    let (code, out) = check(
        Burrow::builder()
            .route("/", &guest("dbprobe-guest"))
            .through(&sshd, db.port),
    );
    assert_eq!(code, 0, "{out}");
    for step in [
        "✓ configuration",
        "✓ SSH key permissions",
        "✓ SSH key loads",
        "✓ known_hosts",
        "✓ SSH login",
        "✓ forward",
        "✓ database",
        "✓ route `dbprobe-guest`",
        "all checks passed",
    ] {
        assert!(out.contains(step), "missing `{step}`:\n{out}");
    }
    assert!(!out.contains('✗'), "{out}");
}

#[test]
fn check_reports_each_failure_with_its_fix() {
    let db = MariaDb::shared();
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();

    // A key the bastion does not know.
    let stranger = sshd::keygen(dir.path(), "stranger", "ed25519", &[]);
    let (code, out) = check(
        Burrow::builder()
            .route("/", &guest("dbprobe-guest"))
            .through(&sshd, db.port)
            .env("SSH_KEY", stranger.display().to_string()),
    );
    assert_ne!(code, 0);
    assert!(
        out.contains("✗ SSH login") && out.contains("authorized_keys"),
        "{out}"
    );

    // A bastion missing from known_hosts: the fix names the line to add.
    let empty = dir.path().join("known_hosts");
    std::fs::write(&empty, "").unwrap();
    let (code, out) = check(
        Burrow::builder()
            .route("/", &guest("dbprobe-guest"))
            .through(&sshd, db.port)
            .env("SSH_KNOWN_HOSTS", empty.display().to_string()),
    );
    assert_ne!(code, 0);
    assert!(
        out.contains("✗ known_hosts") && out.contains("has no line for"),
        "{out}"
    );
    assert!(
        out.contains(&sshd.known_hosts_line()[..40]),
        "the line to add:\n{out}"
    );

    // A database port with nothing behind it.
    let (code, out) = check(
        Burrow::builder()
            .route("/", &guest("dbprobe-guest"))
            .through(&sshd, sshd::free_port())
            .env("DB_ACQUIRE_TIMEOUT", "1s"),
    );
    assert_ne!(code, 0);
    assert!(out.contains("✓ SSH login"), "{out}");
    assert!(out.contains("✗ database") && out.contains("fix:"), "{out}");

    // A component that is not one.
    let bad = dir.path().join("bad.wasm");
    std::fs::write(&bad, b"not wasm").unwrap();
    let (code, out) = check(Burrow::builder().route("/", &bad));
    assert_ne!(code, 0);
    assert!(
        out.contains("✗ route `bad`") && out.contains("not a WebAssembly binary"),
        "{out}"
    );
    assert!(out.contains("fix: rebuild the component"), "{out}");

    // A key file others can read.
    let open_key = sshd::keygen(dir.path(), "open", "ed25519", &[]);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out) = check(
        Burrow::builder()
            .route("/", &trouble())
            .through(&sshd, db.port)
            .env("SSH_KEY", open_key.display().to_string()),
    );
    assert_ne!(code, 0);
    assert!(
        out.contains("✗ SSH key permissions") && out.contains("chmod 600"),
        "{out}"
    );

    // A setting that is not valid.
    let (code, out) = check(
        Burrow::builder()
            .route("/", &trouble())
            .env("DJANGO_DEBUG", "maybe"),
    );
    assert_ne!(code, 0);
    assert!(
        out.contains("✗ configuration") && out.contains("DJANGO_DEBUG"),
        "{out}"
    );
}

#[test]
fn secrets_stay_out_of_logs_and_error_pages_even_on_failures() {
    let db = MariaDb::shared();
    let sshd = Sshd::start();
    let secret_key = "django-insecure-0123456789abcdefghijklmnop";
    let wrong_password = "wrong-password-ZXCVBNM-42";
    // A wrong database password, debug on, a guest that fails: every error
    // path runs, and the drop of each server scans its whole log.
    let server = Burrow::builder()
        .route("/", &guest("dbprobe-guest"))
        .through(&sshd, db.port)
        .env("DB_PASSWORD", wrong_password)
        .env("DJANGO_SECRET_KEY", secret_key)
        .env("DJANGO_DEBUG", "true")
        .env("BURROW_ADMIN_TOKEN", TOKEN)
        .start();
    let r = support::request(
        server.addr,
        "POST",
        "/ping",
        &[("Content-Type", "application/json")],
        Some(b"null"),
    );
    assert_ne!(r.status, 200, "{}", r.text());
    assert!(
        r.text().contains("Access denied"),
        "debug shows the reason: {}",
        r.text()
    );
    for secret in [wrong_password, secret_key, TOKEN] {
        assert!(!r.text().contains(secret), "{}", r.text());
    }
    let (status, body) = ready(&server);
    assert_eq!(status, 503);
    assert!(!body.to_string().contains(wrong_password));
    assert!(server.wait_for_log("Access denied", Duration::from_secs(5)));
    let log = server.log();
    for secret in [wrong_password, secret_key, TOKEN] {
        assert!(!log.contains(secret), "a secret reached the log:\n{log}");
    }
}
