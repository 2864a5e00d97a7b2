//! The reference application: burrow's template for a handler component.
//!
//! Routes:
//! - `GET /hello` → a greeting;
//! - `* /echo` → JSON describing the request (method, path, decoded query,
//!   headers, body as text);
//! - `* /echo/raw` → the request body, byte for byte;
//! - `GET /api/health/` → `{"status": "ok", "database": "ok"}` after a real
//!   `SELECT 1` through the host's pool and tunnel (503 if it fails).
//!
//! Everything else → 404 `{"detail": "Not found."}`, as Django REST
//! Framework answers.

use burrow_sdk::wstd;
use burrow_sdk::{query, settings};
use wstd::http::{Body, Error, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(req: Request<Body>) -> Result<Response<Body>, Error> {
    match req.uri().path() {
        "/hello" | "/hello/" => Ok(text(StatusCode::OK, "Hello from burrow!\n")),
        "/echo" | "/echo/" => echo(req).await,
        "/echo/raw" => echo_raw(req),
        "/api/health/" | "/api/health" => Ok(health()),
        _ => Ok(json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({ "detail": "Not found." }),
        )),
    }
}

async fn echo(req: Request<Body>) -> Result<Response<Body>, Error> {
    let (parts, mut body) = req.into_parts();
    let bytes = body.contents().await?.to_vec();
    let query = parts.uri.query().map(query::parse).unwrap_or_default();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let doc = serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": query,
        "headers": headers,
        "body": String::from_utf8_lossy(&bytes),
        "body_bytes": bytes.len(),
        "debug": settings::debug(),
    });
    Ok(json(StatusCode::OK, &doc))
}

/// Streams the body back as it arrives.
fn echo_raw(req: Request<Body>) -> Result<Response<Body>, Error> {
    let (parts, body) = req.into_parts();
    let mut response = Response::new(body);
    if let Some(ct) = parts.headers.get("content-type") {
        response.headers_mut().insert("content-type", ct.clone());
    }
    Ok(response)
}

fn health() -> Response<Body> {
    use burrow_sdk::bindings::burrow::db::{sql, types::Error};
    match sql::query("SELECT 1", &[]) {
        Ok(_) => json(
            StatusCode::OK,
            &serde_json::json!({ "status": "ok", "database": "ok" }),
        ),
        Err(e) => {
            let kind = match &e {
                Error::Unavailable(_) => "unavailable",
                Error::Timeout(_) => "timeout",
                Error::Query(_) => "query error",
                Error::BadParameter(_) => "bad parameter",
                Error::TooLarge(_) => "too large",
            };
            let mut doc = serde_json::json!({ "status": "error", "database": kind });
            if settings::debug() {
                doc["error"] = serde_json::Value::String(format!("{e:?}"));
            }
            json(StatusCode::SERVICE_UNAVAILABLE, &doc)
        }
    }
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut response = Response::new(body.to_string().into());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", "text/plain; charset=utf-8".parse().unwrap());
    response
}

fn json(status: StatusCode, doc: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(doc.to_string().into());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
}
