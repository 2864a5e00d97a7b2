//! One handler in two versions, for the host's hot-swap tests. Each binary
//! answers its version ("1" or "2") as the whole body; `?ms=N` first waits
//! N ms on a host timer, so that a request can be in flight during a swap.

use std::time::Duration;

use wstd::http::{Body, Error, Request, Response};

/// Answers `version`, after the wait `?ms=N` asks for.
pub async fn answer(version: &'static str, req: Request<Body>) -> Result<Response<Body>, Error> {
    let wait = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|p| p.strip_prefix("ms="))
        .find_map(|v| v.parse::<u64>().ok());
    if let Some(ms) = wait {
        wstd::task::sleep(Duration::from_millis(ms).into()).await;
    }
    Ok(Response::new(version.into()))
}
