//! The reference application through the real host, tunnel, sshd and
//! MariaDB, on tables made by `migrations/`. Django-side vectors (PBKDF2
//! hashes, simplejwt tokens) are computed with Python's standard library,
//! which is what Django and PyJWT use underneath.

mod support;

use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value, json};
use support::mariadb::{DB_NAME, MariaDb};
use support::sshd::Sshd;
use support::{Burrow, config_file, guest, request};

const SECRET: &str = "django-insecure-test-key-3b9f0c1e";

/// The shared database with the repository's migrations applied once.
fn database() -> &'static MariaDb {
    static READY: OnceLock<()> = OnceLock::new();
    let db = MariaDb::shared();
    READY.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files {
            db.sql(&format!(
                "USE {DB_NAME}; {}",
                std::fs::read_to_string(f).unwrap()
            ));
        }
    });
    db
}

struct App {
    server: Burrow,
    _sshd: Sshd,
    _cfg: tempfile::TempDir,
}

/// The reference app; `iterations` overrides the PBKDF2 count for speed.
fn app(iterations: Option<u32>) -> App {
    let db = database();
    let sshd = Sshd::start();
    let mut toml = format!(
        "[[route]]\nprefix = \"/\"\ncomponent = \"{}\"\n[app]\npage_size = 10\n",
        guest("burrow-guest").display()
    );
    if let Some(n) = iterations {
        toml.push_str(&format!("password_iterations = {n}\n"));
    }
    let (dir, cfg) = config_file(&toml);
    let server = Burrow::builder()
        .arg("--config")
        .arg(cfg.display().to_string())
        .through(&sshd, db.port)
        .env("DJANGO_SECRET_KEY", SECRET)
        .start();
    App {
        server,
        _sshd: sshd,
        _cfg: dir,
    }
}

impl App {
    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        let body = body.map(|b| b.to_string());
        let r = request(
            self.server.addr,
            method,
            path,
            &headers,
            body.as_deref().map(str::as_bytes),
        );
        let doc = if r.body.is_empty() {
            Value::Null
        } else {
            r.json()
        };
        (r.status, doc)
    }

    fn register(&self, username: &str, password: &str) -> Value {
        let (status, body) = self.call("POST", "/api/users/", None, Some(json!({ "username": username, "password": password, "email": format!("{username}@example.edu") })));
        assert_eq!(status, 201, "{body}");
        body
    }

    fn login(&self, username: &str, password: &str) -> (String, String) {
        let (status, body) = self.call(
            "POST",
            "/api/token/",
            None,
            Some(json!({ "username": username, "password": password })),
        );
        assert_eq!(status, 200, "{body}");
        (
            body["access"].as_str().unwrap().into(),
            body["refresh"].as_str().unwrap().into(),
        )
    }
}

fn python(code: &str) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(code)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A token as simplejwt (PyJWT, HS256) makes it, with `claims` JSON.
fn pyjwt(claims: &str) -> String {
    python(&format!(
        r#"import base64, hashlib, hmac, json
b = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode()
h = b(json.dumps({{"alg": "HS256", "typ": "JWT"}}, separators=(",", ":")).encode())
p = b(json.dumps({claims}, separators=(",", ":")).encode())
s = b(hmac.new({SECRET:?}.encode(), f"{{h}}.{{p}}".encode(), hashlib.sha256).digest())
print(f"{{h}}.{{p}}.{{s}}")"#
    ))
}

#[test]
fn register_log_in_refresh_and_reject_bad_tokens() {
    let app = app(Some(1000));
    let user = app.register("alice", "correct horse battery");
    assert_eq!(user["username"], "alice");
    let (status, body) = app.call(
        "POST",
        "/api/users/",
        None,
        Some(json!({ "username": "alice", "password": "another password" })),
    );
    assert_eq!(
        (status, body),
        (
            400,
            json!({ "username": ["A user with that username already exists."] })
        )
    );
    let (status, body) = app.call(
        "POST",
        "/api/users/",
        None,
        Some(json!({ "password": "x" })),
    );
    assert_eq!(status, 400);
    assert_eq!(body["username"], json!(["This field is required."]));
    assert!(body["password"][0].as_str().unwrap().contains("too short"));

    let (status, body) = app.call(
        "POST",
        "/api/token/",
        None,
        Some(json!({ "username": "alice", "password": "wrong" })),
    );
    assert_eq!(
        (status, body),
        (
            401,
            json!({ "detail": "No active account found with the given credentials" })
        )
    );
    let (access, refresh) = app.login("alice", "correct horse battery");

    let (status, me) = app.call("GET", "/api/users/me/", Some(&access), None);
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        (me["username"].as_str(), me["id"].clone()),
        (Some("alice"), user["id"].clone())
    );
    let (status, body) = app.call("GET", "/api/users/me/", None, None);
    assert_eq!(
        (status, body),
        (
            401,
            json!({ "detail": "Authentication credentials were not provided." })
        )
    );

    let (status, body) = app.call(
        "POST",
        "/api/token/refresh/",
        None,
        Some(json!({ "refresh": refresh })),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        app.call("GET", "/api/users/me/", body["access"].as_str(), None)
            .0,
        200
    );

    // Wrong type, bad signature, expired.
    let (status, body) = app.call("GET", "/api/users/me/", Some(&refresh), None);
    assert_eq!(status, 401);
    assert_eq!(body["code"], "token_not_valid");
    let mut tampered = access.clone();
    tampered.pop();
    tampered.push(if access.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(
        app.call("GET", "/api/users/me/", Some(&tampered), None).0,
        401
    );
    let id = user["id"].as_i64().unwrap();
    let expired = pyjwt(&format!(
        r#"{{"token_type": "access", "exp": 1000, "iat": 900, "jti": "x", "user_id": "{id}"}}"#
    ));
    let (status, body) = app.call("GET", "/api/users/me/", Some(&expired), None);
    assert_eq!(status, 401);
    assert_eq!(
        body["messages"][0]["message"],
        "Token is invalid or expired"
    );
    let (status, _) = app.call(
        "POST",
        "/api/token/refresh/",
        None,
        Some(json!({ "refresh": access })),
    );
    assert_eq!(status, 401, "an access token is not a refresh token");
}

