//! The database through the real stack: `burrow serve` with the dbprobe
//! guest, the in-process tunnel through a real sshd, and a real MariaDB.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use support::mariadb::{DB_PASSWORD, MariaDb};
use support::sshd::Sshd;
use support::{Burrow, BurrowBuilder, guest, request};

/// burrow serving the dbprobe guest, its database reached only through
/// `sshd`'s tunnel to `db_port`.
fn burrow_via(sshd: &Sshd, db_port: u16) -> BurrowBuilder {
    Burrow::builder()
        .route("/", &guest("dbprobe-guest"))
        .through(sshd, db_port)
}

fn call(server: &Burrow, path: &str, doc: Json) -> (u16, Json) {
    let r = request(
        server.addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        Some(doc.to_string().as_bytes()),
    );
    let body = if r.body.is_empty() {
        Json::Null
    } else {
        r.json()
    };
    (r.status, body)
}

fn query(server: &Burrow, sql: &str, params: Json) -> Json {
    let (status, body) = call(server, "/query", json!({ "sql": sql, "params": params }));
    assert_eq!(status, 200, "{sql}: {body}");
    body
}

fn execute(server: &Burrow, sql: &str, params: Json) -> Json {
    let (status, body) = call(server, "/execute", json!({ "sql": sql, "params": params }));
    assert_eq!(status, 200, "{sql}: {body}");
    body
}

fn v(t: &str, v: Json) -> Json {
    json!({ "t": t, "v": v })
}

/// Renders a guest value the way the `mariadb` CLI prints it.
fn as_cli(value: &Json, decimals: u64) -> String {
    let text = |v: &Json| {
        v.as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string())
    };
    let trim_fraction = |s: String| -> String {
        match s.split_once('.') {
            Some((whole, frac)) if decimals > 0 => {
                format!("{whole}.{}", &frac[..decimals as usize])
            }
            Some((whole, _)) => whole.to_string(),
            None => s,
        }
    };
    match value["t"].as_str().unwrap() {
        "null" => "NULL".into(),
        "bytes" => text(&value["v"]).to_uppercase(),
        "time" | "datetime" | "timestamp" => trim_fraction(text(&value["v"])),
        _ => text(&value["v"]),
    }
}

const TYPES_TABLE: &str = "CREATE TABLE app.types_rt (
    id INT PRIMARY KEY,
    ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, mi MEDIUMINT, i INT, iu INT UNSIGNED,
    bi BIGINT, biu BIGINT UNSIGNED, f FLOAT, d DOUBLE, dec1 DECIMAL(10,2), dec65 DECIMAL(65,30),
    c CHAR(10), vc VARCHAR(100), t TEXT, l1 VARCHAR(50) CHARACTER SET latin1,
    bin BINARY(4), vb VARBINARY(50), bl BLOB,
    dt DATE, dtm DATETIME, dtm6 DATETIME(6), ts TIMESTAMP(3) NULL, tm TIME, tm6 TIME(6), y YEAR,
    b1 BIT(1), b64 BIT(64), e ENUM('a','b','c'), st SET('x','y','z'), j JSON
) CHARACTER SET utf8mb4";

/// Columns as the CLI should print them (binary as HEX, bits as numbers).
const CLI_COLUMNS: &str = "ti, tiu, si, mi, i, iu, bi, biu, f, d, dec1, dec65, c, vc, t, l1, \
    HEX(bin), HEX(vb), HEX(bl), dt, dtm, dtm6, ts, tm, tm6, y, b1+0, b64+0, e, st, j";

