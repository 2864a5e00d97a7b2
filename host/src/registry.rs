//! `registry.rs` owns the route table and the component version serving
//! each route, and swaps versions while the server runs. It picks the route
//! for a path (longest prefix on whole segments wins); compiling and
//! validating components is the runtime's job, noticing changed files the
//! watcher's, serving HTTP the server's.
//!
//! Two atomic pointers make swaps safe under load: the table (replaced
//! whole when SIGHUP changes the routes) and, per route, the current
//! version. A request loads both once when it starts and keeps its
//! `Arc<Version>` until its response is sent, so in-flight requests finish
//! on the version they started on while new ones get the new version.
//! A candidate is fully validated (it compiles, is a component, links
//! against the host's imports, exports the handler) before it is stored;
//! a rejected one leaves the old version serving. Swaps are serialized so
//! that the watcher, the admin API and SIGHUP never interleave.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Result;
use arc_swap::ArcSwap;
use serde_json::{Value as Json, json};

use crate::config::RouteConfig;
use crate::runtime::{CallLimits, LoadedComponent, Runtime, Source};

/// One loaded version of a route's component.
pub struct Version {
    /// The validated, pre-instantiated component.
    pub component: LoadedComponent,
    /// What loaded it: `start`, `watch`, `admin reload`, `upload`, `sighup`…
    pub trigger: &'static str,
    /// Requests that started on this version.
    served: AtomicU64,
}

impl Version {
    fn new(component: LoadedComponent, trigger: &'static str) -> Arc<Self> {
        Arc::new(Self {
            component,
            trigger,
            served: AtomicU64::new(0),
        })
    }

    /// The short form of the version used in logs and headers.
    pub fn short(&self) -> &str {
        &self.component.sha256[..12]
    }

    /// Counts one request; called when the request starts.
    pub fn record_request(&self) {
        self.served.fetch_add(1, Ordering::Relaxed);
    }

    fn describe(&self) -> Json {
        let loaded_at = self
            .component
            .loaded_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        json!({
            "sha256": self.component.sha256,
            "loaded_at": loaded_at.as_secs_f64(),
            "load_ms": self.component.load_time.as_secs_f64() * 1000.0,
            "source": match self.component.source {
                Source::Cache => "cache",
                Source::Compiled => "compiled",
            },
            "trigger": self.trigger,
            "requests": self.served.load(Ordering::Relaxed),
        })
    }
}

/// One route: its settings and the versions of its component.
pub struct Route {
    /// Name, prefix, limits, file, as configured.
    pub config: RouteConfig,
    /// The version new requests get.
    current: ArcSwap<Version>,
    /// The version before the current one: the target of a rollback.
    previous: Mutex<Option<Arc<Version>>>,
    /// Successful swaps since the route was created.
    swaps: AtomicU64,
    /// Candidates rejected since the route was created.
    rejected: AtomicU64,
}

impl Route {
    fn new(config: RouteConfig, version: Arc<Version>) -> Arc<Self> {
        Arc::new(Self {
            config,
            current: ArcSwap::new(version),
            previous: Mutex::new(None),
            swaps: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        })
    }

    /// The version serving new requests; hold it for the whole request.
    pub fn current(&self) -> Arc<Version> {
        self.current.load_full()
    }

    /// The per-call limits the runtime enforces for this route.
    pub fn limits(&self) -> CallLimits {
        CallLimits {
            memory: self.config.memory_limit,
            deadline: self.config.deadline,
            statement_timeout: self.config.statement_timeout,
        }
    }

    pub fn swaps(&self) -> u64 {
        self.swaps.load(Ordering::Relaxed)
    }

    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Makes `next` current; the old current becomes the rollback target.
    fn install(&self, next: Arc<Version>) -> Arc<Version> {
        let old = self.current.swap(Arc::clone(&next));
        *self.previous.lock().unwrap() = Some(Arc::clone(&old));
        self.swaps.fetch_add(1, Ordering::Relaxed);
        old
    }

    /// The route as the admin API shows it.
    pub fn describe(&self) -> Json {
        json!({
            "name": self.config.name,
            "prefix": self.config.prefix,
            "file": self.config.component.display().to_string(),
            "current": self.current.load().describe(),
            "previous": self.previous.lock().unwrap().as_ref().map(|v| v.describe()),
            "swaps": self.swaps(),
            "rejected": self.rejected(),
        })
    }
}

/// The route table, longest prefix first.
pub struct Table {
    /// Sorted so that the first match is the longest prefix.
    routes: Vec<Arc<Route>>,
}

