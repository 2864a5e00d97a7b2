//! `server.rs` owns the public HTTP listener: accepting connections, the
//! limits applied before a guest runs, turning guest failures into JSON
//! error responses, the access log, and graceful shutdown. Which component
//! serves a path is the registry's business; running it, the runtime's.
//!
//! The service never fails: every problem becomes a logged response with a
//! status that says whose fault it was (4xx the client's, 5xx ours or the
//! guest's) and a request id that finds the log line.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full, Limited, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use crate::config::Limits;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::runtime::{GuestFailure, Runtime};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every response body: a guest's stream or a host-made JSON document.
pub type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// What every connection task shares.
pub struct Server {
    /// Path → component.
    registry: Arc<Registry>,
    /// Runs components.
    runtime: Arc<Runtime>,
    /// Listener-wide limits.
    limits: Limits,
    /// Error responses carry details, and responses name the component
    /// version, when true.
    debug: bool,
    /// Request counters; the admin API renders them.
    metrics: Arc<Metrics>,
    /// One permit per request in flight; none left → 503.
    permits: Arc<Semaphore>,
    /// One permit per open connection; none left → 503 and close.
    connection_permits: Arc<Semaphore>,
    /// Source of request ids.
    ids: RequestIds,
}

impl Server {
    pub fn new(
        registry: Arc<Registry>,
        runtime: Arc<Runtime>,
        limits: Limits,
        debug: bool,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(limits.max_requests)),
            connection_permits: Arc::new(Semaphore::new(limits.max_connections)),
            registry,
            runtime,
            limits,
            debug,
            metrics,
            ids: RequestIds::new(),
        })
    }

    /// Serves `listener` until `shutdown` resolves, then stops accepting,
    /// lets in-flight requests finish within the grace period and returns.
    pub async fn run(self: Arc<Self>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => match Arc::clone(&self.connection_permits).try_acquire_owned() {
                        Ok(permit) => {
                            let server = Arc::clone(&self);
                            connections.spawn(server.serve_connection(stream, peer, stop_rx.clone(), permit));
                        }
                        // Full: say so and close, rather than queue without bound.
                        Err(_) => {
                            tracing::warn!(%peer, limit = self.limits.max_connections, "connection limit reached; answering 503");
                            connections.spawn(refuse_connection(stream));
                        }
                    },
                    Err(e) => {
                        // Typically EMFILE: back off instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(listener);
        let open = connections.len();
        tracing::info!(
            open_connections = open,
            grace_ms = self.limits.shutdown_grace.as_millis() as u64,
            "shutting down: no new connections; letting in-flight requests finish"
        );
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(self.limits.shutdown_grace, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                cut = connections.len(),
                "grace period over; closing the remaining connections"
            );
            connections.abort_all();
        }
    }

    async fn serve_connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        mut stop: watch::Receiver<bool>,
        _permit: OwnedSemaphorePermit,
    ) {
        // Responses are written whole or in guest-sized chunks: don't let
        // Nagle hold the last segment back.
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().ok();
        let server = Arc::clone(&self);
        let service = service_fn(move |req| {
            let server = Arc::clone(&server);
            async move { Ok::<_, Infallible>(server.handle(req, local).await) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            // Armed for every request head, the first and each keep-alive
            // one: a client that sends nothing, or a byte at a time, is cut.
            .header_read_timeout(self.limits.header_timeout)
            // A larger head, or more headers, get 431 from hyper.
            .max_buf_size(self.limits.max_header_bytes)
            .max_headers(self.limits.max_headers)
            .serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        let result = tokio::select! {
            result = conn.as_mut() => result,
            () = stopped(&mut stop) => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = result {
            tracing::debug!(%peer, "connection ended: {e}");
        }
    }

    async fn handle(
        &self,
        req: Request<Incoming>,
        local: Option<SocketAddr>,
    ) -> Response<ResponseBody> {
        let started = Instant::now();
        let id: Arc<str> = self
            .ids
            .for_request(req.headers().get("x-request-id"))
            .into();
        self.metrics.request_started();
        let mut log = AccessLog {
            metrics: Arc::clone(&self.metrics),
            request_id: Arc::clone(&id),
            method: req.method().clone(),
            path: req.uri().path().to_string(),
            route: None,
            status: 0,
            started,
        };

        // The table and the version are taken once: a swap during this
        // request does not change what serves it.
        let table = self.registry.table();
        let Some(route) = table.route_for(req.uri().path()) else {
            let detail = format!("No route serves `{}`.", req.uri().path());
            return log.finish(
                error_response(StatusCode::NOT_FOUND, "Not found.", Some(&detail), &id),
                None,
            );
        };
        let version = route.current();
        log.route = Some(Arc::clone(&version.component.route));

        if let Some(len) = content_length(&req)
            && len > route.config.max_body
        {
            let detail = format!(
                "The body is {len} bytes; this route accepts at most {}.",
                route.config.max_body
            );
            return log.finish(
                error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Request body too large.",
                    Some(&detail),
                    &id,
                ),
                None,
            );
        }

        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            let mut response = error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "The server is at its limit of concurrent requests; retry shortly.",
                None,
                &id,
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return log.finish(response, None);
        };

        let req = for_guest(req, local, route.config.max_body);

        version.record_request();
        let mut response = match self
            .runtime
            .call(&version.component, route.limits(), Arc::clone(&id), req)
            .await
        {
            Ok(response) => {
                let mut response = response.map(|body| {
                    body.map_err(|e| -> BoxError { format!("guest body: {e:?}").into() })
                        .boxed_unsync()
                });
                drop_hop_by_hop(response.headers_mut(), &id, &route.config.name);
                if let Ok(value) = HeaderValue::from_str(&id) {
                    response.headers_mut().insert("x-request-id", value);
                }
                response
            }
            // Already logged by the runtime, with the request id.
            Err(failure) => {
                self.metrics
                    .record_failure(&route.config.name, failure.kind());
                self.failure_response(&failure, &id)
            }
        };
        if self.debug
            && let Ok(value) =
                HeaderValue::from_str(&format!("{}@{}", route.config.name, version.short()))
        {
            response.headers_mut().insert("x-burrow-component", value);
        }
        log.finish(response, Some(permit))
    }

    fn failure_response(&self, failure: &GuestFailure, id: &str) -> Response<ResponseBody> {
        let (status, message) = match failure {
            GuestFailure::Deadline(_) => (
                StatusCode::GATEWAY_TIMEOUT,
                "The request took longer than this route allows.",
            ),
            GuestFailure::Instantiate(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The server is at its limit of concurrent requests; retry shortly.",
            ),
            _ => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "A server error occurred.",
            ),
        };
        let detail = failure.to_string();
        let mut response =
            error_response(status, message, self.debug.then_some(detail.as_str()), id);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// Headers that describe one hop's connection, not the response: hyper
/// frames the response itself, so a guest's are dropped.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "http2-settings",
];

/// Removes hop-by-hop headers, and a `Content-Length` that is not one
/// plain number, from a guest's response, logging each.
pub fn drop_hop_by_hop(headers: &mut http::HeaderMap, id: &str, route: &str) {
    for name in HOP_BY_HOP {
        if headers.remove(name).is_some() {
            tracing::warn!(request_id = %id, route, "dropped the `{name}` header the guest set: the server frames responses itself");
        }
    }
    let lengths: Vec<_> = headers.get_all(header::CONTENT_LENGTH).iter().collect();
    let valid = match lengths.as_slice() {
        [] => true,
        [one] => one
            .to_str()
            .is_ok_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())),
        _ => false,
    };
    if !valid {
        headers.remove(header::CONTENT_LENGTH);
        tracing::warn!(request_id = %id, route, "dropped an invalid `content-length` the guest set");
    }
}

