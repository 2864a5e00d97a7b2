//! Handlers that read like Django views: a [`Router`] with path parameters
//! and methods, a [`Request`] with decoded query and JSON body, JSON
//! [`Response`]s, and an [`ApiError`] that becomes a DRF-style JSON error.
//!
//! ```no_run
//! use burrow_sdk::web::{ApiError, Request, Response, Router};
//!
//! fn show(req: &Request) -> Result<Response, ApiError> {
//!     let id: i64 = req.param("id").parse().map_err(|_| ApiError::not_found())?;
//!     Ok(Response::json(200, &serde_json::json!({ "id": id })))
//! }
//!
//! #[burrow_sdk::wstd::http_server]
//! async fn main(
//!     req: burrow_sdk::wstd::http::Request<burrow_sdk::wstd::http::Body>,
//! ) -> Result<burrow_sdk::wstd::http::Response<burrow_sdk::wstd::http::Body>, burrow_sdk::wstd::http::Error> {
//!     let router = Router::new().get("/api/things/{id}/", show);
//!     Ok(router.serve(req).await)
//! }
//! ```

use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use wstd::http::{Body, HeaderValue, StatusCode};

use crate::db::DbError;
use crate::settings;

/// Largest JSON body [`Request::json`] accepts unless told otherwise.
pub const DEFAULT_JSON_LIMIT: usize = 1024 * 1024;

/// A handler: a plain function from request to response.
pub type Handler = fn(&Request) -> Result<Response, ApiError>;

/// An incoming request, body already read.
pub struct Request {
    pub method: String,
    pub path: String,
    /// The raw query string, without `?`.
    pub query_string: String,
    pub headers: wstd::http::HeaderMap,
    pub body: Vec<u8>,
    /// `Host` header, for absolute URLs.
    pub host: String,
    params: Vec<(String, String)>,
}

