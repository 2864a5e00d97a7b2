//! `cache.rs` turns component bytes into a compiled [`Component`], through
//! an on-disk cache keyed by the bytes' SHA-256 and the engine's settings,
//! so that a restart or a swap back to an earlier version does not
//! recompile. It owns the cache directory's layout; it knows nothing of
//! routes or requests.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// How a component was obtained, for the start-up log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Loaded from the on-disk cache.
    Cache,
    /// Compiled now (and written to the cache if there is one).
    Compiled,
}

/// The on-disk store of compiled components.
pub struct ComponentCache {
    /// `None` when no cache directory is configured or it is unusable.
    dir: Option<PathBuf>,
    /// Hex digest of the engine's compatibility settings; part of each
    /// file name so that a different wasmtime or config never loads stale
    /// machine code.
    engine_key: String,
}

impl ComponentCache {
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hex(&hasher.0.finalize()[..8]);
        let dir = dir.and_then(|d| match std::fs::create_dir_all(&d) {
            Ok(()) => Some(d),
            Err(e) => {
                tracing::warn!(
                    dir = %d.display(),
                    "component cache directory is unusable ({e}); components will be compiled at every start. \
                     Set BURROW_CACHE_DIR to a writable directory to fix this"
                );
                None
            }
        });
        Self { dir, engine_key }
    }

    /// The component for `bytes`, compiled or from the cache. `sha256` is the
    /// hex digest of `bytes`. Runs the compiler: call it off the async
    /// runtime's worker threads.
    pub fn load(&self, engine: &Engine, bytes: &[u8], sha256: &str) -> Result<(Component, Source)> {
        let path = self.path_for(sha256);
        if let Some(path) = &path
            && path.exists()
        {
            // SAFETY: the file was written by `Component::serialize` of an
            // engine with the same compatibility hash (it is in the name),
            // in a directory this process owns; wasmtime additionally checks
            // the header and refuses incompatible artifacts.
            match unsafe { Component::deserialize_file(engine, path) } {
                Ok(component) => return Ok((component, Source::Cache)),
                Err(e) => tracing::warn!(
                    file = %path.display(),
                    "cached component is unusable ({e}); recompiling"
                ),
            }
        }
        let component = Component::new(engine, bytes).map_err(anyhow::Error::from)?;
        if let Some(path) = &path
            && let Err(e) = write_atomically(path, &component)
        {
            tracing::warn!(file = %path.display(), "could not write the component cache: {e:#}");
        }
        Ok((component, Source::Compiled))
    }

    fn path_for(&self, sha256: &str) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{sha256}-{}.cwasm", self.engine_key)))
    }
}

/// Writes to a temporary name, then renames, so that a crash never leaves
/// a half-written artifact under the real name.
fn write_atomically(path: &Path, component: &Component) -> Result<()> {
    let bytes = component.serialize().map_err(anyhow::Error::from)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing `{}`", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to `{}`", path.display()))?;
    Ok(())
}

/// Hex SHA-256 of a component file's bytes: its version identity.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Feeds `Hash` output into SHA-256 so the key is stable across processes
/// (std's `DefaultHasher` is randomly seeded per process).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        unreachable!("only the full digest is read")
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}
