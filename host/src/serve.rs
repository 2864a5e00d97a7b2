//! `serve.rs` is `burrow serve` and `burrow tunnel`: it builds the
//! long-lived parts once, in order (tunnel → runtime → components →
//! listener), and runs until SIGTERM or SIGINT. A failure at any step stops
//! start-up before the listener accepts anything.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use tokio::net::TcpListener;
use wasmtime_wasi_config::WasiConfigVariables;

use crate::config::Config;
use crate::db::Db;
use crate::registry::Registry;
use crate::runtime::Runtime;
use crate::server::Server;
use crate::tunnel::Tunnel;

/// Runs the server described by `config` until a shutdown signal.
pub async fn serve(config: Config) -> Result<()> {
    if config.routes.is_empty() {
        bail!(
            "no routes are configured: pass `--route /=app.wasm` or add a [[route]] \
             with `prefix` and `component` to burrow.toml"
        );
    }
    // The tunnel first: if the database cannot be reached, nothing starts.
    let tunnel = match config.tunnel.clone() {
        Some(tunnel) => Some(Tunnel::start(tunnel).await?),
        None => None,
    };
    let db = connect_database(&config, tunnel.as_ref()).await;
    let runtime = Arc::new(Runtime::new(
        config.limits.max_requests,
        config.max_memory_limit(),
        config.cache_dir.clone(),
        guest_settings(&config),
        db,
    )?);
    let registry = Arc::new(Registry::load(&runtime, &config.routes).await?);

    let listener = TcpListener::bind(config.listen).await.with_context(|| {
        format!(
            "cannot listen on `{}` (is another server using the port? set BURROW_LISTEN or --listen)",
            config.listen
        )
    })?;
    let addr = listener.local_addr()?;
    tracing::info!("burrow listening on http://{addr}");

    let server = Server::new(registry, runtime, config.limits.clone(), config.debug);
    server.run(listener, shutdown_signal()).await;
    if let Some(tunnel) = tunnel {
        tunnel.close().await;
    }
    tracing::info!("burrow stopped");
    Ok(())
}

/// `burrow tunnel`: only the forward, in the foreground, like `ssh -N -L`,
/// so that the mysql CLI (or anything else) can use it.
pub async fn tunnel(config: Config) -> Result<()> {
    let Some(settings) = config.tunnel else {
        bail!(
            "no tunnel is configured: set SSH_HOST, SSH_USER, SSH_FORWARD (and SSH_KEY) or a \
             [tunnel] table in burrow.toml"
        );
    };
    let tunnel = Tunnel::start(settings).await?;
    shutdown_signal().await;
    tunnel.close().await;
    Ok(())
}

/// Builds the pool: at `DB_HOST`/`DB_PORT` if set, else at the tunnel's
/// local end. A first `SELECT 1` says in the log whether it works; a
/// database that is down is not fatal (requests get `unavailable` until it
/// is back).
async fn connect_database(config: &Config, tunnel: Option<&Tunnel>) -> Option<Arc<Db>> {
    let settings = config.database.clone()?;
    let local = tunnel.map(|t| t.local_addr());
    let host = settings
        .host
        .clone()
        .or_else(|| local.map(|a| a.ip().to_string()))
        .unwrap_or_else(|| "127.0.0.1".to_string());
    let port = settings.port.or(local.map(|a| a.port())).unwrap_or(3306);
    if let Some(local) = local
        && (host != local.ip().to_string() || port != local.port())
    {
        tracing::warn!(
            "DB_HOST/DB_PORT ({host}:{port}) is not the tunnel's local end ({local}): database traffic \
             will not go through the tunnel"
        );
    }
    let (name, user) = (settings.name.clone(), settings.user.clone());
    let db = Db::new(settings, host.clone(), port);
    match db.ping().await {
        Ok(()) => tracing::info!("database `{name}` as `{user}` at {host}:{port}: SELECT 1 ok"),
        Err(e) => tracing::error!(
            "database `{name}` as `{user}` at {host}:{port} is not usable yet: {e:?}"
        ),
    }
    Some(db)
}

/// What guests read through `wasi:config/store`.
fn guest_settings(config: &Config) -> WasiConfigVariables {
    let mut vars = WasiConfigVariables::new();
    for (key, value) in &config.app {
        vars.insert(key, value);
    }
    vars.insert("debug", if config.debug { "true" } else { "false" });
    if let Some(secret) = &config.secret_key {
        vars.insert("secret_key", secret.expose());
    }
    vars
}

/// Resolves on the first SIGTERM (what `docker stop` sends) or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot listen for SIGTERM ({e}); only Ctrl-C will stop the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
