//! `burrow serve` end to end: the real binary, real sockets, real
//! components (the reference guest and the misbehaving `trouble` guest).

mod support;

use std::time::{Duration, Instant};

use support::{Burrow, config_file, guest, pattern, request, request_chunked};

fn app() -> std::path::PathBuf {
    guest("burrow-guest")
}

fn trouble() -> std::path::PathBuf {
    guest("trouble-guest")
}

#[test]
fn routes_by_longest_prefix_and_answers_404_as_json() {
    let server = Burrow::builder()
        .route("/", &app())
        .route("/t", &trouble())
        .start();

    let r = server.get("/hello");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "Hello from burrow!\n");

    // `/t` is the longer prefix, so the trouble guest answers.
    let r = server.get("/t/hello");
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    // `/tx` is not under `/t` (segments, not characters): the `/` route.
    let r = server.get("/tx/hello");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["detail"], "Not found.");

    // A server with no `/` route answers unmatched paths itself.
    let only_t = Burrow::builder().route("/t", &trouble()).start();
    let r = only_t.get("/elsewhere?x=1");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let doc = r.json();
    assert_eq!(doc["detail"], "Not found.");
    assert_eq!(
        doc["request_id"].as_str(),
        r.header("x-request-id"),
        "the body names the request id the header carries"
    );
    assert!(only_t.wait_for_log("GET /elsewhere 404", Duration::from_secs(5)));
}

#[test]
fn echo_describes_the_request() {
    let server = Burrow::builder().route("/", &app()).start();
    let r = request(
        server.addr,
        "PUT",
        "/echo?q=a+b&q=%20c%E2%9C%93&flag",
        &[("X-Custom", "yes")],
        Some(b"payload"),
    );
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert_eq!(doc["method"], "PUT");
    assert_eq!(doc["path"], "/echo");
    assert_eq!(
        doc["query"],
        serde_json::json!([["q", "a b"], ["q", " c✓"], ["flag", ""]])
    );
    assert!(
        doc["headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h[0] == "x-custom" && h[1] == "yes"),
        "{doc}"
    );
    assert_eq!(doc["body"], "payload");
    assert_eq!(doc["body_bytes"], 7);
}

#[test]
fn echo_is_byte_exact_for_every_size_and_chunked_bodies() {
    let server = Burrow::builder().route("/", &app()).start();
    for len in [0, 1, 4095, 4096, 4097, 1 << 20] {
        let body = pattern(len);
        let r = request(server.addr, "POST", "/echo/raw", &[], Some(&body));
        assert_eq!(r.status, 200, "len {len}");
        assert_eq!(r.body.len(), len, "length for len {len}");
        assert!(r.body == body, "bytes differ for len {len}");
    }
    let body = pattern(300_000);
    let pieces: Vec<&[u8]> = vec![&body[..1], &body[1..70_000], &body[70_000..]];
    let r = request_chunked(server.addr, "/echo/raw", &pieces);
    assert_eq!(r.status, 200);
    assert!(r.body == body, "chunked body differs");
}

#[test]
fn a_panicking_guest_fails_only_its_own_request() {
    let server = Burrow::builder().route("/", &trouble()).start();
    let r = server.get("/panic");
    assert_eq!(r.status, 500);
    let doc = r.json();
    assert_eq!(doc["detail"], "A server error occurred.");
    assert!(doc.get("error").is_none(), "no details unless debug: {doc}");
    let id = r.header("x-request-id").unwrap().to_string();

    let r = server.get("/hello");
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));

    // The reason is in the log, tagged with the request id, and the guest's
    // own panic message arrives through its stderr.
    assert!(server.wait_for_log("guest trapped", Duration::from_secs(5)));
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("guest panicked on purpose"))
        .unwrap_or_else(|| panic!("panic message not logged:\n{log}"));
    assert!(line.contains(&id), "{line}");
    assert!(line.contains("stderr"), "{line}");
}

