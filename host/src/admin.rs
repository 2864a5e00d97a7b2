//! `admin.rs` is the operator's listener, apart from the public one and
//! bound to loopback by default: liveness, readiness, Prometheus metrics,
//! the route list, and reload / upload / rollback of a route's component.
//! It owns the endpoints and their authentication; the figures come from
//! the metrics, tunnel, pool and registry, swaps from the registry.
//!
//! `/_burrow/health` and `/_burrow/ready` are open (load balancers and
//! `docker` probe them); every other endpoint needs `Authorization: Bearer
//! <BURROW_ADMIN_TOKEN>` whenever a token is set, and a token is required
//! whenever the listener is not on a loopback address.
//!
//! The parts appear as start-up proceeds (the listener is up before the
//! tunnel connects), so readiness says what is still missing.

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value as Json, json};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::config::Secret;
use crate::db::Db;
use crate::metrics::{Exposition, Metrics};
use crate::registry::{Registry, SwapError, SwapOutcome};
use crate::tunnel::{State, TunnelMonitor};

/// Largest component accepted by `PUT /_burrow/routes/{name}/component`.
pub const MAX_UPLOAD: usize = 256 * 1024 * 1024;
/// A readiness answer about the database is reused for this long, so that
/// frequent probes do not each cost a round trip through the tunnel.
const DB_PROBE_TTL: Duration = Duration::from_secs(1);
/// Time an admin client has to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the admin endpoints read; filled in as start-up proceeds.
pub struct AdminState {
    /// `BURROW_ADMIN_TOKEN`, if set.
    token: Option<Secret>,
    /// The server's counters (the server holds the other `Arc`).
    pub metrics: Arc<Metrics>,
    /// Whether a tunnel / database is configured at all.
    tunnel_configured: bool,
    db_configured: bool,
    /// Set once the tunnel is up for the first time.
    tunnel: OnceLock<TunnelMonitor>,
    /// Set once the pool exists.
    db: OnceLock<Arc<Db>>,
    /// Set once every route's component is loaded.
    registry: OnceLock<Arc<Registry>>,
    /// Set when shutdown begins: readiness turns 503 so that load
    /// balancers stop sending while in-flight requests drain.
    shutting_down: std::sync::atomic::AtomicBool,
    /// The last database probe: when, and whether it worked.
    db_probe: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

impl AdminState {
    pub fn new(
        token: Option<Secret>,
        metrics: Arc<Metrics>,
        tunnel_configured: bool,
        db_configured: bool,
    ) -> Arc<Self> {
        Arc::new(Self {
            token,
            metrics,
            tunnel_configured,
            db_configured,
            tunnel: OnceLock::new(),
            db: OnceLock::new(),
            registry: OnceLock::new(),
            shutting_down: std::sync::atomic::AtomicBool::new(false),
            db_probe: tokio::sync::Mutex::new(None),
        })
    }

    pub fn set_tunnel(&self, tunnel: TunnelMonitor) {
        let _ = self.tunnel.set(tunnel);
    }

    pub fn set_db(&self, db: Arc<Db>) {
        let _ = self.db.set(db);
    }

    pub fn set_registry(&self, registry: Arc<Registry>) {
        let _ = self.registry.set(registry);
    }

    pub fn set_shutting_down(&self) {
        self.shutting_down
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Every readiness check: name → (ok, detail).
    async fn readiness(&self) -> Vec<(&'static str, bool, String)> {
        let mut checks = Vec::new();
        if self
            .shutting_down
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            checks.push(("shutdown", false, "shutting down".to_string()));
        }
        if self.tunnel_configured {
            checks.push(match self.tunnel.get() {
                None => ("tunnel", false, "connecting for the first time".to_string()),
                Some(t) => {
                    let s = t.status();
                    let since = s.since.elapsed().map(|d| d.as_secs()).unwrap_or(0);
                    let mut detail = format!("{} for {since} s", s.state);
                    if s.state != State::Up
                        && let Some(e) = &s.last_error
                    {
                        detail.push_str(&format!(": {e}"));
                    }
                    ("tunnel", s.state == State::Up, detail)
                }
            });
        }
        if self.db_configured {
            checks.push(match self.db.get() {
                None => ("database", false, "not connected yet".to_string()),
                Some(db) => match self.probe_db(db).await {
                    Ok(()) => ("database", true, "SELECT 1 ok".to_string()),
                    Err(e) => ("database", false, e),
                },
            });
        }
        checks.push(match self.registry.get() {
            None => ("routes", false, "components are loading".to_string()),
            Some(r) => (
                "routes",
                true,
                format!("{} loaded", r.table().routes().len()),
            ),
        });
        checks
    }

