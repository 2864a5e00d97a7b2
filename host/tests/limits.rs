//! Hostile and unusual HTTP against the real server: slow and silent
//! clients, oversized heads, too many connections or requests, smuggling
//! attempts, unknown methods, HEAD, and headers a guest may not pass on.
//! Each limit answers clearly and the server keeps serving.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::{Burrow, config_file, exchange, guest, request};

fn trouble() -> std::path::PathBuf {
    guest("trouble-guest")
}

/// A server with `[limits]` set as given, routing everything to the
/// trouble guest.
fn with_limits(limits: &str) -> (tempfile::TempDir, Burrow) {
    let (dir, cfg) = config_file(&format!(
        "[limits]\n{limits}\n[[route]]\nprefix = \"/\"\ncomponent = \"{}\"\n",
        trouble().display()
    ));
    let server = Burrow::builder()
        .arg("--config")
        .arg(cfg.display().to_string())
        .start();
    (dir, server)
}

/// Waits until the server closes `stream`; returns how long that took, or
/// `None` if it stayed open for `limit`.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 1024];
    while started.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn silent_and_trickling_clients_are_dropped_at_the_header_timeout() {
    let (_dir, server) = with_limits("header_timeout = \"1s\"");
    // Silent: connects and sends nothing.
    let mut silent = TcpStream::connect(server.addr).unwrap();
    let took = closed_within(&mut silent, Duration::from_secs(10))
        .expect("a silent client was never dropped");
    assert!(
        took >= Duration::from_millis(900),
        "dropped too early: {took:?}"
    );

    // Trickling: one byte every 200 ms never finishes a head in time, even
    // though it is never idle for long.
    let mut slow = TcpStream::connect(server.addr).unwrap();
    let started = Instant::now();
    let head = b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let mut dropped = false;
    for byte in head.iter().cycle().take(100) {
        if slow.write_all(&[*byte]).is_err() {
            dropped = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        if started.elapsed() > Duration::from_secs(10) {
            break;
        }
    }
    if !dropped {
        dropped = closed_within(&mut slow, Duration::from_secs(5)).is_some();
    }
    assert!(dropped, "a trickling client kept its connection");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // Keep-alive connections are held to the same timer for their next head.
    let mut kept = TcpStream::connect(server.addr).unwrap();
    kept.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut reader = std::io::BufReader::new(kept.try_clone().unwrap());
    assert_eq!(support::read_response(&mut reader).status, 200);
    assert!(
        closed_within(&mut kept, Duration::from_secs(10)).is_some(),
        "an idle keep-alive connection was never dropped"
    );

    assert_eq!(server.get("/hello").status, 200);
}

#[test]
fn oversized_heads_and_too_many_headers_get_431() {
    let (_dir, server) = with_limits("max_header_bytes = \"16KiB\"\nmax_headers = 20");
    let big = "a".repeat(20 * 1024);
    let r = request(server.addr, "GET", "/hello", &[("X-Big", &big)], None);
    assert_eq!(r.status, 431, "{}", r.text());

    let mut wire = format!("GET /hello HTTP/1.1\r\nHost: {}\r\n", server.addr);
    for i in 0..30 {
        wire.push_str(&format!("X-H{i}: {i}\r\n"));
    }
    wire.push_str("\r\n");
    assert_eq!(exchange(server.addr, wire.as_bytes()).status, 431);

    // Just under both limits is fine.
    let fits = "a".repeat(8 * 1024);
    assert_eq!(
        request(server.addr, "GET", "/hello", &[("X-Fits", &fits)], None).status,
        200
    );
}

#[test]
fn bodies_over_a_routes_limit_get_413_before_the_guest_runs() {
    let (_dir, cfg) = config_file(&format!(
        "[[route]]\nprefix = \"/small\"\ncomponent = \"{0}\"\nmax_body = \"1KiB\"\n\
         [[route]]\nprefix = \"/\"\ncomponent = \"{0}\"\nname = \"big\"\n",
        trouble().display()
    ));
    let server = Burrow::builder()
        .arg("--config")
        .arg(cfg.display().to_string())
        .start();
    let body = vec![b'x'; 2048];
    let r = request(server.addr, "POST", "/small/print", &[], Some(&body));
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(!server.log().contains("line to stdout"), "the guest ran");
    // The same body is fine on a route with the default limit.
    assert_eq!(
        request(server.addr, "POST", "/print", &[], Some(&body)).status,
        200
    );
    assert_eq!(server.get("/hello").status, 200);

    // A chunked body has no length up front: it is cut at the limit, and
    // the guest reading it never gets more than the route allows.
    let (_dir, cfg) = config_file(&format!(
        "[[route]]\nprefix = \"/\"\ncomponent = \"{}\"\nmax_body = \"1KiB\"\n",
        guest("burrow-guest").display()
    ));
    let app = Burrow::builder()
        .arg("--config")
        .arg(cfg.display().to_string())
        .start();
    let r = support::request_chunked(app.addr, "/echo/raw", &[&body[..1000], &body[..1000]]);
    assert_eq!(r.status, 413, "{}", r.text());
    let r = support::request_chunked(app.addr, "/echo/raw", &[&body[..500], &body[..500]]);
    assert_eq!((r.status, r.body.len()), (200, 1000));
}

#[test]
fn too_many_connections_get_503_with_retry_after_not_a_queue() {
    let (_dir, server) = with_limits("max_connections = 5\nheader_timeout = \"30s\"");
    let idle: Vec<TcpStream> = (0..5)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let r = exchange(server.addr, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    drop(idle);
    let started = Instant::now();
    while server.get("/hello").status != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "slots never freed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn too_many_requests_in_flight_get_503_with_retry_after() {
    let (_dir, server) = with_limits("max_requests = 2");
    let addr = server.addr;
    let slow: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || request(addr, "GET", "/sleep?ms=1500", &[], None)))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let r = server.get("/hello");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    for s in slow {
        assert_eq!(s.join().unwrap().status, 200);
    }
    assert_eq!(server.get("/hello").status, 200);
}