#[test]
fn every_mysql_type_round_trips_exactly_and_matches_the_cli() {
    let db = MariaDb::shared();
    db.sql("DROP TABLE IF EXISTS app.types_rt");
    db.sql(TYPES_TABLE);
    db.sql(
        "INSERT INTO app.types_rt VALUES (1, -128, 255, -32768, -8388608, -2147483648, 4294967295,
         -9223372036854775808, 18446744073709551615, 1.5, 2.25, 1.1,
         '12345678901234567890123456789012345.123456789012345678901234567891',
         'abc', 'héllo 😀', 'long text 😀𝄞', 'café', 0x01020304, 0x00ff, 0xdeadbeef,
         '2024-02-29', '2024-02-29 23:59:58', '2024-02-29 23:59:58.123456', '2024-02-29 23:59:58.123',
         '-838:59:59', '838:59:59.999999', 2024, b'1', 0xFFFFFFFFFFFFFFFF, 'b', 'x,z', '{\"k\": [1, \"😀\"]}'),
         (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    );
    let sshd = Sshd::start();
    let server = burrow_via(&sshd, db.port).start();

    // Text protocol (no parameters) and binary protocol (a parameter).
    let text = query(
        &server,
        "SELECT * FROM app.types_rt WHERE id = 1",
        json!([]),
    );
    let binary = query(
        &server,
        "SELECT * FROM app.types_rt WHERE id = ?",
        json!([v("int", json!(1))]),
    );
    assert_eq!(
        text["rows"], binary["rows"],
        "both protocols give the same values"
    );
    let row = text["rows"][0].as_array().unwrap();
    let columns = text["columns"].as_array().unwrap();
    let col = |name: &str| columns.iter().position(|c| c["name"] == name).unwrap();
    let val = |name: &str| &row[col(name)];

    assert_eq!(val("biu"), &v("uint", json!(18446744073709551615u64)));
    assert_eq!(val("bi"), &v("int", json!(-9223372036854775808i64)));
    assert_eq!(val("dec1"), &v("decimal", json!("1.10")), "scale kept");
    assert_eq!(
        val("dec65"),
        &v(
            "decimal",
            json!("12345678901234567890123456789012345.123456789012345678901234567891")
        )
    );
    assert_eq!(val("vc"), &v("text", json!("héllo 😀")));
    assert_eq!(
        val("l1"),
        &v("text", json!("café")),
        "latin1 column read back as UTF-8"
    );
    assert_eq!(val("bl"), &v("bytes", json!("deadbeef")));
    assert_eq!(val("tm"), &v("time", json!("-838:59:59.000000")));
    assert_eq!(val("tm6"), &v("time", json!("838:59:59.999999")));
    assert_eq!(
        val("dtm6"),
        &v("datetime", json!("2024-02-29 23:59:58.123456"))
    );
    assert_eq!(
        val("ts"),
        &v("timestamp", json!("2024-02-29 23:59:58.123000"))
    );
    assert_eq!(val("y"), &v("int", json!(2024)));
    assert_eq!(val("b64"), &v("bit", json!(u64::MAX)));
    assert_eq!(val("st"), &v("text", json!("x,z")));
    assert_eq!(val("j")["t"], "text", "MariaDB stores JSON as LONGTEXT");
    let meta = &columns[col("dec1")];
    assert_eq!(
        (meta["type"].as_str(), meta["decimals"].as_u64()),
        (Some("decimal"), Some(2))
    );
    assert_eq!(columns[col("biu")]["unsigned"], true);
    assert_eq!(columns[col("id")]["nullable"], false);
    assert_eq!(columns[col("bl")]["type"], "blob");
    assert_eq!(columns[col("t")]["type"], "text");
    assert_eq!(columns[col("e")]["type"], "enum");

    // Every value as the CLI shows it.
    let cli = db.sql(&format!(
        "SELECT {CLI_COLUMNS} FROM app.types_rt WHERE id = 1"
    ));
    let cli: Vec<&str> = cli.trim_end_matches('\n').split('\t').collect();
    let names = [
        "ti", "tiu", "si", "mi", "i", "iu", "bi", "biu", "f", "d", "dec1", "dec65", "c", "vc", "t",
        "l1", "bin", "vb", "bl", "dt", "dtm", "dtm6", "ts", "tm", "tm6", "y", "b1", "b64", "e",
        "st", "j",
    ];
    for (name, shown) in names.iter().zip(&cli) {
        let decimals = columns[col(name)]["decimals"].as_u64().unwrap();
        assert_eq!(&as_cli(val(name), decimals), shown, "column {name}");
    }

    // NULLs in every column.
    let nulls = query(
        &server,
        "SELECT * FROM app.types_rt WHERE id = 3",
        json!([]),
    );
    assert!(
        nulls["rows"][0].as_array().unwrap()[1..]
            .iter()
            .all(|x| x["t"] == "null")
    );

    // The other direction: write row 1's values as parameters into row 2,
    // and the CLI shows row 2 exactly as row 1.
    let mut params = vec![v("int", json!(2))];
    params.extend(row[1..].iter().cloned());
    // The JSON column also accepts the `json` variant.
    params[col("j")] = v("json", val("j")["v"].clone());
    let placeholders = vec!["?"; params.len()].join(", ");
    execute(
        &server,
        &format!("INSERT INTO app.types_rt VALUES ({placeholders})"),
        Json::Array(params),
    );
    let row2 = db.sql(&format!(
        "SELECT {CLI_COLUMNS} FROM app.types_rt WHERE id = 2"
    ));
    assert_eq!(
        row2.trim_end_matches('\n').split('\t').collect::<Vec<_>>(),
        cli
    );
}