#[test]
fn debug_mode_puts_the_reason_in_error_responses() {
    let server = Burrow::builder()
        .route("/", &trouble())
        .env("DJANGO_DEBUG", "True")
        .start();
    let r = server.get("/panic");
    assert_eq!(r.status, 500);
    let error = r.json()["error"].as_str().unwrap().to_string();
    assert!(error.contains("guest trapped"), "{error}");
}

#[test]
fn an_endless_loop_gets_504_at_the_deadline_while_others_are_served() {
    let (dir, cfg) = config_file(&format!(
        "[[route]]\nprefix = \"/\"\ncomponent = \"{}\"\ndeadline = \"1500ms\"\n",
        trouble().display()
    ));
    let server = Burrow::builder()
        .arg("--config")
        .arg(cfg.display().to_string())
        .start();
    let addr = server.addr;
    let looping = std::thread::spawn(move || {
        let started = Instant::now();
        let r = request(addr, "GET", "/loop", &[], None);
        (r.status, started.elapsed())
    });
    // Both cores may be busy with the loop: others must still get through.
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..10 {
        let started = Instant::now();
        let r = server.get("/hello");
        assert_eq!(r.status, 200);
        assert!(started.elapsed() < Duration::from_millis(1000));
    }
    let (status, elapsed) = looping.join().unwrap();
    assert_eq!(status, 504);
    assert!(
        elapsed >= Duration::from_millis(1200) && elapsed <= Duration::from_millis(1800),
        "504 after {elapsed:?}, deadline 1500 ms ± 20 %"
    );
    assert_eq!(server.get("/hello").status, 200);
    assert!(server.wait_for_log("deadline of 1500 ms exceeded", Duration::from_secs(5)));
    drop(dir);
}

#[test]
fn a_guest_waiting_on_the_host_past_its_deadline_gets_504() {
    let (_dir, cfg) = config_file(&format!(
        "[limits]\ndeadline = \"500ms\"\n[[route]]\nprefix = \"/\"\ncomponent = \"{}\"\n",
        trouble().display()
    ));
    let server = Burrow::builder()
        .arg("--config")
        .arg(cfg.display().to_string())
        .start();
    let started = Instant::now();
    assert_eq!(server.get("/sleep?ms=5000").status, 504);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_millis(1500),
        "{elapsed:?}"
    );
    assert_eq!(server.get("/sleep?ms=10").text(), "slept");
}

#[test]
fn a_memory_bomb_gets_500_and_the_host_keeps_serving() {
    let (_dir, cfg) = config_file(&format!(
        "[[route]]\nprefix = \"/\"\ncomponent = \"{}\"\nmemory = \"32MiB\"\n",
        trouble().display()
    ));
    let server = Burrow::builder()
        .arg("--config")
        .arg(cfg.display().to_string())
        .start();
    for _ in 0..3 {
        let r = server.get("/oom");
        assert_eq!(r.status, 500);
        assert_eq!(server.get("/hello").status, 200);
    }
    assert!(server.wait_for_log("memory limit of 32 MiB exceeded", Duration::from_secs(5)));
}

#[test]
fn guest_output_reaches_the_log_tagged_with_request_and_route() {
    let server = Burrow::builder().route("/", &trouble()).start();
    let r = request(
        server.addr,
        "GET",
        "/print",
        &[("X-Request-Id", "trace-me-42")],
        None,
    );
    assert_eq!(r.text(), "printed");
    assert_eq!(r.header("x-request-id"), Some("trace-me-42"));
    // The access line is written when the response body is done, which can
    // be after the client has read it: wait for every line, not just one.
    for text in ["line to stdout", "line to stderr", "GET /print 200"] {
        assert!(server.wait_for_log(text, Duration::from_secs(5)), "{text}");
    }
    let log = server.log();
    for (text, stream) in [("line to stdout", "stdout"), ("line to stderr", "stderr")] {
        let line = log.lines().find(|l| l.contains(text)).unwrap();
        assert!(line.contains("trace-me-42"), "{line}");
        assert!(line.contains(stream), "{line}");
        assert!(line.contains("trouble-guest"), "{line}");
    }
    let access = log.lines().find(|l| l.contains("GET /print 200")).unwrap();
    assert!(
        access.contains("trace-me-42") && access.contains("7B"),
        "{access}"
    );
}