/// Sends raw bytes and returns everything the server answered before
/// closing (or within 3 s).
fn raw(addr: SocketAddr, wire: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(wire).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn smuggling_attempts_are_refused_or_defused() {
    let (_dir, server) = with_limits("");
    // Two different lengths: 400.
    let out = raw(
        server.addr,
        b"POST /print HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc",
    );
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    // A transfer coding that is not chunked-last: the length is unknowable, 400.
    let out = raw(
        server.addr,
        b"POST /print HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc",
    );
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    // Content-Length and chunked together, in either order: chunked wins
    // and the connection is closed after the response (RFC 9112 §6.3; hyper
    // drops the length before burrow sees the request), so the bytes that
    // the length would have made a second request are never run as one.
    for head in [
        "Content-Length: 4\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked\r\nContent-Length: 4",
    ] {
        let out = raw(
            server.addr,
            format!(
                "POST /hello HTTP/1.1\r\nHost: x\r\n{head}\r\n\r\n0\r\n\r\nGET /print HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            .as_bytes(),
        );
        assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{head}: {out}");
        assert!(out.starts_with("HTTP/1.1 200"), "{head}: {out}");
        assert!(
            out.to_ascii_lowercase().contains("connection: close"),
            "{head}: {out}"
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !server.log().contains("GET /print"),
        "a smuggled request ran:\n{}",
        server.log()
    );
    // A bad request line or header: 400, and the server goes on.
    assert!(
        raw(server.addr, b"GET /hello HTTP/1.1\r\nBad Header\r\n\r\n").starts_with("HTTP/1.1 400")
    );
    assert!(raw(server.addr, b"\x00\x01\x02 / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 400"));
    assert_eq!(server.get("/hello").status, 200);
}

#[test]
fn unknown_methods_reach_the_guest_and_head_gets_the_get_headers_without_a_body() {
    let (_dir, server) = with_limits("");
    let r = request(server.addr, "PURGE", "/method", &[], None);
    assert_eq!((r.status, r.text().as_str()), (200, "PURGE"));

    // The reference app's router answers HEAD as GET; the server sends no body.
    let app = Burrow::builder().route("/", &guest("burrow-guest")).start();
    let get = app.get("/hello");
    let out = raw(
        app.addr,
        b"HEAD /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(body, "", "HEAD got a body");
    let content_type = get.header("content-type").unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-type: {content_type}")),
        "{head}"
    );
    if let Some(len) = get.header("content-length") {
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("content-length: {len}")),
            "{head}"
        );
    }
}

#[test]
fn hop_by_hop_headers_a_guest_sets_are_dropped_with_a_log_line() {
    let (_dir, server) = with_limits("");
    let r = server.get("/hop");
    assert_eq!((r.status, r.text().as_str()), (200, "hop"));
    assert_eq!(r.header("x-kept"), Some("yes"));
    for name in ["keep-alive", "upgrade"] {
        assert!(
            r.header(name).is_none(),
            "{name} was passed on: {:?}",
            r.headers
        );
    }
    // What framing and connection headers there are, are the server's own.
    assert_ne!(
        r.header("transfer-encoding"),
        Some("gzip"),
        "{:?}",
        r.headers
    );
    assert!(
        !r.header("connection").unwrap_or("").contains("x-secret"),
        "{:?}",
        r.headers
    );
    assert!(
        server.wait_for_log("dropped the `upgrade` header", Duration::from_secs(5)),
        "{}",
        server.log()
    );
}

#[test]
fn a_thousand_slow_sockets_leave_normal_requests_served_and_file_descriptors_bounded() {
    let (_dir, server) = with_limits("header_timeout = \"3s\"");
    let baseline = open_fds(server.pid());
    let mut slow: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(server.addr).expect("connecting a slow socket"))
        .collect();
    // Half trickle a header byte now and then; half send nothing at all.
    for s in slow.iter_mut().step_by(2) {
        let _ = s.write_all(b"GET / HTTP/1.1\r\nX-");
    }
    std::thread::sleep(Duration::from_millis(500));
    let during = open_fds(server.pid());
    assert!(during <= baseline + 1000 + 20, "fds: {baseline} → {during}");
    for _ in 0..20 {
        let started = Instant::now();
        let r = server.get("/hello");
        assert_eq!(r.status, 200);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a normal request took {:?}",
            started.elapsed()
        );
        for s in slow.iter_mut().step_by(2).take(50) {
            let _ = s.write_all(b"a");
        }
    }
    // The header timeout frees every slot without the clients' help.
    let started = Instant::now();
    while open_fds(server.pid()) > baseline + 10 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "fds stayed at {} (baseline {baseline})",
            open_fds(server.pid())
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(slow);
    assert_eq!(server.get("/hello").status, 200);
}
