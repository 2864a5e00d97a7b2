//! Exposes `burrow:db` over HTTP for the host's database tests.
//!
//! - `POST /query` and `POST /execute`: `{"sql": "...", "params": [V, ...]}`;
//! - `POST /tx`: `{"isolation": null | "serializable" | ..., "before": sql?, "steps": [...]}`,
//!   each step `{"op": "query" | "execute", "sql", "params"}`, or
//!   `{"op": "commit" | "rollback" | "drop" | "trap"}`;
//! - `GET /ping`: `SELECT 1`.
//!
//! A value V is `{"t": kind, "v": ...}`: kinds `null`, `int`, `uint`,
//! `float`, `double` (numbers), `decimal`, `text`, `json` (strings), `bytes`
//! (hex), `date` (`YYYY-MM-DD`), `time` (`[-]H:MM:SS.ffffff`), `datetime`,
//! `timestamp` (`YYYY-MM-DD HH:MM:SS.ffffff`), `bit` (number).
//! Errors answer 503 (unavailable), 504 (timeout), 409 (duplicate key),
//! 400 (other query errors, bad parameters), 413 (too large).

use burrow_sdk::bindings::burrow::db::sql::{self, Transaction};
use burrow_sdk::bindings::burrow::db::types::{
    Column, ColumnType, Date, Datetime, Error, Isolation, RowSet, Time, Value,
};
use burrow_sdk::wstd;
use serde_json::{Value as Json, json};
use wstd::http::{Body, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(req: Request<Body>) -> Result<Response<Body>, wstd::http::Error> {
    let path = req.uri().path().to_string();
    let mut body = req.into_body();
    let input: Json = match body.contents().await {
        Ok(bytes) if !bytes.is_empty() => match serde_json::from_slice(bytes) {
            Ok(v) => v,
            Err(e) => {
                return Ok(reply(
                    StatusCode::BAD_REQUEST,
                    json!({ "bad_request": e.to_string() }),
                ));
            }
        },
        _ => Json::Null,
    };
    let result = match path.as_str() {
        "/query" => params(&input).and_then(|p| {
            sql::query(sql_of(&input), &p).map(|rows| rows_json(&rows)).map_err(Into::into)
        }),
        "/execute" => params(&input).and_then(|p| {
            sql::execute(sql_of(&input), &p)
                .map(|r| json!({ "rows_affected": r.rows_affected, "last_insert_id": r.last_insert_id }))
                .map_err(Into::into)
        }),
        "/ping" => sql::query("SELECT 1", &[]).map(|rows| rows_json(&rows)).map_err(Into::into),
        "/tx" => transaction(&input),
        _ => return Ok(reply(StatusCode::NOT_FOUND, json!({ "detail": "Not found." }))),
    };
    Ok(match result {
        Ok(doc) => reply(StatusCode::OK, doc),
        Err(Failure::Db(e)) => error_reply(e),
        Err(Failure::Input(m)) => reply(StatusCode::BAD_REQUEST, json!({ "bad_request": m })),
    })
}

enum Failure {
    Db(Error),
    Input(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Db(e)
    }
}

fn transaction(input: &Json) -> Result<Json, Failure> {
    let isolation = match input["isolation"].as_str() {
        None => None,
        Some("read-uncommitted") => Some(Isolation::ReadUncommitted),
        Some("read-committed") => Some(Isolation::ReadCommitted),
        Some("repeatable-read") => Some(Isolation::RepeatableRead),
        Some("serializable") => Some(Isolation::Serializable),
        Some(other) => return Err(Failure::Input(format!("unknown isolation {other}"))),
    };
    // A plain statement first, when asked, on the request's connection.
    if let Some(before) = input["before"].as_str() {
        sql::query(before, &[])?;
    }
    let mut tx = Some(sql::begin(isolation)?);
    let mut out = Vec::new();
    for step in input["steps"].as_array().cloned().unwrap_or_default() {
        let op = step["op"].as_str().unwrap_or("");
        let current = tx
            .as_ref()
            .ok_or_else(|| Failure::Input("transaction already ended".into()))?;
        match op {
            "query" => out.push(rows_json(&current.query(sql_of(&step), &params(&step)?)?)),
            "execute" => {
                let r = current.execute(sql_of(&step), &params(&step)?)?;
                out.push(
                    json!({ "rows_affected": r.rows_affected, "last_insert_id": r.last_insert_id }),
                );
            }
            "commit" => {
                Transaction::commit(tx.take().unwrap())?;
                out.push(json!("committed"));
            }
            "rollback" => {
                Transaction::rollback(tx.take().unwrap())?;
                out.push(json!("rolled back"));
            }
            "drop" => {
                drop(tx.take());
                out.push(json!("dropped"));
            }
            "trap" => panic!("trap requested inside a transaction"),
            other => return Err(Failure::Input(format!("unknown op {other}"))),
        }
    }
    Ok(Json::Array(out))
}

fn sql_of(input: &Json) -> &str {
    input["sql"].as_str().unwrap_or("")
}

fn params(input: &Json) -> Result<Vec<Value>, Failure> {
    input["params"]
        .as_array()
        .map(|a| a.iter().map(decode).collect())
        .unwrap_or_else(|| Ok(Vec::new()))
        .map_err(Failure::Input)
}

fn reply(status: StatusCode, doc: Json) -> Response<Body> {
    let mut r = Response::new(doc.to_string().into());
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

fn error_reply(e: Error) -> Response<Body> {
    let (status, doc) = match e {
        Error::Unavailable(m) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "kind": "unavailable", "message": m }),
        ),
        Error::Timeout(m) => (
            StatusCode::GATEWAY_TIMEOUT,
            json!({ "kind": "timeout", "message": m }),
        ),
        Error::Query(q) => (
            if q.code == 1062 {
                StatusCode::CONFLICT
            } else {
                StatusCode::BAD_REQUEST
            },
            json!({ "kind": "query", "code": q.code, "sqlstate": q.sqlstate, "message": q.message }),
        ),
        Error::BadParameter(m) => (
            StatusCode::BAD_REQUEST,
            json!({ "kind": "bad-parameter", "message": m }),
        ),
        Error::TooLarge(m) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({ "kind": "too-large", "message": m }),
        ),
    };
    reply(status, json!({ "error": doc }))
}

