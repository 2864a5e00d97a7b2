//! The guest side of the benchmarks, matching `bench-native`:
//! `GET /hello` → `hello`; `GET /item/{id}` → the `bench_items` row as JSON.

use burrow_sdk::bindings::burrow::db::sql;
use burrow_sdk::bindings::burrow::db::types::Value;
use burrow_sdk::wstd;
use wstd::http::{Body, Error, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(req: Request<Body>) -> Result<Response<Body>, Error> {
    let path = req.uri().path();
    if path == "/hello" {
        return Ok(Response::new("hello".into()));
    }
    let Some(id) = path
        .strip_prefix("/item/")
        .and_then(|s| s.parse::<u64>().ok())
    else {
        return Ok(status(
            StatusCode::NOT_FOUND,
            "{\"detail\":\"Not found.\"}".into(),
        ));
    };
    let sql = "SELECT id, name, price, quantity FROM bench_items WHERE id = ?";
    Ok(match sql::query(sql, &[Value::Uint(id)]) {
        Ok(rows) => match rows.rows.first() {
            Some(row) => {
                let text = |v: &Value| match v {
                    Value::Text(s) | Value::Decimal(s) => s.clone(),
                    _ => String::new(),
                };
                let num = |v: &Value| match v {
                    Value::Uint(u) => *u,
                    Value::Int(i) => *i as u64,
                    _ => 0,
                };
                let doc = serde_json::json!({
                    "id": num(&row[0]), "name": text(&row[1]), "price": text(&row[2]), "quantity": num(&row[3]),
                });
                let mut r = Response::new(doc.to_string().into());
                r.headers_mut()
                    .insert("content-type", "application/json".parse().unwrap());
                r
            }
            None => status(StatusCode::NOT_FOUND, "{\"detail\":\"Not found.\"}".into()),
        },
        Err(e) => status(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{{\"detail\":{:?}}}", format!("{e:?}")),
        ),
    })
}

fn status(code: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(body.into());
    *r.status_mut() = code;
    r
}
