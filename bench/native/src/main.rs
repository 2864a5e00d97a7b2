//! The native comparator for the benchmarks: the same two endpoints as the
//! bench guest, written directly on hyper and mysql_async.
//!
//! - `GET /hello` → `hello`;
//! - `GET /item/{id}` → the `bench_items` row as JSON.
//!
//! Usage: `bench-native LISTEN_ADDR [mysql://user:pass@127.0.0.1:port/db]`.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Request, Response, StatusCode, body::Incoming, server::conn::http1, service::service_fn,
};
use hyper_util::rt::TokioIo;
use mysql_async::prelude::Queryable;

type Row = (u64, String, String, u32);

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let listen = args.next().expect("usage: bench-native ADDR [MYSQL_URL]");
    let pool = args.next().map(|url| {
        let opts = mysql_async::OptsBuilder::from_opts(
            mysql_async::Opts::from_url(&url).expect("mysql url"),
        )
        .prefer_socket(false)
        .pool_opts(
            mysql_async::PoolOpts::default()
                .with_constraints(mysql_async::PoolConstraints::new(1, 16).unwrap())
                // As burrow's pool: no reset on every return (through a
                // bastion that costs a reconnect per request).
                .with_reset_connection(false),
        );
        Arc::new(mysql_async::Pool::new(opts))
    });
    let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
    eprintln!(
        "bench-native listening on http://{}",
        listener.local_addr().unwrap()
    );
    loop {
        let (stream, _) = listener.accept().await.expect("accept");
        let _ = stream.set_nodelay(true);
        let pool = pool.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, pool.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    pool: Option<Arc<mysql_async::Pool>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    if path == "/hello" {
        return Ok(Response::new(Full::new(Bytes::from_static(b"hello"))));
    }
    let (Some(id), Some(pool)) = (
        path.strip_prefix("/item/")
            .and_then(|s| s.parse::<u64>().ok()),
        pool,
    ) else {
        return Ok(status(StatusCode::NOT_FOUND, "{\"detail\":\"Not found.\"}"));
    };
    let row: Result<Option<Row>, _> = async {
        let mut conn = pool.get_conn().await?;
        conn.exec_first(
            "SELECT id, name, price, quantity FROM bench_items WHERE id = ?",
            (id,),
        )
        .await
    }
    .await;
    Ok(match row {
        Ok(Some((id, name, price, quantity))) => {
            let doc =
                serde_json::json!({ "id": id, "name": name, "price": price, "quantity": quantity });
            let mut r = Response::new(Full::new(Bytes::from(doc.to_string())));
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            r
        }
        Ok(None) => status(StatusCode::NOT_FOUND, "{\"detail\":\"Not found.\"}"),
        Err(e) => status(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("{{\"detail\":{:?}}}", e.to_string()),
        ),
    })
}

fn status(code: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = code;
    r
}