fn rows_json(rows: &RowSet) -> Json {
    json!({
        "columns": rows.columns.iter().map(column_json).collect::<Vec<_>>(),
        "rows": rows.rows.iter().map(|r| r.iter().map(encode).collect::<Vec<_>>()).collect::<Vec<_>>(),
    })
}

fn column_json(c: &Column) -> Json {
    json!({
        "name": c.name,
        "type": type_name(c.column_type),
        "unsigned": c.unsigned,
        "nullable": c.nullable,
        "decimals": c.decimals,
    })
}

fn type_name(t: ColumnType) -> &'static str {
    use ColumnType as C;
    match t {
        C::Tinyint => "tinyint",
        C::Smallint => "smallint",
        C::Mediumint => "mediumint",
        C::Int => "int",
        C::Bigint => "bigint",
        C::Float => "float",
        C::Double => "double",
        C::Decimal => "decimal",
        C::Date => "date",
        C::Time => "time",
        C::Datetime => "datetime",
        C::Timestamp => "timestamp",
        C::Year => "year",
        C::Char => "char",
        C::Varchar => "varchar",
        C::Text => "text",
        C::Binary => "binary",
        C::Varbinary => "varbinary",
        C::Blob => "blob",
        C::Enum => "enum",
        C::Set => "set",
        C::Bit => "bit",
        C::Json => "json",
        C::Geometry => "geometry",
        C::Null => "null",
        C::Other => "other",
    }
}

