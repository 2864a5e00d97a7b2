//! Settings the host passes to guests through `wasi:config/store`: `debug`
//! (from `DJANGO_DEBUG`), `secret_key` (from `DJANGO_SECRET_KEY`) and every
//! key of burrow.toml's `[app]` table. Guests see no environment variables.

use crate::bindings::wasi::config::store;

/// The value of setting `key`, if the host has one.
pub fn get(key: &str) -> Option<String> {
    store::get(key).ok().flatten()
}

/// True when the host runs in debug mode (`DJANGO_DEBUG=true`): error
/// responses may then carry details.
pub fn debug() -> bool {
    get("debug").as_deref() == Some("true")
}

/// The application's signing key, if one is configured.
pub fn secret_key() -> Option<String> {
    get("secret_key").filter(|k| !k.is_empty())
}
