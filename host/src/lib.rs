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
//! - [`serve`]: start-up in order (admin → tunnel → pool → runtime →
//!   components → listener), SIGHUP, and shutdown on SIGTERM/SIGINT.
//! - [`server`]: the HTTP listener, limits, error responses, access log.
//! - [`registry`]: the route table, longest prefix wins, and hot swaps of
//!   each route's component version.
//! - [`watch`]: notices changed component files and asks for a swap.
//! - [`admin`]: the operator's listener: health, readiness, metrics,
//!   routes, reload, upload, rollback.
//! - [`metrics`]: request counters and the Prometheus text format.
//! - [`heap`]: gives freed heap pages back to the kernel when RSS has grown.
//! - [`runtime`]: wasmtime engine, linker, component cache, one sandboxed
//!   call per request.
//! - [`db`]: the `burrow:db/sql` import guests call.
//! - [`tunnel`]: the SSH tunnel to the bastion (`ssh -N -L` in-process).
//! - [`migrate`]: `burrow migrate`, versioned SQL files applied once.
//! - [`check`]: `burrow check`, every start-up check as a checklist.
//! - [`fuzzing`]: the bodies of the fuzz targets in `fuzz/`, shared with
//!   the regression tests.

pub mod admin;
pub mod check;
pub mod config;
pub mod db;
pub mod fuzzing;
pub mod heap;
pub mod metrics;
pub mod migrate;
pub mod registry;
pub mod runtime;
pub mod serve;
pub mod server;
pub mod tunnel;
pub mod watch;