fn encode(v: &Value) -> Json {
    let (t, v) = match v {
        Value::Null => ("null", Json::Null),
        Value::Int(i) => ("int", json!(i)),
        Value::Uint(u) => ("uint", json!(u)),
        Value::Float(f) => ("float", json!(f)),
        Value::Double(d) => ("double", json!(d)),
        Value::Decimal(s) => ("decimal", json!(s)),
        Value::Text(s) => ("text", json!(s)),
        Value::Json(s) => ("json", json!(s)),
        Value::Bytes(b) => (
            "bytes",
            json!(b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
        ),
        Value::Date(d) => ("date", json!(date(d))),
        Value::Time(t) => (
            "time",
            json!(format!(
                "{}{}:{:02}:{:02}.{:06}",
                if t.negative { "-" } else { "" },
                t.hours,
                t.minutes,
                t.seconds,
                t.microseconds
            )),
        ),
        Value::Datetime(d) => ("datetime", json!(datetime(d))),
        Value::Timestamp(d) => ("timestamp", json!(datetime(d))),
        Value::Bit(b) => ("bit", json!(b)),
    };
    json!({ "t": t, "v": v })
}

fn date(d: &Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year, d.month, d.day)
}

fn datetime(d: &Datetime) -> String {
    format!(
        "{} {:02}:{:02}:{:02}.{:06}",
        date(&d.date),
        d.hour,
        d.minute,
        d.second,
        d.microsecond
    )
}

fn decode(j: &Json) -> Result<Value, String> {
    let t = j["t"].as_str().ok_or("value without `t`")?;
    let v = &j["v"];
    let s = || {
        v.as_str()
            .map(str::to_string)
            .ok_or(format!("{t} needs a string"))
    };
    Ok(match t {
        "null" => Value::Null,
        "int" => Value::Int(v.as_i64().ok_or("int needs an integer")?),
        "uint" => Value::Uint(v.as_u64().ok_or("uint needs an unsigned integer")?),
        "float" => Value::Float(v.as_f64().ok_or("float needs a number")? as f32),
        "double" => Value::Double(v.as_f64().ok_or("double needs a number")?),
        "decimal" => Value::Decimal(s()?),
        "text" => Value::Text(s()?),
        "json" => Value::Json(s()?),
        "bytes" => Value::Bytes(unhex(&s()?)?),
        "date" => Value::Date(parse_date(&s()?)?),
        "time" => Value::Time(parse_time(&s()?)?),
        "datetime" => Value::Datetime(parse_datetime(&s()?)?),
        "timestamp" => Value::Timestamp(parse_datetime(&s()?)?),
        "bit" => Value::Bit(v.as_u64().ok_or("bit needs an unsigned integer")?),
        other => return Err(format!("unknown value kind {other}")),
    })
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(s.get(i..i + 2).ok_or("odd hex")?, 16).map_err(|e| e.to_string())
        })
        .collect()
}

fn n<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("bad number {s}"))
}

fn parse_date(s: &str) -> Result<Date, String> {
    let p: Vec<&str> = s.split('-').collect();
    if p.len() != 3 {
        return Err(format!("bad date {s}"));
    }
    Ok(Date {
        year: n(p[0])?,
        month: n(p[1])?,
        day: n(p[2])?,
    })
}

fn clock(s: &str) -> Result<(u32, u8, u8, u32), String> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, "0"));
    let p: Vec<&str> = whole.split(':').collect();
    if p.len() != 3 {
        return Err(format!("bad time {s}"));
    }
    Ok((n(p[0])?, n(p[1])?, n(p[2])?, n(&format!("{frac:0<6}"))?))
}

fn parse_time(s: &str) -> Result<Time, String> {
    let (negative, rest) = s.strip_prefix('-').map(|r| (true, r)).unwrap_or((false, s));
    let (h, m, sec, us) = clock(rest)?;
    Ok(Time {
        negative,
        hours: h as u16,
        minutes: m,
        seconds: sec,
        microseconds: us,
    })
}

fn parse_datetime(s: &str) -> Result<Datetime, String> {
    let (d, t) = s.split_once(' ').ok_or(format!("bad datetime {s}"))?;
    let (h, m, sec, us) = clock(t)?;
    Ok(Datetime {
        date: parse_date(d)?,
        hour: h as u8,
        minute: m,
        second: sec,
        microsecond: us,
    })
}
