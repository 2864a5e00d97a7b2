//! The guest side of burrow: what a handler component needs beyond
//! `wstd`'s `#[wstd::http_server]`.
//!
//! - [`web`]: a router with path parameters and methods, requests with
//!   decoded query and JSON body, JSON responses and DRF-style errors;
//! - [`db`]: typed parameters and rows, transactions as a closure;
//! - [`settings`]: the host's settings (`debug`, `secret_key`, `[app]`);
//! - [`query`]: query-string decoding as browsers and Django do it;
//! - [`bindings`]: the raw generated imports of `wit/db.wit`.
//!
//! A handler is an ordinary `wstd` HTTP server:
//!
//! ```no_run
//! use burrow_sdk::wstd::http::{Body, Error, Request, Response};
//!
//! #[burrow_sdk::wstd::http_server]
//! async fn main(req: Request<Body>) -> Result<Response<Body>, Error> {
//!     let debug = burrow_sdk::settings::debug();
//!     Ok(Response::new(format!("debug={debug} path={}", req.uri().path()).into()))
//! }
//! ```

pub use wstd;

pub mod db;
pub mod query;
pub mod settings;
pub mod web;

/// Generated bindings for the `burrow:db/imports` world.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "burrow:db/imports",
        generate_all,
        additional_derives: [PartialEq],
    });
}
