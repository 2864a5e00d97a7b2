//! `registry.rs` owns the route table: which loaded component serves which
//! path prefix. It picks the route for a path (longest prefix on whole
//! segments wins); loading components is the runtime's job, serving HTTP
//! the server's.

use std::sync::Arc;

use anyhow::Result;

use crate::config::RouteConfig;
use crate::runtime::{CallLimits, LoadedComponent, Runtime, Source};

/// One route: its settings and the component serving it.
pub struct Route {
    /// Name, prefix, limits, file, as configured.
    pub config: RouteConfig,
    /// The component version serving this route.
    pub component: Arc<LoadedComponent>,
}

impl Route {
    /// The per-call limits the runtime enforces for this route.
    pub fn limits(&self) -> CallLimits {
        CallLimits {
            memory: self.config.memory_limit,
            deadline: self.config.deadline,
            statement_timeout: self.config.statement_timeout,
        }
    }
}

/// The route table, longest prefix first.
pub struct Registry {
    /// Sorted so that the first match is the longest prefix.
    routes: Vec<Route>,
}

impl Registry {
    /// Loads every route's component; the first one that fails stops
    /// start-up with its file and reason.
    pub async fn load(runtime: &Arc<Runtime>, routes: &[RouteConfig]) -> Result<Self> {
        let mut loaded = Vec::with_capacity(routes.len());
        for config in routes {
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
            loaded.push(Route {
                config: config.clone(),
                component: Arc::new(component),
            });
        }
        Ok(Self::from_routes(loaded))
    }

    fn from_routes(mut routes: Vec<Route>) -> Self {
        routes.sort_by_key(|r| std::cmp::Reverse(r.config.prefix.len()));
        Self { routes }
    }

    /// The route serving `path`, if any.
    pub fn route_for(&self, path: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| prefix_matches(&r.config.prefix, path))
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

/// `/api` matches `/api`, `/api/` and `/api/x`, never `/apix`.
fn prefix_matches(prefix: &str, path: &str) -> bool {
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