impl Table {
    fn new(mut routes: Vec<Arc<Route>>) -> Self {
        routes.sort_by_key(|r| std::cmp::Reverse(r.config.prefix.len()));
        Self { routes }
    }

    /// The route serving `path`, if any.
    pub fn route_for(&self, path: &str) -> Option<&Arc<Route>> {
        self.routes
            .iter()
            .find(|r| prefix_matches(&r.config.prefix, path))
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| r.config.name == name)
    }

    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }
}

/// What a swap attempt did.
#[derive(Debug)]
pub enum SwapOutcome {
    /// The candidate is now current.
    Swapped { from: String, to: String },
    /// The candidate is the version already serving; nothing changed.
    Unchanged { sha256: String },
}

/// Why a swap did not happen.
#[derive(Debug)]
pub enum SwapError {
    /// No route has that name.
    UnknownRoute(String),
    /// The route has no earlier version to roll back to.
    NoPrevious(String),
    /// The candidate failed validation; the old version keeps serving.
    Rejected { reason: String, serving: String },
}

impl std::fmt::Display for SwapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SwapError::UnknownRoute(name) => write!(f, "no route is named `{name}`"),
            SwapError::NoPrevious(name) => {
                write!(f, "route `{name}` has no previous version to roll back to")
            }
            SwapError::Rejected { reason, serving } => {
                write!(f, "{reason}; still serving {}", &serving[..12])
            }
        }
    }
}

/// The routes and their versions; shared by the server, the admin API, the
/// watcher and the SIGHUP handler.
pub struct Registry {
    /// Validates and compiles candidates.
    runtime: Arc<Runtime>,
    /// Replaced whole when the configured routes change.
    table: ArcSwap<Table>,
    /// Held for the whole of a swap, so that two never interleave.
    swapping: tokio::sync::Mutex<()>,
}

impl Registry {
    /// Loads every route's component; the first one that fails stops
    /// start-up with its file and reason.
    pub async fn load(runtime: &Arc<Runtime>, routes: &[RouteConfig]) -> Result<Self> {
        let mut loaded = Vec::with_capacity(routes.len());
        for config in routes {
            loaded.push(load_route(runtime, config, "start").await?);
        }
        Ok(Self {
            runtime: Arc::clone(runtime),
            table: ArcSwap::from_pointee(Table::new(loaded)),
            swapping: tokio::sync::Mutex::new(()),
        })
    }

    /// The runtime that compiles and runs the routes' components.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The table as it is now; hold the result for the whole request.
    pub fn table(&self) -> Arc<Table> {
        self.table.load_full()
    }

    /// Re-reads the route's file and swaps to it if it differs.
    pub async fn reload(
        &self,
        name: &str,
        trigger: &'static str,
    ) -> Result<SwapOutcome, SwapError> {
        let _swapping = self.swapping.lock().await;
        let route = self.route(name)?;
        let file = route.config.component.clone();
        let candidate = match std::fs::read(&file) {
            Ok(bytes) => bytes,
            Err(e) => {
                let reason = format!("cannot read component file `{}`: {e}", file.display());
                return Err(reject(&route, trigger, reason));
            }
        };
        self.swap_in(&route, candidate, &format!("`{}`", file.display()), trigger)
            .await
    }

    /// Swaps the route to the component in `bytes` (an upload). The file
    /// on disk is left as it is.
    pub async fn upload(&self, name: &str, bytes: Vec<u8>) -> Result<SwapOutcome, SwapError> {
        let _swapping = self.swapping.lock().await;
        let route = self.route(name)?;
        self.swap_in(&route, bytes, "the uploaded component", "upload")
            .await
    }

    /// Makes the previous version current again (and the current one the
    /// previous), with no compiling.
    pub async fn rollback(&self, name: &str) -> Result<SwapOutcome, SwapError> {
        let _swapping = self.swapping.lock().await;
        let route = self.route(name)?;
        let previous = route.previous.lock().unwrap().clone();
        let Some(previous) = previous else {
            return Err(SwapError::NoPrevious(name.to_string()));
        };
        let old = route.install(Arc::clone(&previous));
        tracing::info!(
            route = %route.config.name,
            "rolled back {} → {}",
            old.short(),
            previous.short()
        );
        Ok(SwapOutcome::Swapped {
            from: old.component.sha256.clone(),
            to: previous.component.sha256.clone(),
        })
    }

