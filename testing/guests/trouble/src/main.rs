//! A guest that misbehaves on request, for the host's integration tests.
//! The last path segment picks the behaviour:
//!
//! - `.../hello` → "hello" (and the route's health check);
//! - `.../panic` → panics after printing to stderr;
//! - `.../loop` → spins forever;
//! - `.../oom` → allocates until memory runs out;
//! - `.../sleep?ms=N` → waits N ms on a host timer, then answers "slept";
//! - `.../print` → writes one line to stdout and one to stderr, answers "printed";
//! - `.../stream?chunks=N&ms=M` → N chunks M ms apart;
//! - `.../hop` → answers "hop" having set hop-by-hop headers a server must
//!   not pass on (`Connection`, `Keep-Alive`, `Transfer-Encoding`, `Upgrade`);
//! - `.../method` → answers the request's method;
//! - `.../sandbox` → tries to read a host file, the environment, a socket and
//!   outbound HTTP, and reports each result as JSON;
//! - `.../remember` → reports what an earlier request left behind (a static
//!   counter's value and any non-zero byte in 3 MiB of freshly zeroed heap),
//!   then leaves its own marks for the next one.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use wstd::http::{Body, Client, Error, Request, Response};

/// Starts at 7 in the component's data segment; a request that sees
/// anything else is running in memory a previous request changed.
static COUNTER: AtomicU32 = AtomicU32::new(7);

#[wstd::http_server]
async fn main(req: Request<Body>) -> Result<Response<Body>, Error> {
    let query = req.uri().query().unwrap_or("").to_string();
    let param = |name: &str| -> Option<u64> {
        query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.parse().ok())
    };
    // Matched on the last segment, so the guest can be mounted under any prefix.
    let action = req
        .uri()
        .path()
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_string();
    match action.as_str() {
        "hello" => Ok(Response::new("hello".into())),
        "panic" => {
            eprintln!("about to panic on purpose");
            panic!("guest panicked on purpose");
        }
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "oom" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "sleep" => {
            wstd::task::sleep(Duration::from_millis(param("ms").unwrap_or(100)).into()).await;
            Ok(Response::new("slept".into()))
        }
        "print" => {
            println!("line to stdout");
            eprintln!("line to stderr");
            Ok(Response::new("printed".into()))
        }
        "stream" => {
            let chunks = param("chunks").unwrap_or(3);
            let ms = param("ms").unwrap_or(10);
            let stream = futures_lite::stream::unfold(0u64, move |i| async move {
                if i == chunks {
                    return None;
                }
                wstd::task::sleep(Duration::from_millis(ms).into()).await;
                Some((
                    Ok::<_, std::convert::Infallible>(format!("chunk{i}\n").into_bytes()),
                    i + 1,
                ))
            });
            Ok(Response::new(Body::from_try_stream(stream)))
        }
        "hop" => Ok(Response::builder()
            .header("connection", "keep-alive, x-secret")
            .header("keep-alive", "timeout=600")
            .header("transfer-encoding", "gzip")
            .header("upgrade", "websocket")
            .header("x-kept", "yes")
            .body("hop".into())
            .expect("a valid response")),
        "method" => Ok(Response::new(req.method().as_str().to_string().into())),
        "remember" => {
            let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
            // Beyond the initial memory: grown pages, which the allocator
            // trusts to be zero, past and within what the host keeps resident.
            let mut heap = vec![0u8; 3 << 20];
            let stale = heap.iter().filter(|b| **b != 0).count();
            heap.fill(0xAB);
            std::hint::black_box(&heap);
            Ok(Response::new(
                format!("counter={counter} stale={stale}").into(),
            ))
        }
        "sandbox" => {
            let file = match std::fs::read("/etc/hostname") {
                Ok(bytes) => format!("read {} bytes", bytes.len()),
                Err(e) => format!("error: {e}"),
            };
            let env: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
            let socket = match std::net::TcpStream::connect("127.0.0.1:22") {
                Ok(_) => "connected".to_string(),
                Err(e) => format!("error: {e}"),
            };
            let outbound = match Request::get("http://127.0.0.1:1/").body(Body::empty()) {
                Ok(request) => match Client::new().send(request).await {
                    Ok(r) => format!("status {}", r.status()),
                    Err(e) => format!("error: {e}"),
                },
                Err(e) => format!("error: {e}"),
            };
            let doc = format!(
                "{{\"file\":{file:?},\"env\":{env:?},\"socket\":{socket:?},\"outbound\":{outbound:?}}}"
            );
            Ok(Response::new(doc.into()))
        }
        _ => {
            let mut r = Response::new("not found".into());
            *r.status_mut() = wstd::http::StatusCode::NOT_FOUND;
            Ok(r)
        }
    }
}