#[test]
fn zero_and_partial_dates_do_not_fail_the_row() {
    let db = MariaDb::shared();
    db.sql("DROP TABLE IF EXISTS app.zero_dates");
    db.sql("CREATE TABLE app.zero_dates (id INT PRIMARY KEY, d DATE, dt DATETIME)");
    db.sql("SET SESSION sql_mode = ''; INSERT INTO app.zero_dates VALUES (1, '0000-00-00', '0000-00-00 00:00:00'), (2, '2024-00-15', '2024-01-00 10:00:00')");
    let sshd = Sshd::start();
    let server = burrow_via(&sshd, db.port).start();
    for (sql, params) in [
        ("SELECT d, dt FROM app.zero_dates ORDER BY id", json!([])),
        (
            "SELECT d, dt FROM app.zero_dates WHERE id > ? ORDER BY id",
            json!([v("int", json!(0))]),
        ),
    ] {
        let rows = query(&server, sql, params)["rows"].clone();
        assert_eq!(rows[0][0], v("date", json!("0000-00-00")));
        assert_eq!(
            rows[0][1],
            v("datetime", json!("0000-00-00 00:00:00.000000"))
        );
        assert_eq!(rows[1][0], v("date", json!("2024-00-15")));
        assert_eq!(
            rows[1][1],
            v("datetime", json!("2024-01-00 10:00:00.000000"))
        );
    }
}