    /// Replaces the route table with `routes` (SIGHUP): unchanged routes
    /// keep their versions and history, changed and new ones are loaded,
    /// missing ones are dropped. If any route fails to load, nothing
    /// changes and the error says which.
    pub async fn apply(&self, routes: &[RouteConfig]) -> Result<String> {
        let _swapping = self.swapping.lock().await;
        let old = self.table.load_full();
        let mut next = Vec::with_capacity(routes.len());
        let (mut added, mut changed, mut kept) = (Vec::new(), Vec::new(), 0);
        for config in routes {
            match old.get(&config.name) {
                Some(existing) if existing.config == *config && !file_changed(existing) => {
                    next.push(Arc::clone(existing));
                    kept += 1;
                }
                Some(existing) => {
                    let route = load_route(&self.runtime, config, "sighup").await?;
                    *route.previous.lock().unwrap() = Some(existing.current());
                    next.push(route);
                    changed.push(config.name.clone());
                }
                None => {
                    next.push(load_route(&self.runtime, config, "sighup").await?);
                    added.push(config.name.clone());
                }
            }
        }
        let removed: Vec<_> = old
            .routes()
            .iter()
            .filter(|r| !routes.iter().any(|c| c.name == r.config.name))
            .map(|r| r.config.name.clone())
            .collect();
        self.table.store(Arc::new(Table::new(next)));
        Ok(format!(
            "routes reloaded: {kept} unchanged, added [{}], changed [{}], removed [{}]",
            added.join(", "),
            changed.join(", "),
            removed.join(", ")
        ))
    }

    fn route(&self, name: &str) -> Result<Arc<Route>, SwapError> {
        self.table
            .load()
            .get(name)
            .cloned()
            .ok_or_else(|| SwapError::UnknownRoute(name.to_string()))
    }

    /// Validates `bytes` and, if they pass and differ from the current
    /// version, makes them current.
    async fn swap_in(
        &self,
        route: &Route,
        bytes: Vec<u8>,
        what: &str,
        trigger: &'static str,
    ) -> Result<SwapOutcome, SwapError> {
        let current = route.current();
        if crate::runtime::sha256_hex(&bytes) == current.component.sha256 {
            return Ok(SwapOutcome::Unchanged {
                sha256: current.component.sha256.clone(),
            });
        }
        let loaded = self
            .runtime
            .load_bytes(&route.config.name, bytes, what, &route.config.component)
            .await
            .map_err(|e| reject(route, trigger, format!("{e:#}")))?;
        let next = Version::new(loaded, trigger);
        let old = route.install(Arc::clone(&next));
        tracing::info!(
            route = %route.config.name,
            trigger,
            "swapped {} → {} ({} in {} ms)",
            old.short(),
            next.short(),
            match next.component.source {
                Source::Cache => "from cache",
                Source::Compiled => "compiled",
            },
            next.component.load_time.as_millis()
        );
        Ok(SwapOutcome::Swapped {
            from: old.component.sha256.clone(),
            to: next.component.sha256.clone(),
        })
    }
}

/// Counts and logs a rejected candidate.
fn reject(route: &Route, trigger: &'static str, reason: String) -> SwapError {
    route.rejected.fetch_add(1, Ordering::Relaxed);
    let serving = route.current().component.sha256.clone();
    tracing::warn!(
        route = %route.config.name,
        trigger,
        "new component rejected, still serving {}: {reason}",
        &serving[..12]
    );
    SwapError::Rejected { reason, serving }
}

async fn load_route(
    runtime: &Arc<Runtime>,
    config: &RouteConfig,
    trigger: &'static str,
) -> Result<Arc<Route>> {
    let component = runtime.load(&config.name, &config.component).await?;
    tracing::info!(
        route = %config.name,
        prefix = %config.prefix,
        file = %config.component.display(),
        sha256 = &component.sha256[..12],
        "component {} in {} ms",
        match component.source {
            Source::Cache => "loaded from cache",
            Source::Compiled => "compiled",
        },
        component.load_time.as_millis()
    );
    Ok(Route::new(config.clone(), Version::new(component, trigger)))
}

/// Whether the route's file no longer holds the version serving it.
fn file_changed(route: &Route) -> bool {
    match std::fs::read(&route.config.component) {
        Ok(bytes) => crate::runtime::sha256_hex(&bytes) != route.current().component.sha256,
        Err(_) => true,
    }
}

/// `/api` matches `/api`, `/api/` and `/api/x`, never `/apix`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert!(prefix_matches("/", "/anything"));
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/"));
        assert!(prefix_matches("/api", "/api/users/1"));
        assert!(!prefix_matches("/api", "/apix"));
        assert!(!prefix_matches("/api/v1", "/api"));
    }
}
