//! Version 2 of the hot-swap test handler: answers "2".

#[wstd::http_server]
async fn main(
    req: wstd::http::Request<wstd::http::Body>,
) -> Result<wstd::http::Response<wstd::http::Body>, wstd::http::Error> {
    swap_guest::answer("2", req).await
}