#[test]
fn transactions_commit_roll_back_and_survive_a_trapping_guest() {
    let db = MariaDb::shared();
    db.sql("DROP TABLE IF EXISTS app.tx_t");
    db.sql("CREATE TABLE app.tx_t (id INT PRIMARY KEY, label VARCHAR(20))");
    let sshd = Sshd::start();
    let server = burrow_via(&sshd, db.port).env("DB_POOL_MAX", "1").start();
    let insert = |id: i64, label: &str| json!({ "op": "execute", "sql": "INSERT INTO app.tx_t VALUES (?, ?)", "params": [v("int", json!(id)), v("text", json!(label))] });

    let (status, body) = call(
        &server,
        "/tx",
        json!({ "steps": [insert(1, "committed"), { "op": "commit" }] }),
    );
    assert_eq!(status, 200, "{body}");
    let (status, _) = call(
        &server,
        "/tx",
        json!({ "isolation": "serializable", "steps": [insert(2, "rolled back"), { "op": "rollback" }] }),
    );
    assert_eq!(status, 200);
    let (status, _) = call(
        &server,
        "/tx",
        json!({ "steps": [insert(3, "dropped"), { "op": "drop" }] }),
    );
    assert_eq!(status, 200);
    let (status, _) = call(
        &server,
        "/tx",
        json!({ "steps": [insert(4, "trapped"), { "op": "trap" }] }),
    );
    assert_eq!(status, 500, "the guest trapped mid-transaction");

    assert_eq!(
        db.sql("SELECT id, label FROM app.tx_t ORDER BY id"),
        "1\tcommitted\n"
    );
    // With a pool of one, the same connection serves on, in a clean state.
    let rows = query(
        &server,
        "SELECT COUNT(*), @@in_transaction FROM app.tx_t",
        json!([]),
    );
    assert_eq!(rows["rows"][0][0], v("int", json!(1)));
    assert_eq!(
        rows["rows"][0][1]["v"],
        json!(0),
        "no transaction left open"
    );
    // A transaction begun after a plain query in the same request, on a
    // pool of one, uses the request's connection instead of waiting.
    let (status, body) = call(
        &server,
        "/tx",
        json!({ "before": "SELECT 1", "steps": [{ "op": "query", "sql": "SELECT 1" }, { "op": "rollback" }] }),
    );
    assert_eq!(status, 200, "{body}");
    // Uncommitted work is invisible to others while it is open.
    let (status, body) = call(
        &server,
        "/tx",
        json!({ "steps": [insert(5, "x"), { "op": "query", "sql": "SELECT COUNT(*) FROM app.tx_t" }, { "op": "rollback" }] }),
    );
    assert_eq!(status, 200);
    assert_eq!(
        body[1]["rows"][0][0],
        v("int", json!(2)),
        "the transaction sees its own row"
    );
}

#[test]
fn errors_carry_mysql_codes_and_bad_parameters_are_refused() {
    let db = MariaDb::shared();
    db.sql("DROP TABLE IF EXISTS app.err_t");
    db.sql("CREATE TABLE app.err_t (id INT PRIMARY KEY, d DATE)");
    let sshd = Sshd::start();
    let server = burrow_via(&sshd, db.port).start();
    let affected = execute(
        &server,
        "INSERT INTO app.err_t (id) VALUES (?), (?)",
        json!([v("int", json!(1)), v("int", json!(2))]),
    );
    assert_eq!(affected["rows_affected"], 2);

    let (status, body) = call(
        &server,
        "/execute",
        json!({ "sql": "INSERT INTO app.err_t (id) VALUES (?)", "params": [v("int", json!(1))] }),
    );
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], 1062);
    assert_eq!(body["error"]["sqlstate"], "23000");

    let (status, body) = call(
        &server,
        "/query",
        json!({ "sql": "SELECT * FROM app.nope", "params": [] }),
    );
    assert_eq!((status, body["error"]["code"].as_u64()), (400, Some(1146)));

    let (status, body) = call(
        &server,
        "/execute",
        json!({ "sql": "UPDATE app.err_t SET d = ? WHERE id = 1", "params": [v("date", json!("2024-13-01"))] }),
    );
    assert_eq!(status, 400);
    assert_eq!(body["error"]["kind"], "bad-parameter");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2024-13-01"),
        "{body}"
    );

    let (status, body) = call(
        &server,
        "/query",
        json!({ "sql": "SELECT ?, ?", "params": [v("int", json!(1))] }),
    );
    assert_eq!(
        (status, body["error"]["kind"].as_str()),
        (400, Some("bad-parameter")),
        "{body}"
    );

    let (status, body) = call(
        &server,
        "/execute",
        json!({ "sql": "UPDATE app.err_t SET d = ? WHERE id = 1", "params": [v("decimal", json!("1; DROP TABLE app.err_t"))] }),
    );
    assert_eq!(
        (status, body["error"]["kind"].as_str()),
        (400, Some("bad-parameter"))
    );

    let updated = execute(
        &server,
        "UPDATE app.err_t SET d = d WHERE id = 1",
        json!([]),
    );
    assert_eq!(
        updated["rows_affected"], 0,
        "an UPDATE that changes nothing counts 0"
    );
    let auto = execute(
        &server,
        "CREATE TEMPORARY TABLE app.auto_t (id BIGINT AUTO_INCREMENT PRIMARY KEY, x INT)",
        json!([]),
    );
    assert_eq!(auto["last_insert_id"], Json::Null);
}

