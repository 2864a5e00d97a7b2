//! Django-compatible credentials: password hashes in Django's
//! `pbkdf2_sha256$<iterations>$<salt>$<base64 hash>` format, and tokens in
//! djangorestframework-simplejwt's format (HS256 with the secret key).
//! Hashes and tokens made here verify in Django, and the reverse.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use burrow_sdk::settings;
use burrow_sdk::web::{ApiError, Request};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// Django 6.0's default PBKDF2 iteration count for new hashes; the `[app]`
/// setting `password_iterations` overrides it.
pub const DJANGO_PBKDF2_ITERATIONS: u32 = 1_200_000;
/// simplejwt's default lifetimes.
pub const ACCESS_LIFETIME_SECS: u64 = 5 * 60;
pub const REFRESH_LIFETIME_SECS: u64 = 24 * 60 * 60;
/// Django's salt alphabet and length (128 bits of entropy).
const SALT_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const SALT_LEN: usize = 22;

/// A new hash of `password` in Django's format.
pub fn make_password(password: &str) -> String {
    let iterations = settings::get("password_iterations")
        .and_then(|s| s.parse().ok())
        .filter(|n: &u32| *n > 0)
        .unwrap_or(DJANGO_PBKDF2_ITERATIONS);
    let salt: String = random_bytes(SALT_LEN)
        .iter()
        .map(|b| SALT_CHARS[usize::from(*b) % SALT_CHARS.len()] as char)
        .collect();
    hash_with(password, &salt, iterations)
}

/// The Django-format hash of `password` with a given salt and count.
pub fn hash_with(password: &str, salt: &str, iterations: u32) -> String {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt.as_bytes(), iterations, &mut out);
    format!("pbkdf2_sha256${iterations}${salt}${}", STANDARD.encode(out))
}

/// Whether `password` matches a Django `pbkdf2_sha256` hash (any count).
pub fn check_password(password: &str, encoded: &str) -> bool {
    let mut parts = encoded.splitn(4, '$');
    let (Some("pbkdf2_sha256"), Some(iterations), Some(salt), Some(hash)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Ok(iterations) = iterations.parse::<u32>() else {
        return false;
    };
    if iterations == 0 {
        return false;
    }
    let expected = hash_with(password, salt, iterations);
    let given = format!("pbkdf2_sha256${iterations}${salt}${hash}");
    constant_time_eq(expected.as_bytes(), given.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Random bytes from the host (`wasi:random`).
pub fn random_bytes(n: usize) -> Vec<u8> {
    wasip2::random::random::get_random_bytes(n as u64)
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn secret() -> Result<String, ApiError> {
    settings::secret_key().ok_or_else(|| {
        ApiError::internal("DJANGO_SECRET_KEY is not set: tokens cannot be signed or checked")
    })
}

/// A simplejwt token of `kind` ("access" or "refresh") for `user_id`.
pub fn issue(kind: &str, user_id: i64, now: u64) -> Result<String, ApiError> {
    let lifetime = if kind == "access" {
        ACCESS_LIFETIME_SECS
    } else {
        REFRESH_LIFETIME_SECS
    };
    let jti: String = random_bytes(16)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let claims = json!({
        "token_type": kind,
        "exp": now + lifetime,
        "iat": now,
        "jti": jti,
        "user_id": user_id.to_string(),
    });
    sign(&claims, &secret()?)
}

/// Signs `claims` as an HS256 JWT, as PyJWT writes them.
pub fn sign(claims: &Value, key: &str) -> Result<String, ApiError> {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let signature = URL_SAFE_NO_PAD.encode(mac(key, &signing_input));
    Ok(format!("{signing_input}.{signature}"))
}

fn mac(key: &str, input: &str) -> Vec<u8> {
    let mut m =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    m.update(input.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// Why a token was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    BadSignature,
    Expired,
    WrongType,
}

/// The claims of a valid, unexpired token of `kind`.
pub fn verify(token: &str, kind: &str, key: &str, now: u64) -> Result<Value, TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let signing_input = format!("{header}.{payload}");
    let header: Value = URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or(TokenError::Malformed)?;
    if header["alg"] != "HS256" {
        return Err(TokenError::Malformed);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Malformed)?;
    let expected = mac(key, &signing_input);
    if !constant_time_eq(&expected, &signature) {
        return Err(TokenError::BadSignature);
    }
    let claims: Value = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|p| serde_json::from_slice(&p).ok())
        .ok_or(TokenError::Malformed)?;
    match claims["exp"].as_u64() {
        Some(exp) if exp > now => {}
        _ => return Err(TokenError::Expired),
    }
    if claims["token_type"] != kind {
        return Err(TokenError::WrongType);
    }
    Ok(claims)
}

/// `user_id` as simplejwt writes it: a string in newer versions, an
/// integer in older ones.
pub fn user_id(claims: &Value) -> Option<i64> {
    match &claims["user_id"] {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// The user a request's `Authorization: Bearer <access token>` names.
pub fn authenticate(req: &Request) -> Result<i64, ApiError> {
    let Some(header) = req.header("authorization") else {
        return Err(ApiError::unauthorized(
            "Authentication credentials were not provided.",
        ));
    };
    let mut words = header.split_whitespace();
    let (Some(scheme), Some(token), None) = (words.next(), words.next(), words.next()) else {
        return Err(ApiError::unauthorized(
            "Authentication credentials were not provided.",
        ));
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::unauthorized(
            "Authentication credentials were not provided.",
        ));
    }
    let claims = verify(token, "access", &secret()?, now_secs()).map_err(|e| {
        let message = match e {
            TokenError::WrongType => "Token has wrong type",
            _ => "Token is invalid or expired",
        };
        ApiError::new(
            401,
            json!({
                "detail": "Given token not valid for any token type",
                "code": "token_not_valid",
                "messages": [{ "token_class": "AccessToken", "token_type": "access", "message": message }],
            }),
        )
    })?;
    user_id(&claims).ok_or_else(|| {
        ApiError::unauthorized("Token contained no recognizable user identification")
    })
}
