//! burrow runs a backend whose database sits behind an SSH bastion: one
//! native process owns the HTTP listener and runs the application's request
//! handlers as sandboxed WebAssembly components (`wasi:http` guests), which
//! reach the database only through the `burrow:db` import (`wit/db.wit`).
//!
//! # Layout
//!
//! One module, one job; each knows only the one below it.
//!
//! - [`config`]: `burrow.toml` + environment + flags → one validated [`config::Config`].
//! - [`serve`]: start-up in order (config → runtime → components → listener)
//!   and shutdown on SIGTERM/SIGINT.
//! - [`server`]: the HTTP listener, limits, error responses, access log.
//! - [`registry`]: the route table, longest prefix wins.
//! - [`runtime`]: wasmtime engine, linker, component cache, one sandboxed
//!   call per request.
//! - [`db`]: the `burrow:db/sql` import guests call.
//! - [`tunnel`]: the SSH tunnel to the bastion (`ssh -N -L` in-process).
//! - [`migrate`]: `burrow migrate`, versioned SQL files applied once.

pub mod config;
pub mod db;
pub mod migrate;
pub mod registry;
pub mod runtime;
pub mod serve;
pub mod server;
pub mod tunnel;