#[test]
fn tokens_interoperate_with_simplejwt_both_ways() {
    let app = app(Some(1000));
    let id = app.register("bob", "bob's password")["id"]
        .as_i64()
        .unwrap();
    // simplejwt → burrow: user_id as a string (new) and as an integer (old).
    for user_id in [format!("\"{id}\""), id.to_string()] {
        let token = pyjwt(&format!(
            r#"{{"token_type": "access", "exp": 4102444800, "iat": 1700000000, "jti": "0123456789abcdef0123456789abcdef", "user_id": {user_id}}}"#
        ));
        let (status, me) = app.call("GET", "/api/users/me/", Some(&token), None);
        assert_eq!(
            (status, me["username"].as_str()),
            (200, Some("bob")),
            "user_id {user_id}"
        );
    }
    // burrow → simplejwt: the signature checks out with the secret, the
    // claims are simplejwt's.
    let (access, refresh) = app.login("bob", "bob's password");
    for (token, kind, lifetime) in [(&access, "access", 300), (&refresh, "refresh", 86400)] {
        let checked = python(&format!(
            r#"import base64, hashlib, hmac, json
t = {token:?}
h, p, s = t.split(".")
pad = lambda x: x + "=" * (-len(x) % 4)
sig = base64.urlsafe_b64encode(hmac.new({SECRET:?}.encode(), f"{{h}}.{{p}}".encode(), hashlib.sha256).digest()).rstrip(b"=").decode()
assert sig == s, "signature"
assert json.loads(base64.urlsafe_b64decode(pad(h))) == {{"alg": "HS256", "typ": "JWT"}}
print(json.dumps(json.loads(base64.urlsafe_b64decode(pad(p)))))"#
        ));
        let claims: Value = serde_json::from_str(&checked).unwrap();
        assert_eq!(claims["token_type"], kind);
        assert_eq!(claims["user_id"], json!(id.to_string()));
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            lifetime
        );
        assert_eq!(claims["jti"].as_str().unwrap().len(), 32);
    }
}

#[test]
fn password_hashes_interoperate_with_django_both_ways() {
    let db = database();
    // Django → burrow: a row with a hash made the way Django makes it
    // (hashlib.pbkdf2_hmac, base64), at an older iteration count.
    let hash = python(
        r#"import base64, hashlib
print("pbkdf2_sha256$260000$djangosalt123$" + base64.b64encode(hashlib.pbkdf2_hmac("sha256", b"from django", b"djangosalt123", 260000)).decode())"#,
    );
    db.sql(&format!(
        "INSERT INTO app.auth_user (password, is_superuser, username, first_name, last_name, email, is_staff, is_active, date_joined) \
         VALUES ('{hash}', 0, 'carol', '', '', 'carol@example.edu', 0, 1, NOW(6))"
    ));
    let app = app(None);
    let (status, _) = app.call(
        "POST",
        "/api/token/",
        None,
        Some(json!({ "username": "carol", "password": "from django" })),
    );
    assert_eq!(status, 200);
    let (status, _) = app.call(
        "POST",
        "/api/token/",
        None,
        Some(json!({ "username": "carol", "password": "from Django" })),
    );
    assert_eq!(status, 401);

    // burrow → Django: a new hash uses Django's current default count and
    // verifies with Django's algorithm.
    app.register("dave", "made by burrow");
    let stored = db.sql("SELECT password FROM app.auth_user WHERE username = 'dave'");
    let stored = stored.trim();
    assert!(stored.starts_with("pbkdf2_sha256$1200000$"), "{stored}");
    let ok = python(&format!(
        r#"import base64, hashlib
alg, n, salt, h = {stored:?}.split("$")
print(base64.b64encode(hashlib.pbkdf2_hmac("sha256", b"made by burrow", salt.encode(), int(n))).decode() == h and len(salt) == 22)"#
    ));
    assert_eq!(ok, "True");
}