#[test]
fn an_injection_attempt_stays_data() {
    let db = MariaDb::shared();
    db.sql("DROP TABLE IF EXISTS app.inj");
    db.sql("CREATE TABLE app.inj (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(200))");
    let sshd = Sshd::start();
    let server = burrow_via(&sshd, db.port).start();
    let evil = "x'); DROP TABLE app.inj; -- \\' \" ` ?";
    let result = execute(
        &server,
        "INSERT INTO app.inj (name) VALUES (?)",
        json!([v("text", json!(evil))]),
    );
    assert_eq!(result["last_insert_id"], 1);
    let rows = query(
        &server,
        "SELECT name FROM app.inj WHERE name = ?",
        json!([v("text", json!(evil))]),
    );
    assert_eq!(rows["rows"][0][0], v("text", json!(evil)));
    assert_eq!(db.sql("SELECT COUNT(*) FROM app.inj"), "1\n");
}

#[test]
fn results_over_the_limit_are_too_large_not_out_of_memory() {
    let db = MariaDb::shared();
    let sshd = Sshd::start();
    let server = burrow_via(&sshd, db.port).start();
    let (status, body) = call(
        &server,
        "/query",
        json!({ "sql": "SELECT seq FROM seq_1_to_20000", "params": [] }),
    );
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["kind"], "too-large");
    // The connection was discarded, not reused mid-result.
    assert_eq!(
        query(&server, "SELECT 7", json!([]))["rows"][0][0],
        v("int", json!(7))
    );
}