/// Answers a connection over the limit with 503 and closes it.
async fn refuse_connection(mut stream: TcpStream) {
    use tokio::io::AsyncWriteExt;
    const BODY: &str =
        r#"{"detail": "The server is at its limit of open connections; retry shortly."}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Resolves once shutdown has been signalled (or the sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns must not live across an await.
    let _ = stop.wait_for(|stop| *stop).await;
}

/// A request as the guest gets it: with an authority (wasi:http needs one,
/// and HTTP/1.0 clients may send no `Host`, so `local` fills in) and a body
/// that fails once it passes `max_body` bytes.
pub fn for_guest<B>(
    mut req: Request<B>,
    local: Option<SocketAddr>,
    max_body: u64,
) -> Request<impl Body<Data = Bytes, Error = wasmtime_wasi_http::Error> + Send + 'static>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    if !req.headers().contains_key(header::HOST)
        && let Some(local) = local
        && let Ok(value) = HeaderValue::from_str(&local.to_string())
    {
        req.headers_mut().insert(header::HOST, value);
    }
    let max_body = usize::try_from(max_body).unwrap_or(usize::MAX);
    req.map(|body| Limited::new(body, max_body).map_err(body_error))
}

/// Maps a request-body error into the wasi:http error the guest sees.
fn body_error(e: BoxError) -> wasmtime_wasi_http::Error {
    if e.is::<http_body_util::LengthLimitError>() {
        return wasmtime_wasi_http::Error::HttpRequestBodySize(None);
    }
    match e.downcast::<hyper::Error>() {
        Ok(e) => wasmtime_wasi_http::Error::Hyper(*e),
        Err(_) => wasmtime_wasi_http::Error::ConnectionTerminated,
    }
}

