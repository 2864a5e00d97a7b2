//! The reference application: a Django REST Framework–compatible API on
//! Django's own tables, as a burrow guest. It is the template to copy for
//! your own handlers.
//!
//! | route | view |
//! | --- | --- |
//! | `POST /api/token/` | `{username, password}` → `{refresh, access}` (simplejwt) |
//! | `POST /api/token/refresh/` | `{refresh}` → `{access}` |
//! | `POST /api/users/` | register |
//! | `GET /api/users/me/` | the current user |
//! | `GET, POST /api/items/` | list (paginated), create |
//! | `GET, PUT, PATCH, DELETE /api/items/{id}/` | retrieve, update, partial update, delete |
//! | `GET /api/health/` | `{"status": "ok", "database": "ok"}` after a real query |
//! | `GET /hello`, `* /echo`, `* /echo/raw` | diagnostics |

mod api;
mod auth;

use burrow_sdk::db;
use burrow_sdk::web::{ApiError, Request, Response, Router};
use burrow_sdk::{query, settings, wstd};
use serde_json::json;

#[wstd::http_server]
async fn main(
    req: wstd::http::Request<wstd::http::Body>,
) -> Result<wstd::http::Response<wstd::http::Body>, wstd::http::Error> {
    let router = Router::new()
        .post("/api/token/", api::obtain_token)
        .post("/api/token/refresh/", api::refresh_token)
        .post("/api/users/", api::register)
        .get("/api/users/me/", api::me)
        .get("/api/items/", api::list_items)
        .post("/api/items/", api::create_item)
        .get("/api/items/{id}/", api::get_item)
        .put("/api/items/{id}/", api::update_item)
        .patch("/api/items/{id}/", api::update_item)
        .delete("/api/items/{id}/", api::delete_item)
        .get("/api/health/", health)
        .get("/hello", hello)
        .route("GET", "/echo", echo)
        .route("POST", "/echo", echo)
        .route("PUT", "/echo", echo)
        .route("PATCH", "/echo", echo)
        .route("DELETE", "/echo", echo)
        .route("POST", "/echo/raw", echo_raw)
        .route("PUT", "/echo/raw", echo_raw);
    Ok(router.serve(req).await)
}

fn hello(_: &Request) -> Result<Response, ApiError> {
    Ok(Response::text(200, "Hello from burrow!\n"))
}

/// Describes the request: method, path, decoded query, headers, body.
fn echo(req: &Request) -> Result<Response, ApiError> {
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    Ok(Response::json(
        200,
        &json!({
            "method": req.method,
            "path": req.path,
            "query": query::parse(&req.query_string),
            "headers": headers,
            "body": String::from_utf8_lossy(&req.body),
            "body_bytes": req.body.len(),
            "debug": settings::debug(),
        }),
    ))
}

/// The body back, byte for byte.
fn echo_raw(req: &Request) -> Result<Response, ApiError> {
    let mut response = Response {
        status: 200,
        headers: Vec::new(),
        body: req.body.clone(),
    };
    if let Some(ct) = req.header("content-type") {
        response = response.with_header("content-type", ct);
    }
    Ok(response)
}

fn health(_: &Request) -> Result<Response, ApiError> {
    match db::query("SELECT 1", &[]) {
        Ok(_) => Ok(Response::json(
            200,
            &json!({ "status": "ok", "database": "ok" }),
        )),
        Err(e) => {
            let kind = match &e {
                db::DbError::Host(db::WitError::Unavailable(_)) => "unavailable",
                db::DbError::Host(db::WitError::Timeout(_)) => "timeout",
                _ => "error",
            };
            let mut doc = json!({ "status": "error", "database": kind });
            if settings::debug() {
                doc["error"] = json!(e.to_string());
            }
            Ok(Response::json(503, &doc))
        }
    }
}