#[test]
fn clients_hanging_up_mid_query_never_leak_results_into_later_requests() {
    let db = MariaDb::shared();
    let sshd = Sshd::start();
    // Each abandoned query costs its connection (killed and discarded): allow
    // a loaded machine time to open the next one through the bastion.
    let server = burrow_via(&sshd, db.port)
        .env("DB_POOL_MAX", "1")
        .env("DB_ACQUIRE_TIMEOUT", "15s")
        .start();
    for i in 0..200i64 {
        let body =
            json!({ "sql": "SELECT SLEEP(0.02), ?", "params": [v("int", json!(i))] }).to_string();
        let wire = format!(
            "POST /query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
        std::io::Write::write_all(&mut stream, wire.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis((i % 5) as u64 * 3));
        drop(stream);
    }
    for i in 0..20i64 {
        let rows = query(&server, "SELECT ?", json!([v("int", json!(1000 + i))]));
        assert_eq!(rows["rows"], json!([[v("int", json!(1000 + i))]]));
    }
}

#[test]
fn killed_pool_connections_are_replaced() {
    let db = MariaDb::shared();
    let sshd = Sshd::start();
    let server = burrow_via(&sshd, db.port).start();
    query(&server, "SELECT 1", json!([]));
    let ids = db.sql("SELECT id FROM information_schema.processlist WHERE user = 'app'");
    assert!(!ids.trim().is_empty());
    for id in ids.split_whitespace() {
        let _ = db.try_sql(&format!("KILL {id}"));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        query(&server, "SELECT 2", json!([]))["rows"][0][0],
        v("int", json!(2))
    );
}

#[test]
fn idle_connections_closed_by_wait_timeout_are_replaced() {
    let db = MariaDb::shared();
    let sshd = Sshd::start();
    let server = burrow_via(&sshd, db.port).start();
    query(&server, "SELECT 1", json!([]));
    db.sql("SET GLOBAL wait_timeout = 2");
    // New connections get wait_timeout=2: make the pool open one, then idle.
    let ids = db.sql("SELECT id FROM information_schema.processlist WHERE user = 'app'");
    for id in ids.split_whitespace() {
        let _ = db.try_sql(&format!("KILL {id}"));
    }
    std::thread::sleep(Duration::from_millis(300));
    query(&server, "SELECT 1", json!([]));
    std::thread::sleep(Duration::from_secs(4));
    db.sql("SET GLOBAL wait_timeout = 28800");
    assert_eq!(
        query(&server, "SELECT 3", json!([]))["rows"][0][0],
        v("int", json!(3))
    );
}

#[test]
fn a_restarted_database_is_reconnected_to() {
    let mut db = MariaDb::start();
    let sshd = Sshd::start();
    let server = burrow_via(&sshd, db.port).start();
    query(&server, "SELECT 1", json!([]));
    db.kill();
    let (status, body) = call(&server, "/ping", Json::Null);
    assert_eq!(status, 503, "{body}");
    db.spawn();
    let started = Instant::now();
    loop {
        let (status, _) = call(&server, "/ping", Json::Null);
        if status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no recovery after restart"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_stopped_bastion_fails_requests_fast_and_they_succeed_when_it_returns() {
    let db = MariaDb::shared();
    let mut sshd = Sshd::start();
    let server = burrow_via(&sshd, db.port).start();
    assert_eq!(call(&server, "/ping", Json::Null).0, 200);

    sshd.kill();
    assert!(server.wait_for_log("tunnel down", Duration::from_secs(5)));
    // The only way to the database is the tunnel: with it down, requests
    // fail fast with 503 instead of hanging.
    for _ in 0..3 {
        let started = Instant::now();
        let (status, body) = call(&server, "/ping", Json::Null);
        assert_eq!(status, 503, "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }

    sshd.spawn();
    let started = Instant::now();
    while call(&server, "/ping", Json::Null).0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no recovery:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        !server.log().contains(DB_PASSWORD),
        "the password must never be logged"
    );
}

#[test]
fn the_reference_apps_health_route_makes_a_real_round_trip() {
    let db = MariaDb::shared();
    let sshd = Sshd::start();
    let server = burrow_via(&sshd, db.port)
        .route("/", &guest("burrow-guest"))
        .start();
    let r = server.get("/api/health/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({ "status": "ok", "database": "ok" }));

    let no_db = Burrow::builder().route("/", &guest("burrow-guest")).start();
    let r = no_db.get("/api/health/");
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["database"], "unavailable");
}

#[test]
fn session_state_never_leaks_into_the_next_request() {
    let db = MariaDb::shared();
    db.sql("DROP TABLE IF EXISTS app.leak_t");
    db.sql("CREATE TABLE app.leak_t (id INT PRIMARY KEY)");
    let sshd = Sshd::start();
    let server = burrow_via(&sshd, db.port).env("DB_POOL_MAX", "1").start();
    execute(&server, "SET @leak = 42", json!([]));
    let rows = query(
        &server,
        "SELECT @leak AS v, @@in_transaction AS t",
        json!([]),
    );
    assert_eq!(
        rows["rows"][0][0]["t"], "null",
        "a user variable must not survive its request"
    );
    // A transaction opened by hand, outside the transaction API, and left open.
    execute(&server, "START TRANSACTION", json!([]));
    let rows = query(&server, "SELECT @@in_transaction", json!([]));
    assert_eq!(rows["rows"][0][0]["v"], json!(0));
    // Plain statements keep the connection (and its speed).
    for _ in 0..5 {
        execute(
            &server,
            "INSERT INTO app.leak_t SELECT COALESCE(MAX(id), 0) + 1 FROM app.leak_t",
            json!([]),
        );
    }
    assert_eq!(db.sql("SELECT COUNT(*) FROM app.leak_t"), "5\n");
}
