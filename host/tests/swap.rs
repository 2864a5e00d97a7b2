//! Hot swap: components replaced while the real server runs, through the
//! admin API, the file watcher and SIGHUP, under concurrent load.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::{Burrow, BurrowBuilder, HttpResponse, guest, request};

const TOKEN: &str = "test-admin-token-0123456789";

fn v1() -> Vec<u8> {
    std::fs::read(guest("swap-v1")).unwrap()
}

fn v2() -> Vec<u8> {
    std::fs::read(guest("swap-v2")).unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A temp dir holding `app.wasm` (a copy of v1) and a server routing `/` to
/// it, so that the tests may rewrite the file.
fn server_with(
    builder: impl FnOnce(BurrowBuilder) -> BurrowBuilder,
) -> (tempfile::TempDir, PathBuf, Burrow) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.wasm");
    std::fs::write(&file, v1()).unwrap();
    let server = builder(Burrow::builder().route("/", &file)).start();
    assert_eq!(server.get("/").text(), "1");
    (dir, file, server)
}

fn put_component(server: &Burrow, bytes: &[u8]) -> HttpResponse {
    server.admin_request("PUT", "/_burrow/routes/app/component", &[], Some(bytes))
}

fn routes(server: &Burrow) -> serde_json::Value {
    let r = server.admin_request("GET", "/_burrow/routes", &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// One request seen by a load thread: when it was sent and answered, and
/// what came back.
struct Seen {
    sent: Instant,
    answered: Instant,
    status: u16,
    body: String,
}

/// Threads sending `GET /` in a loop until [`Load::finish`].
struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<std::thread::JoinHandle<Vec<Seen>>>,
}

impl Load {
    fn start(server: &Burrow, threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..threads)
            .map(|_| {
                let addr = server.addr;
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let sent = Instant::now();
                        let r = request(addr, "GET", "/", &[], None);
                        seen.push(Seen {
                            sent,
                            answered: Instant::now(),
                            status: r.status,
                            body: r.text(),
                        });
                    }
                    seen
                })
            })
            .collect();
        Load { stop, workers }
    }

    /// Stops the threads; every request they saw.
    fn finish(self) -> Vec<Seen> {
        self.stop.store(true, Ordering::Relaxed);
        self.workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    }
}

#[test]
fn a_hundred_swaps_under_load_fail_no_request_and_each_takes_effect_at_once() {
    let (_dir, _file, server) = server_with(|b| b.env("BURROW_WATCH", "false"));
    let versions = [v1(), v2()];
    let load = Load::start(&server, 4);

    // (acknowledged at, next swap started at, version serving in between)
    let mut windows = Vec::new();
    let mut current = "1";
    for i in 0..100 {
        let (bytes, next) = if current == "1" {
            (&versions[1], "2")
        } else {
            (&versions[0], "1")
        };
        let started = Instant::now();
        if let Some(last) = windows.last_mut() {
            let (_, end, _): &mut (Instant, Instant, &str) = last;
            *end = started;
        }
        let r = put_component(&server, bytes);
        assert_eq!(r.status, 200, "swap {i}: {}", r.text());
        assert_eq!(r.json()["swapped"], true, "swap {i}: {}", r.text());
        let acknowledged = Instant::now();
        // Acknowledged means done: the very next request gets the new version.
        assert_eq!(server.get("/").text(), next, "right after swap {i}");
        windows.push((acknowledged, acknowledged + Duration::from_secs(3600), next));
        current = next;
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    let seen = load.finish();

    assert!(
        seen.len() > 200,
        "the load threads sent only {} requests",
        seen.len()
    );
    let failed: Vec<_> = seen.iter().filter(|s| s.status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed, e.g. {} {}",
        failed.len(),
        seen.len(),
        failed[0].status,
        failed[0].body
    );
    assert!(seen.iter().all(|s| s.body == "1" || s.body == "2"));
    // A request sent after a swap was acknowledged and answered before the
    // next one began must have been served by the new version.
    let mut checked = 0;
    for s in &seen {
        for (acknowledged, next_started, version) in &windows {
            if s.sent > *acknowledged && s.answered < *next_started {
                assert_eq!(
                    &s.body, version,
                    "a request after the swap got the old version"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "no request fell between two swaps");
    let route = &routes(&server)["routes"][0];
    assert_eq!(route["swaps"], 100);
    assert_eq!(route["current"]["sha256"], sha256(&versions[0]));
}

#[test]
fn slow_requests_started_on_v1_finish_on_v1_after_the_swap() {
    let (_dir, _file, server) = server_with(|b| b.env("BURROW_WATCH", "false"));
    let addr = server.addr;
    let slow: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(move || request(addr, "GET", "/?ms=1500", &[], None)))
        .collect();
    std::thread::sleep(Duration::from_millis(400));
    let r = put_component(&server, &v2());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(server.get("/").text(), "2");
    for s in slow {
        let r = s.join().unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "1"));
    }
    assert_eq!(server.get("/?ms=10").text(), "2");
}

#[test]
fn bad_candidates_are_rejected_with_the_reason_and_the_old_version_keeps_serving() {
    let (_dir, file, server) = server_with(|b| b);
    let good = v2();
    let wrong_world = wat::parse_str(
        r#"(component
             (core module $m (func (export "f")))
             (core instance $i (instantiate $m))
             (func $f (canon lift (core func $i "f")))
             (export "run" (func $f)))"#,
    )
    .unwrap();
    let cases: [(&str, &[u8], &str); 3] = [
        ("truncated", &good[..good.len() / 2], "does not compile"),
        (
            "not a component",
            b"#!/bin/sh\necho hello\n",
            "not a WebAssembly binary",
        ),
        (
            "wrong world",
            &wrong_world,
            "does not export `wasi:http/incoming-handler",
        ),
    ];
    for (what, bytes, reason) in cases {
        let r = put_component(&server, bytes);
        assert_eq!(r.status, 422, "{what}: {}", r.text());
        let body = r.json();
        assert!(
            body["detail"].as_str().unwrap().contains(reason),
            "{what}: {body}"
        );
        assert_eq!(body["serving"], sha256(&v1()), "{what}");
        assert_eq!(server.get("/").text(), "1", "{what}");
    }

    // The same through the file watcher: the log says why, v1 still serves.
    std::fs::write(&file, &good[..good.len() / 3]).unwrap();
    assert!(
        wait_until(
            Duration::from_secs(10),
            || routes(&server)["routes"][0]["rejected"] == 4
        ),
        "{}",
        server.log()
    );
    assert!(
        server.log().contains("trigger=\"watch\""),
        "{}",
        server.log()
    );
    assert_eq!(server.get("/").text(), "1");
    assert_eq!(routes(&server)["routes"][0]["swaps"], 0);

    // Fixing the file brings the new version in.
    std::fs::write(&file, &good).unwrap();
    assert!(wait_until(Duration::from_secs(10), || server
        .get("/")
        .text()
        == "2"));
}

