//! `watch.rs` notices when a route's component file changes on disk and
//! asks the registry to swap it in. It owns only the polling loop and the
//! debounce; validating and swapping are the registry's.
//!
//! It polls each file's metadata (size, mtime, ctime, inode) rather than
//! relying on filesystem events: that works the same on every filesystem
//! and bind mount, sees atomic renames (a new inode) as well as in-place
//! writes, and costs one `stat` per route per tick. A change is acted on
//! only once the file has stayed unchanged for the debounce time, so a file
//! written in several chunks is read once, whole; a file caught half
//! written anyway fails validation and the old version keeps serving.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::WatchConfig;
use crate::registry::{Registry, SwapOutcome};

/// How often each file is looked at.
const POLL: Duration = Duration::from_millis(100);

/// The running watcher; dropping it stops the polling task.
pub struct Watcher {
    task: JoinHandle<()>,
}

impl Watcher {
    /// Starts watching every route of `registry`, following route-table
    /// changes (SIGHUP) as they happen.
    pub fn start(registry: Arc<Registry>, config: &WatchConfig) -> Watcher {
        let debounce = config.debounce;
        tracing::info!(
            debounce_ms = debounce.as_millis() as u64,
            "watching component files for changes"
        );
        Watcher {
            task: tokio::spawn(poll(registry, debounce)),
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What identifies one state of a file; `None` when it does not exist.
type Stamp = Option<(u64, i64, i64, i64, i64, u64)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
        m.ino(),
    ))
}

/// What the watcher knows of one route's file.
struct Watched {
    path: PathBuf,
    stamp: Stamp,
    /// When the file was last seen to change, if that is not acted on yet.
    changed_at: Option<Instant>,
}

async fn poll(registry: Arc<Registry>, debounce: Duration) {
    let mut files: HashMap<String, Watched> = HashMap::new();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let table = registry.table();
        files.retain(|name, _| table.get(name).is_some());
        for route in table.routes() {
            let name = &route.config.name;
            let path = &route.config.component;
            let now_stamp = stamp(path);
            let watched = files.entry(name.clone()).or_insert_with(|| Watched {
                path: path.clone(),
                stamp: now_stamp,
                changed_at: None,
            });
            if watched.path != *path {
                // The route now points elsewhere (SIGHUP): a new baseline.
                *watched = Watched {
                    path: path.clone(),
                    stamp: now_stamp,
                    changed_at: None,
                };
                continue;
            }
            let now = Instant::now();
            if now_stamp != watched.stamp {
                watched.stamp = now_stamp;
                watched.changed_at = Some(now);
                continue;
            }
            let settled = watched
                .changed_at
                .is_some_and(|at| now.duration_since(at) >= debounce);
            if !settled || now_stamp.is_none() {
                continue;
            }
            watched.changed_at = None;
            tracing::info!(route = %name, file = %path.display(), "component file changed");
            match registry.reload(name, "watch").await {
                Ok(SwapOutcome::Unchanged { .. }) => {
                    tracing::info!(route = %name, "file content is the version already serving")
                }
                // Swaps and rejections are logged by the registry.
                Ok(SwapOutcome::Swapped { .. }) | Err(_) => {}
            }
        }
    }
}