impl Request {
    /// A path parameter (`{id}` in the route); empty if absent.
    pub fn param(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// Decoded query pairs, in order, repeated keys kept.
    pub fn query(&self) -> Vec<(String, String)> {
        crate::query::parse(&self.query_string)
    }

    /// The first value of query parameter `name`.
    pub fn query_value(&self, name: &str) -> Option<String> {
        self.query()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON: 413 over [`DEFAULT_JSON_LIMIT`], 400 when it does
    /// not parse, in DRF's words.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        self.json_limited(DEFAULT_JSON_LIMIT)
    }

    pub fn json_limited<T: DeserializeOwned>(&self, limit: usize) -> Result<T, ApiError> {
        if self.body.len() > limit {
            return Err(ApiError::new(
                413,
                json!({ "detail": format!("Request body larger than {limit} bytes.") }),
            ));
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| ApiError::new(400, json!({ "detail": format!("JSON parse error - {e}") })))
    }

    /// `http://host/path?query` with `query` replaced, for pagination links.
    pub fn absolute_url(&self, query: &str) -> String {
        let scheme = self
            .header("x-forwarded-proto")
            .filter(|p| *p == "https" || *p == "http")
            .unwrap_or("http");
        if query.is_empty() {
            format!("{scheme}://{}{}", self.host, self.path)
        } else {
            format!("{scheme}://{}{}?{query}", self.host, self.path)
        }
    }
}

/// A response: status, headers and body.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, doc: &Value) -> Response {
        Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: doc.to_string().into_bytes(),
        }
    }

    pub fn text(status: u16, text: &str) -> Response {
        Response {
            status,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: text.as_bytes().to_vec(),
        }
    }

    /// 204 No Content.
    pub fn no_content() -> Response {
        Response {
            status: 204,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// An error that becomes a JSON response, DRF style.
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub body: Value,
    /// Logged (stderr → host log), and shown only in debug mode.
    pub detail: Option<String>,
}

impl ApiError {
    pub fn new(status: u16, body: Value) -> ApiError {
        ApiError {
            status,
            body,
            detail: None,
        }
    }

    /// `{"detail": "Not found."}`, 404.
    pub fn not_found() -> ApiError {
        ApiError::new(404, json!({ "detail": "Not found." }))
    }

    /// 401 with DRF's detail.
    pub fn unauthorized(detail: &str) -> ApiError {
        ApiError::new(401, json!({ "detail": detail }))
    }

    /// 400 `{field: [messages]}`.
    pub fn validation(errors: Value) -> ApiError {
        ApiError::new(400, errors)
    }

    /// 500 with a generic message; `detail` is logged.
    pub fn internal(detail: impl Into<String>) -> ApiError {
        ApiError {
            status: 500,
            body: json!({ "detail": "A server error occurred." }),
            detail: Some(detail.into()),
        }
    }

    fn into_response(self) -> Response {
        let mut body = self.body;
        if let Some(detail) = &self.detail {
            eprintln!("error {}: {detail}", self.status);
            if settings::debug()
                && let Some(map) = body.as_object_mut()
            {
                map.insert("error".into(), Value::String(detail.clone()));
            }
        }
        let mut response = Response::json(self.status, &body);
        if self.status == 401 {
            response = response.with_header("www-authenticate", "Bearer realm=\"api\"");
        }
        if self.status == 503 {
            response = response.with_header("retry-after", "1");
        }
        response
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> ApiError {
        use crate::db::WitError as W;
        let (status, message) = match &e {
            DbError::Host(W::Unavailable(_)) => {
                (503, "The database is unavailable; retry shortly.")
            }
            DbError::Host(W::Timeout(_)) => (504, "The database took too long to answer."),
            _ => (500, "A server error occurred."),
        };
        ApiError {
            status,
            body: json!({ "detail": message }),
            detail: Some(e.to_string()),
        }
    }
}

struct Route {
    segments: Vec<String>,
    trailing_slash: bool,
    methods: Vec<(&'static str, Handler)>,
}

/// Maps paths and methods to handlers. Patterns are literal segments and
/// `{name}` parameters; a trailing slash is part of the pattern, as in
/// Django: a GET for the path without it is redirected (301) to it.
#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    pub fn new() -> Router {
        Router::default()
    }

    pub fn route(mut self, method: &'static str, pattern: &str, handler: Handler) -> Router {
        let trailing_slash = pattern.ends_with('/') && pattern.len() > 1;
        let segments: Vec<String> = pattern
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        match self
            .routes
            .iter_mut()
            .find(|r| r.segments == segments && r.trailing_slash == trailing_slash)
        {
            Some(route) => route.methods.push((method, handler)),
            None => self.routes.push(Route {
                segments,
                trailing_slash,
                methods: vec![(method, handler)],
            }),
        }
        self
    }

    pub fn get(self, pattern: &str, handler: Handler) -> Router {
        self.route("GET", pattern, handler)
    }
    pub fn post(self, pattern: &str, handler: Handler) -> Router {
        self.route("POST", pattern, handler)
    }
    pub fn put(self, pattern: &str, handler: Handler) -> Router {
        self.route("PUT", pattern, handler)
    }
    pub fn patch(self, pattern: &str, handler: Handler) -> Router {
        self.route("PATCH", pattern, handler)
    }
    pub fn delete(self, pattern: &str, handler: Handler) -> Router {
        self.route("DELETE", pattern, handler)
    }

    /// Reads the request body and dispatches; every error becomes JSON.
    pub async fn serve(&self, req: wstd::http::Request<Body>) -> wstd::http::Response<Body> {
        let (parts, mut body) = req.into_parts();
        let bytes = match body.contents().await {
            Ok(b) => b.to_vec(),
            // The host cuts a body that outgrows the route's `max_body`
            // (one sent chunked, with no length up front); wasi:http only
            // hands the reason on as text.
            Err(e) if format!("{e:#}").contains("body size exceeds") => {
                return to_wstd(
                    ApiError::new(413, json!({ "detail": "Request body too large." }))
                        .into_response(),
                );
            }
            Err(e) => {
                eprintln!("the request body could not be read: {e:#}");
                return to_wstd(
                    ApiError::new(
                        400,
                        json!({ "detail": "The request body could not be read." }),
                    )
                    .into_response(),
                );
            }
        };
        // wasi:http carries the Host header as the request's authority.
        let host = parts
            .uri
            .authority()
            .map(|a| a.to_string())
            .or_else(|| {
                parts
                    .headers
                    .get("host")
                    .and_then(|h| h.to_str().ok())
                    .map(String::from)
            })
            .unwrap_or_else(|| "localhost".to_string());
        let mut request = Request {
            method: parts.method.as_str().to_string(),
            path: parts.uri.path().to_string(),
            query_string: parts.uri.query().unwrap_or("").to_string(),
            headers: parts.headers,
            body: bytes,
            host,
            params: Vec::new(),
        };
        to_wstd(self.dispatch(&mut request))
    }

    /// Dispatches an already-read request (also usable in unit tests).
    pub fn dispatch(&self, request: &mut Request) -> Response {
        let path = request.path.clone();
        let trailing = path.ends_with('/') && path.len() > 1;
        let segments: Vec<&str> = path
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let mut slash_redirect = false;
        for route in &self.routes {
            let Some(params) = match_segments(&route.segments, &segments) else {
                continue;
            };
            if route.trailing_slash != trailing {
                slash_redirect |= route.trailing_slash && !trailing;
                continue;
            }
            let method = if request.method == "HEAD" {
                "GET"
            } else {
                request.method.as_str()
            };
            let Some((_, handler)) = route.methods.iter().find(|(m, _)| *m == method) else {
                let mut allow: Vec<&str> = route.methods.iter().map(|(m, _)| *m).collect();
                if allow.contains(&"GET") {
                    allow.push("HEAD");
                }
                allow.push("OPTIONS");
                if request.method == "OPTIONS" {
                    return Response::no_content().with_header("allow", &allow.join(", "));
                }
                return Response::json(
                    405,
                    &json!({ "detail": format!("Method \"{}\" not allowed.", request.method) }),
                )
                .with_header("allow", &allow.join(", "));
            };
            request.params = params;
            return match handler(request) {
                Ok(response) => response,
                Err(e) => e.into_response(),
            };
        }
        if slash_redirect && (request.method == "GET" || request.method == "HEAD") {
            let mut location = format!("{path}/");
            if !request.query_string.is_empty() {
                location = format!("{location}?{}", request.query_string);
            }
            return Response::json(301, &json!({})).with_header("location", &location);
        }
        ApiError::not_found().into_response()
    }
}

fn match_segments(pattern: &[String], path: &[&str]) -> Option<Vec<(String, String)>> {
    if pattern.len() != path.len() {
        return None;
    }
    let mut params = Vec::new();
    for (p, s) in pattern.iter().zip(path) {
        if let Some(name) = p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            params.push((name.to_string(), crate::query::decode_path(s)));
        } else if p != s {
            return None;
        }
    }
    Some(params)
}

fn to_wstd(response: Response) -> wstd::http::Response<Body> {
    let mut out = wstd::http::Response::new(Body::from(response.body));
    *out.status_mut() =
        StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in response.headers {
        if let (Ok(name), Ok(value)) = (
            wstd::http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            out.headers_mut().append(name, value);
        }
    }
    out
}