    async fn probe_db(&self, db: &Db) -> Result<(), String> {
        let mut last = self.db_probe.lock().await;
        if let Some((at, result)) = &*last
            && at.elapsed() < DB_PROBE_TTL
        {
            return result.clone();
        }
        let result = db.ping().await.map_err(|e| format!("{e:?}"));
        *last = Some((Instant::now(), result.clone()));
        result
    }

    fn authorized<B>(&self, req: &Request<B>) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        constant_time_eq(given.as_bytes(), token.expose().as_bytes())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `burrow healthcheck`: asks the local server's admin listener whether it
/// is ready; Ok only on 200. A wildcard listen address is reached on
/// loopback.
pub async fn healthcheck(config: &crate::config::AdminConfig) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(mut addr) = config.listen else {
        anyhow::bail!("the admin API is off (BURROW_ADMIN_LISTEN=off): nothing to ask");
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("nothing answers on the admin address `{addr}`"))?;
        stream
            .write_all(
                format!("GET /_burrow/ready HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        anyhow::Ok(String::from_utf8_lossy(&answer).into_owned())
    };
    let answer = tokio::time::timeout(Duration::from_secs(5), ask)
        .await
        .context("the admin API did not answer within 5 s")??;
    let status = answer.split_whitespace().nth(1).unwrap_or("");
    if status == "200" {
        println!("ready");
        Ok(())
    } else {
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").trim();
        anyhow::bail!("not ready ({status}): {body}")
    }
}

/// Binds the admin listener; a taken port is a start-up error.
pub async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!(
            "cannot listen for the admin API on `{addr}` (is the port taken? set \
             BURROW_ADMIN_LISTEN to another address, or `off`)"
        )
    })
}