#[test]
fn a_file_written_in_place_in_three_chunks_is_never_loaded_half_written() {
    let (_dir, file, server) = server_with(|b| b);
    let load = Load::start(&server, 2);

    let bytes = v2();
    let third = bytes.len() / 3;
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&file)
            .unwrap();
        for (i, chunk) in [
            &bytes[..third],
            &bytes[third..2 * third],
            &bytes[2 * third..],
        ]
        .into_iter()
        .enumerate()
        {
            f.write_all(chunk).unwrap();
            f.flush().unwrap();
            if i < 2 {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    assert!(
        wait_until(Duration::from_secs(10), || server.get("/").text() == "2"),
        "{}",
        server.log()
    );
    let seen = load.finish();
    assert!(
        seen.iter()
            .all(|s| s.status == 200 && (s.body == "1" || s.body == "2"))
    );
    let route = &routes(&server)["routes"][0];
    // Exactly one swap, to the whole file: no half-written version ever served.
    assert_eq!(route["swaps"], 1, "{route}");
    assert_eq!(route["current"]["sha256"], sha256(&bytes));
    assert_eq!(route["current"]["trigger"], "watch");
}

#[test]
fn an_atomic_rename_is_picked_up_and_rollback_returns_to_the_previous_version() {
    let (dir, file, server) = server_with(|b| b);
    let tmp = dir.path().join("app.wasm.tmp");
    std::fs::write(&tmp, v2()).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    assert!(wait_until(Duration::from_secs(10), || server
        .get("/")
        .text()
        == "2"));

    let rollback =
        |server: &Burrow| server.admin_request("POST", "/_burrow/routes/app/rollback", &[], None);
    let r = rollback(&server);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(server.get("/").text(), "1");
    let route = &routes(&server)["routes"][0];
    assert_eq!(route["current"]["sha256"], sha256(&v1()));
    assert_eq!(route["previous"]["sha256"], sha256(&v2()));
    // Rolling back again swaps back: the two versions trade places.
    assert_eq!(rollback(&server).status, 200);
    assert_eq!(server.get("/").text(), "2");

    // An explicit reload re-reads the file; the same content is no swap.
    let r = server.admin_request("POST", "/_burrow/routes/app/reload", &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["swapped"], false);

    let r = server.admin_request("POST", "/_burrow/routes/nope/reload", &[], None);
    assert_eq!(r.status, 404, "{}", r.text());
}

#[test]
fn rollback_without_a_previous_version_is_a_conflict() {
    let (_dir, _file, server) = server_with(|b| b);
    let r = server.admin_request("POST", "/_burrow/routes/app/rollback", &[], None);
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("no previous version"), "{}", r.text());
    assert_eq!(server.get("/").text(), "1");
}