/// The request's (first) `Content-Length`, if it reads as a number.
pub fn content_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// A JSON error document in the shape Django REST Framework uses
/// (`{"detail": ...}`), plus the request id that finds the log line.
pub fn error_response(
    status: StatusCode,
    message: &str,
    detail: Option<&str>,
    id: &str,
) -> Response<ResponseBody> {
    let mut doc = serde_json::json!({ "detail": message, "request_id": id });
    if let Some(detail) = detail {
        doc["error"] = serde_json::Value::String(detail.to_string());
    }
    let body = Full::new(Bytes::from(doc.to_string()))
        .map_err(|never: Infallible| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(value) = HeaderValue::from_str(id) {
        headers.insert("x-request-id", value);
    }
    response
}

/// The one access-log line of a request, written when its body is done.
struct AccessLog {
    /// Fed when the line is written.
    metrics: Arc<Metrics>,
    request_id: Arc<str>,
    method: Method,
    path: String,
    route: Option<Arc<str>>,
    status: u16,
    started: Instant,
}

impl AccessLog {
    /// Wraps `response` so that the line is logged when the body ends (or
    /// is dropped) with the bytes actually sent, and the request's permit is
    /// released only then.
    fn finish(
        mut self,
        response: Response<ResponseBody>,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Response<ResponseBody> {
        self.status = response.status().as_u16();
        response.map(|inner| {
            LoggedBody {
                inner,
                log: Some(self),
                bytes: 0,
                error: None,
                _permit: permit,
            }
            .boxed_unsync()
        })
    }

    fn write(&self, bytes: u64, error: Option<&str>) {
        let elapsed = self.started.elapsed();
        self.metrics
            .request_finished(self.route.as_deref(), self.status, elapsed);
        let ms = elapsed.as_secs_f64() * 1000.0;
        let route = self.route.as_deref().unwrap_or("-");
        match error {
            None => tracing::info!(
                target: "burrow::access",
                request_id = %self.request_id,
                "{} {} {} {bytes}B {ms:.1}ms route={route}",
                self.method, self.path, self.status
            ),
            Some(error) => tracing::warn!(
                target: "burrow::access",
                request_id = %self.request_id,
                "{} {} {} {bytes}B {ms:.1}ms route={route} body cut short: {error}",
                self.method, self.path, self.status
            ),
        }
    }
}

/// A response body that counts what it sends and logs once at the end.
struct LoggedBody {
    inner: ResponseBody,
    /// Taken when the line is written.
    log: Option<AccessLog>,
    bytes: u64,
    error: Option<String>,
    /// Held until the response is fully sent.
    _permit: Option<OwnedSemaphorePermit>,
}

impl LoggedBody {
    fn write_log(&mut self) {
        if let Some(log) = self.log.take() {
            log.write(self.bytes, self.error.as_deref());
        }
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
            }
            Some(Err(e)) => {
                self.error = Some(e.to_string());
                self.write_log();
            }
            None => self.write_log(),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        self.write_log();
    }
}

/// Request ids: a client's `X-Request-Id` when it is sane, otherwise a
/// fresh 16-hex-digit id unique within this process.
pub struct RequestIds {
    /// Random per process, so ids from two replicas do not collide.
    seed: u64,
    /// Counts requests.
    next: AtomicU64,
}

impl RequestIds {
    /// A source with a fresh per-process seed.
    pub fn new() -> Self {
        use std::hash::{BuildHasher, RandomState};
        Self {
            seed: RandomState::new().hash_one(std::process::id()),
            next: AtomicU64::new(0),
        }
    }

    /// The id of a request that sent `given` as its `X-Request-Id`.
    pub fn for_request(&self, given: Option<&HeaderValue>) -> String {
        if let Some(given) = given.and_then(|v| v.to_str().ok())
            && !given.is_empty()
            && given.len() <= 64
            && given
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return given.to_string();
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // Multiplying by an odd constant is a bijection: ids never repeat.
        format!("{:016x}", self.seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }
}

impl Default for RequestIds {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_unique_and_client_ids_are_checked() {
        let ids = RequestIds::new();
        let a = ids.for_request(None);
        let b = ids.for_request(None);
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        let given = HeaderValue::from_static("abc-123");
        assert_eq!(ids.for_request(Some(&given)), "abc-123");
        let bad = HeaderValue::from_static("has space");
        assert_ne!(ids.for_request(Some(&bad)), "has space");
    }
}