/// Serves the admin API on `listener` until `shutdown` resolves.
pub async fn run(
    state: Arc<AdminState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let state = Arc::clone(&state);
                    connections.spawn(async move {
                        let service = service_fn(move |req| {
                            let state = Arc::clone(&state);
                            async move { Ok::<_, Infallible>(handle(&state, req).await) }
                        });
                        let _ = http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(HEADER_TIMEOUT)
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                Err(e) => {
                    tracing::warn!("admin accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.abort_all();
}

type AdminResponse = Response<Full<Bytes>>;

async fn handle(state: &AdminState, req: Request<Incoming>) -> AdminResponse {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let response = route(state, req).await;
    tracing::info!(
        target: "burrow::admin",
        "{method} {path} {}",
        response.status().as_u16()
    );
    response
}

async fn route(state: &AdminState, req: Request<Incoming>) -> AdminResponse {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let method = req.method().clone();
    match (method.clone(), segments.as_slice()) {
        (Method::GET | Method::HEAD, ["_burrow", "health"]) => {
            json_response(StatusCode::OK, &json!({ "status": "ok" }))
        }
        (Method::GET | Method::HEAD, ["_burrow", "ready"]) => {
            let checks = state.readiness().await;
            let ready = checks.iter().all(|(_, ok, _)| *ok);
            let not_ready: Vec<Json> = checks
                .iter()
                .filter(|(_, ok, _)| !ok)
                .map(|(name, _, detail)| json!({ "check": name, "detail": detail }))
                .collect();
            let all: serde_json::Map<String, Json> = checks
                .iter()
                .map(|(name, ok, detail)| (name.to_string(), json!({ "ok": ok, "detail": detail })))
                .collect();
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json_response(
                status,
                &json!({ "ready": ready, "not_ready": not_ready, "checks": all }),
            )
        }
        _ if !state.authorized(&req) => {
            let mut response = json_response(
                StatusCode::UNAUTHORIZED,
                &json!({ "detail": "This endpoint needs `Authorization: Bearer <BURROW_ADMIN_TOKEN>`." }),
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            response
        }
        (Method::GET, ["_burrow", "metrics"]) => {
            let mut out = Exposition::new();
            state.metrics.render(&mut out);
            crate::heap::render_metrics(&mut out);
            if let Some(t) = state.tunnel.get() {
                t.render_metrics(&mut out);
            }
            if let Some(db) = state.db.get() {
                db.render_metrics(&mut out);
            }
            if let Some(r) = state.registry.get() {
                render_registry(r, &mut out);
                r.runtime().render_metrics(&mut out);
            }
            let mut response = Response::new(Full::new(Bytes::from(out.finish())));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        (_, ["_burrow", "routes", ..]) => {
            let Some(registry) = state.registry.get() else {
                return json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({ "detail": "Components are still loading." }),
                );
            };
            routes_endpoint(registry, req, &segments[2..]).await
        }
        (_, ["_burrow", ..]) => json_response(
            StatusCode::NOT_FOUND,
            &json!({ "detail": "Not found.", "endpoints": [
                "GET /_burrow/health", "GET /_burrow/ready", "GET /_burrow/metrics",
                "GET /_burrow/routes", "POST /_burrow/routes/{name}/reload",
                "PUT /_burrow/routes/{name}/component", "POST /_burrow/routes/{name}/rollback"
            ]}),
        ),
        _ => json_response(StatusCode::NOT_FOUND, &json!({ "detail": "Not found." })),
    }
}

async fn routes_endpoint(
    registry: &Registry,
    req: Request<Incoming>,
    rest: &[&str],
) -> AdminResponse {
    let method = req.method().clone();
    let result = match (method, rest) {
        (Method::GET, []) => {
            let routes: Vec<Json> = registry
                .table()
                .routes()
                .iter()
                .map(|r| r.describe())
                .collect();
            return json_response(StatusCode::OK, &json!({ "routes": routes }));
        }
        (Method::GET, [name]) => {
            return match registry.table().get(name) {
                Some(route) => json_response(StatusCode::OK, &route.describe()),
                None => swap_error(&SwapError::UnknownRoute(name.to_string())),
            };
        }
        (Method::POST, [name, "reload"]) => registry.reload(name, "admin reload").await,
        (Method::POST, [name, "rollback"]) => registry.rollback(name).await,
        (Method::PUT, [name, "component"]) => {
            let name = name.to_string();
            match Limited::new(req.into_body(), MAX_UPLOAD).collect().await {
                Ok(body) => registry.upload(&name, body.to_bytes().to_vec()).await,
                Err(e) => {
                    let too_large = e.is::<http_body_util::LengthLimitError>();
                    let (status, detail) = if too_large {
                        (
                            StatusCode::PAYLOAD_TOO_LARGE,
                            format!("A component may be at most {MAX_UPLOAD} bytes."),
                        )
                    } else {
                        (
                            StatusCode::BAD_REQUEST,
                            format!("The upload was cut short: {e}"),
                        )
                    };
                    return json_response(status, &json!({ "detail": detail }));
                }
            }
        }
        (_, [_, "reload" | "rollback"]) | (_, [_, "component"]) | (_, [] | [_]) => {
            return json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({ "detail": "Method not allowed." }),
            );
        }
        _ => return json_response(StatusCode::NOT_FOUND, &json!({ "detail": "Not found." })),
    };
    let name = rest[0];
    match result {
        Ok(outcome) => {
            let route = registry.table().get(name).map(|r| r.describe());
            let (swapped, from, to) = match outcome {
                SwapOutcome::Swapped { from, to } => (true, Some(from), to),
                SwapOutcome::Unchanged { sha256 } => (false, None, sha256),
            };
            json_response(
                StatusCode::OK,
                &json!({ "swapped": swapped, "from": from, "sha256": to, "route": route }),
            )
        }
        Err(e) => swap_error(&e),
    }
}

fn swap_error(e: &SwapError) -> AdminResponse {
    let (status, serving) = match e {
        SwapError::UnknownRoute(_) => (StatusCode::NOT_FOUND, None),
        SwapError::NoPrevious(_) => (StatusCode::CONFLICT, None),
        SwapError::Rejected { serving, .. } => {
            (StatusCode::UNPROCESSABLE_ENTITY, Some(serving.clone()))
        }
    };
    let reason = match e {
        SwapError::Rejected { reason, .. } => reason.clone(),
        other => other.to_string(),
    };
    json_response(status, &json!({ "detail": reason, "serving": serving }))
}

fn render_registry(registry: &Registry, out: &mut Exposition) {
    let table = registry.table();
    type Family = (
        &'static str,
        &'static str,
        fn(&crate::registry::Route) -> u64,
    );
    let families: [Family; 2] = [
        (
            "burrow_component_swaps_total",
            "Component versions swapped in, by route.",
            |r| r.swaps(),
        ),
        (
            "burrow_component_rejected_total",
            "Candidate components rejected by validation, by route.",
            |r| r.rejected(),
        ),
    ];
    for (name, help, value) in families {
        out.header(name, "counter", help);
        for r in table.routes() {
            out.sample(name, &[("route", &r.config.name)], value(r) as f64);
        }
    }
    out.header(
        "burrow_component_info",
        "gauge",
        "The component version serving each route.",
    );
    for r in table.routes() {
        out.sample(
            "burrow_component_info",
            &[
                ("route", &r.config.name),
                ("sha256", &r.current().component.sha256),
            ],
            1.0,
        );
    }
}

fn json_response(status: StatusCode, doc: &Json) -> AdminResponse {
    let mut response = Response::new(Full::new(Bytes::from(doc.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