#[test]
fn routes_report_their_versions_and_debug_responses_name_them() {
    let (_dir, _file, server) = server_with(|b| b.env("DJANGO_DEBUG", "true"));
    for _ in 0..3 {
        server.get("/");
    }
    let r = server.get("/");
    let route = &routes(&server)["routes"][0];
    assert_eq!(route["name"], "app");
    assert_eq!(route["prefix"], "/");
    assert_eq!(route["current"]["sha256"], sha256(&v1()));
    assert!(
        route["current"]["requests"].as_u64().unwrap() >= 5,
        "{route}"
    );
    assert!(route["current"]["loaded_at"].as_f64().unwrap() > 1.7e9);
    assert!(route["previous"].is_null());
    let header = r.header("x-burrow-component").unwrap().to_string();
    assert_eq!(header, format!("app@{}", &sha256(&v1())[..12]));

    // Without debug, responses do not advertise what serves them.
    let (_dir2, _file2, quiet) = server_with(|b| b);
    assert!(quiet.get("/").header("x-burrow-component").is_none());
}

#[test]
fn sighup_adds_changes_and_removes_routes_and_a_broken_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one.wasm"), dir.path().join("two.wasm"));
    std::fs::write(&one, v1()).unwrap();
    std::fs::write(&two, v2()).unwrap();
    let config = dir.path().join("burrow.toml");
    let write_config = |routes: &[(&str, &Path)]| {
        let text: String = routes
            .iter()
            .map(|(prefix, file)| {
                format!(
                    "[[route]]\nprefix = \"{prefix}\"\ncomponent = \"{}\"\n",
                    file.display()
                )
            })
            .collect();
        std::fs::write(&config, text).unwrap();
    };
    write_config(&[("/", &one)]);
    let server = Burrow::builder()
        .arg("--config")
        .arg(config.display().to_string())
        .start();
    assert_eq!(server.get("/two/x").text(), "1");

    write_config(&[("/", &one), ("/two", &two)]);
    support::signal(server.pid(), "HUP");
    assert!(
        wait_until(Duration::from_secs(20), || server.get("/two/x").text()
            == "2"),
        "{}",
        server.log()
    );
    assert_eq!(server.get("/").text(), "1");
    assert_eq!(routes(&server)["routes"].as_array().unwrap().len(), 2);

    // A broken file: the error is logged and both routes stay.
    std::fs::write(&config, "[[route]]\nprefix = 7\n").unwrap();
    support::signal(server.pid(), "HUP");
    assert!(
        server.wait_for_log("SIGHUP: configuration not applied", Duration::from_secs(10)),
        "{}",
        server.log()
    );
    assert_eq!(server.get("/two/x").text(), "2");

    // A route whose component is missing: nothing changes either.
    write_config(&[("/", &one), ("/three", &dir.path().join("missing.wasm"))]);
    support::signal(server.pid(), "HUP");
    assert!(
        server.wait_for_log("SIGHUP: routes unchanged", Duration::from_secs(10)),
        "{}",
        server.log()
    );
    assert_eq!(server.get("/two/x").text(), "2");

    write_config(&[("/", &one)]);
    support::signal(server.pid(), "HUP");
    assert!(
        wait_until(Duration::from_secs(20), || server.get("/two/x").text()
            == "1"),
        "{}",
        server.log()
    );
    assert_eq!(routes(&server)["routes"].as_array().unwrap().len(), 1);
}

#[test]
fn the_admin_api_needs_a_token_off_loopback_and_checks_it() {
    let (code, out) = Burrow::builder()
        .route("/", &guest("swap-v1"))
        .env("BURROW_ADMIN_LISTEN", "0.0.0.0:0")
        .run_to_failure();
    assert_ne!(code, 0);
    assert!(
        out.contains("BURROW_ADMIN_TOKEN") && out.contains("not a loopback address"),
        "{out}"
    );

    let server = Burrow::builder()
        .route("/", &guest("swap-v1"))
        .env("BURROW_ADMIN_LISTEN", "0.0.0.0:0")
        .env("BURROW_ADMIN_TOKEN", TOKEN)
        .start();
    let bearer = format!("Bearer {TOKEN}");
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, u16);
    let cases: [Case; 6] = [
        ("GET", "/_burrow/routes", vec![], 401),
        (
            "GET",
            "/_burrow/routes",
            vec![("Authorization", "Bearer wrong-token-0123456789")],
            401,
        ),
        ("GET", "/_burrow/metrics", vec![], 401),
        ("POST", "/_burrow/routes/swap-v1/rollback", vec![], 401),
        (
            "GET",
            "/_burrow/routes",
            vec![("Authorization", bearer.as_str())],
            200,
        ),
        ("GET", "/_burrow/health", vec![], 200),
    ];
    for (method, path, headers, status) in cases {
        let r = server.admin_request(method, path, &headers, None);
        assert_eq!(
            r.status,
            status,
            "{method} {path} {headers:?}: {}",
            r.text()
        );
    }
    let r = server.admin_request("PUT", "/_burrow/routes/swap-v1/component", &[], Some(&v2()));
    assert_eq!(r.status, 401);
    assert_eq!(
        server.get("/").text(),
        "1",
        "an unauthorized upload changed nothing"
    );
    // The token never reaches the log.
    assert!(!server.log().contains(TOKEN));
}
