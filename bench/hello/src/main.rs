//! `GET` anything → `hello`: the smallest wasi:http handler, so that the
//! hello scenario measures the host (burrow or `wasmtime serve`), not the
//! guest.

use wstd::http::{Body, Error, Request, Response};

#[wstd::http_server]
async fn main(_req: Request<Body>) -> Result<Response<Body>, Error> {
    Ok(Response::new("hello".into()))
}