#[test]
fn items_crud_with_pagination_ownership_validation_unicode_and_exact_decimals() {
    let db = database();
    let app = app(Some(1000));
    app.register("erin", "erin's password");
    app.register("frank", "frank's password");
    let (erin, _) = app.login("erin", "erin's password");
    let (frank, _) = app.login("frank", "frank's password");

    let (status, item) = app.call(
        "POST",
        "/api/items/",
        Some(&erin),
        Some(json!({ "name": "Füße 😀 𝄞", "description": "long ✓", "price": "12.5", "quantity": 3, "tags": ["a", "😀"], "due": "2024-02-29" })),
    );
    assert_eq!(status, 201, "{item}");
    assert_eq!(item["price"], "12.50", "decimals as DRF renders them");
    assert_eq!(item["name"], "Füße 😀 𝄞");
    assert_eq!(item["tags"], json!(["a", "😀"]));
    assert_eq!(item["due"], "2024-02-29");
    let stamp = item["created_at"].as_str().unwrap();
    assert!(
        stamp.ends_with('Z') && stamp.len() >= 20 && &stamp[10..11] == "T",
        "{stamp}"
    );
    let id = item["id"].as_i64().unwrap();
    assert_eq!(
        db.sql(&format!(
            "SELECT name, price FROM app.api_item WHERE id = {id}"
        )),
        "Füße 😀 𝄞\t12.50\n"
    );

    let path = format!("/api/items/{id}/");
    assert_eq!(
        app.call("GET", &path, Some(&erin), None).1["description"],
        "long ✓"
    );
    let (status, body) = app.call("GET", &path, Some(&frank), None);
    assert_eq!(
        (status, body),
        (404, json!({ "detail": "Not found." })),
        "another user's item"
    );
    assert_eq!(app.call("GET", &path, None, None).0, 401);

    let (status, patched) = app.call(
        "PATCH",
        &path,
        Some(&erin),
        Some(json!({ "price": "7.05", "due": null })),
    );
    assert_eq!(status, 200, "{patched}");
    assert_eq!(
        (
            patched["price"].as_str(),
            patched["name"].as_str(),
            patched["due"].clone()
        ),
        (Some("7.05"), Some("Füße 😀 𝄞"), Value::Null)
    );
    let (status, body) = app.call(
        "PUT",
        &path,
        Some(&erin),
        Some(json!({ "price": "1.00", "quantity": 1 })),
    );
    assert_eq!(
        (status, body),
        (400, json!({ "name": ["This field is required."] }))
    );
    let (status, body) = app.call(
        "POST",
        "/api/items/",
        Some(&erin),
        Some(json!({ "name": "", "price": "1.234", "quantity": -1, "due": "29/02/2024" })),
    );
    assert_eq!(status, 400);
    assert_eq!(body["name"], json!(["This field may not be blank."]));
    assert_eq!(
        body["price"],
        json!(["Ensure that there are no more than 2 decimal places."])
    );
    assert_eq!(
        body["quantity"],
        json!(["Ensure this value is greater than or equal to 0."])
    );
    assert!(
        body["due"][0]
            .as_str()
            .unwrap()
            .starts_with("Date has wrong format")
    );

    // 23 items in all: pages of 10 with absolute links.
    for n in 0..22 {
        let (status, _) = app.call(
            "POST",
            "/api/items/",
            Some(&erin),
            Some(json!({ "name": format!("item {n}"), "price": "0.99", "quantity": n })),
        );
        assert_eq!(status, 201);
    }
    let (status, page1) = app.call("GET", "/api/items/", Some(&erin), None);
    assert_eq!(status, 200);
    assert_eq!(page1["count"], 23);
    assert_eq!(page1["results"].as_array().unwrap().len(), 10);
    let host = app.server.addr.to_string();
    assert_eq!(
        page1["next"],
        json!(format!("http://{host}/api/items/?page=2"))
    );
    assert_eq!(page1["previous"], Value::Null);
    let (_, page3) = app.call("GET", "/api/items/?page=3", Some(&erin), None);
    assert_eq!(page3["results"].as_array().unwrap().len(), 3);
    assert_eq!(page3["next"], Value::Null);
    assert_eq!(
        page3["previous"],
        json!(format!("http://{host}/api/items/?page=2"))
    );
    let (status, body) = app.call("GET", "/api/items/?page=4", Some(&erin), None);
    assert_eq!((status, body), (404, json!({ "detail": "Invalid page." })));
    assert_eq!(
        app.call("GET", "/api/items/", Some(&frank), None).1["count"],
        0
    );

    let (status, _) = app.call("DELETE", &path, Some(&frank), None);
    assert_eq!(status, 404, "only the owner deletes");
    assert_eq!(app.call("DELETE", &path, Some(&erin), None).0, 204);
    assert_eq!(app.call("GET", &path, Some(&erin), None).0, 404);

    // Django-style trailing slashes and methods.
    let r = request(app.server.addr, "GET", "/api/items", &[], None);
    assert_eq!((r.status, r.header("location")), (301, Some("/api/items/")));
    let r = request(app.server.addr, "PATCH", "/api/items/", &[], None);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, POST, HEAD, OPTIONS"));
}
