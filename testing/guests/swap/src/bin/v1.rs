//! Version 1 of the hot-swap test handler: answers "1".

#[wstd::http_server]
async fn main(
    req: wstd::http::Request<wstd::http::Body>,
) -> Result<wstd::http::Response<wstd::http::Body>, wstd::http::Error> {
    swap_guest::answer("1", req).await
}
