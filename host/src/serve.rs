//! `serve.rs` is `burrow serve` and `burrow tunnel`: it builds the
//! long-lived parts once, in order (admin listener → tunnel → pool →
//! runtime → components → watcher → public listener), and runs until SIGTERM or SIGINT. A failure at any step stops
//! start-up before the listener accepts anything.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use tokio::net::TcpListener;
use wasmtime_wasi_config::WasiConfigVariables;

use crate::admin::{self, AdminState};
use crate::config::{Config, Overrides, ProcessEnv};
use crate::db::Db;
use crate::heap;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::runtime::Runtime;
use crate::server::Server;
use crate::tunnel::Tunnel;
use crate::watch::Watcher;

/// Runs the server described by `config` until a shutdown signal.
/// `overrides` are the command line's, re-applied when SIGHUP re-reads the
/// config file.
pub async fn serve(config: Config, overrides: Overrides) -> Result<()> {
    if config.routes.is_empty() {
        bail!(
            "no routes are configured: pass `--route /=app.wasm` or add a [[route]] \
             with `prefix` and `component` to burrow.toml"
        );
    }
    let metrics = Arc::new(Metrics::new());
    let admin = AdminState::new(
        config.admin.token.clone(),
        Arc::clone(&metrics),
        config.tunnel.is_some(),
        config.database.is_some(),
    );
    // The admin listener first, so that readiness can say what start-up is
    // waiting for; it stops when this function returns.
    let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some(addr) = config.admin.listen {
        let listener = admin::bind(addr).await?;
        tracing::info!(
            "admin API on http://{} ({})",
            listener.local_addr()?,
            if config.admin.token.is_some() {
                "token required"
            } else {
                "no token: loopback only"
            }
        );
        tokio::spawn(admin::run(Arc::clone(&admin), listener, async {
            let _ = admin_stopped.await;
        }));
    }

    // The tunnel next: if the database cannot be reached, nothing starts.
    let tunnel = match config.tunnel.clone() {
        Some(tunnel) => Some(Tunnel::start(tunnel).await?),
        None => None,
    };
    if let Some(tunnel) = &tunnel {
        admin.set_tunnel(tunnel.monitor());
    }
    let db = connect_database(&config, tunnel.as_ref()).await;
    if let Some(db) = &db {
        admin.set_db(Arc::clone(db));
    }
    let runtime = Arc::new(Runtime::new(
        config.limits.max_requests,
        config.max_memory_limit(),
        config.cache_dir.clone(),
        guest_settings(&config),
        db,
    )?);
    let registry = Arc::new(Registry::load(&runtime, &config.routes).await?);
    admin.set_registry(Arc::clone(&registry));
    let _watcher = config
        .watch
        .enabled
        .then(|| Watcher::start(Arc::clone(&registry), &config.watch));
    let _sighup = reload_on_sighup(Arc::clone(&registry), overrides);
    let _trim = AbortOnDrop(heap::trim_periodically(
        heap::CHECK_EVERY,
        heap::TRIM_AFTER_GROWTH,
    ));

    let listener = TcpListener::bind(config.listen).await.with_context(|| {
        format!(
            "cannot listen on `{}` (is another server using the port? set BURROW_LISTEN or --listen)",
            config.listen
        )
    })?;
    let addr = listener.local_addr()?;
    tracing::info!("burrow listening on http://{addr}");

    let server = Server::new(
        registry,
        runtime,
        config.limits.clone(),
        config.debug,
        metrics,
    );
    let shutdown = async {
        shutdown_signal().await;
        admin.set_shutting_down();
    };
    server.run(listener, shutdown).await;
    if let Some(tunnel) = tunnel {
        tunnel.close().await;
    }
    let _ = admin_stop.send(());
    tracing::info!("burrow stopped");
    Ok(())
}

/// Re-reads the configuration on every SIGHUP and applies its routes:
/// added, removed and changed routes take effect at once; if anything is
/// wrong nothing changes. Other settings need a restart. The task stops
/// when the returned guard is dropped.
fn reload_on_sighup(registry: Arc<Registry>, overrides: Overrides) -> AbortOnDrop {
    use tokio::signal::unix::{SignalKind, signal};
    AbortOnDrop(tokio::spawn(async move {
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot listen for SIGHUP ({e}); routes reload only by restart");
                return;
            }
        };
        while hup.recv().await.is_some() {
            tracing::info!(
                "SIGHUP: re-reading the configuration (routes only; other settings need a restart)"
            );
            let config = match Config::load(&overrides, &ProcessEnv) {
                Ok(config) => config,
                Err(e) => {
                    tracing::error!("SIGHUP: configuration not applied, routes unchanged: {e:#}");
                    continue;
                }
            };
            if config.routes.is_empty() {
                tracing::error!("SIGHUP: the new configuration has no routes; routes unchanged");
                continue;
            }
            match registry.apply(&config.routes).await {
                Ok(summary) => tracing::info!("SIGHUP: {summary}"),
                Err(e) => tracing::error!("SIGHUP: routes unchanged: {e:#}"),
            }
        }
    }))
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
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
    let (host, port) = settings.address(local);
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