#[test]
fn guests_see_no_files_environment_sockets_or_outbound_http() {
    let server = Burrow::builder()
        .route("/", &trouble())
        .env("SOME_HOST_SECRET", "must-not-leak")
        .start();
    let doc = server.get("/sandbox").json();
    assert!(doc["file"].as_str().unwrap().starts_with("error"), "{doc}");
    assert_eq!(doc["env"], serde_json::json!([]), "{doc}");
    assert!(
        doc["socket"].as_str().unwrap().starts_with("error"),
        "{doc}"
    );
    assert!(
        doc["outbound"].as_str().unwrap().starts_with("error"),
        "{doc}"
    );
    assert!(!doc.to_string().contains("must-not-leak"));
    assert!(server.wait_for_log("outbound HTTP; denied", Duration::from_secs(5)));
}

#[test]
fn every_request_starts_from_the_components_own_memory() {
    // Each request dirties a static and 3 MiB of heap; the next request,
    // in a reused pool slot or not, must find neither, one after another
    // and from several connections at once.
    let server = Burrow::builder().route("/", &trouble()).start();
    let fresh = "counter=7 stale=0";
    for _ in 0..20 {
        assert_eq!(server.get("/remember").text(), fresh);
    }
    let answers: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    (0..10)
                        .map(|_| server.get("/remember").text())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert_eq!(answers.len(), 40);
    assert!(answers.iter().all(|a| a == fresh), "{answers:?}");
}

#[test]
fn streamed_responses_arrive_whole() {
    let server = Burrow::builder().route("/", &trouble()).start();
    let r = server.get("/stream?chunks=5&ms=20");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "chunk0\nchunk1\nchunk2\nchunk3\nchunk4\n");
}

#[test]
fn oversized_bodies_get_413_before_the_guest_runs() {
    let (_dir, cfg) = config_file(&format!(
        "[[route]]\nprefix = \"/\"\ncomponent = \"{}\"\nmax_body = \"1KiB\"\n",
        app().display()
    ));
    let server = Burrow::builder()
        .arg("--config")
        .arg(cfg.display().to_string())
        .start();
    let r = server.post("/echo/raw", &pattern(1025));
    assert_eq!(r.status, 413);
    assert!(r.json()["detail"].as_str().unwrap().contains("too large"));
    assert_eq!(server.post("/echo/raw", &pattern(1024)).body, pattern(1024));
}

#[test]
fn a_restart_loads_components_from_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let start = || {
        Burrow::builder()
            .env("BURROW_CACHE_DIR", cache.path().display().to_string())
            .route("/", &app())
            .start()
    };
    let first = start();
    assert!(
        first.log().contains("component compiled"),
        "{}",
        first.log()
    );
    drop(first);
    let second = start();
    assert!(
        second.log().contains("component loaded from cache"),
        "{}",
        second.log()
    );
    assert_eq!(second.get("/hello").status, 200);
}

#[test]
fn sigterm_lets_in_flight_requests_finish_then_exits_0() {
    let server = Burrow::builder().route("/", &trouble()).start();
    let addr = server.addr;
    let slow = std::thread::spawn(move || request(addr, "GET", "/sleep?ms=1000", &[], None));
    std::thread::sleep(Duration::from_millis(300));
    let status = server.terminate(Duration::from_secs(10)).expect("exited");
    assert!(status.success(), "{status:?}");
    let r = slow.join().unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "slept"));
}
