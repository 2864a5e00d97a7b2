//! `runtime/` owns wasmtime: the engine, the linker with every import a
//! guest may use, compiled components, and one sandboxed call per request.
//! It knows nothing of routes, sockets or the database below the import.
//!
//! Layout:
//! - `mod.rs`: [`Runtime`] (built once: Config → Engine → Linker → epoch
//!   ticker), [`Runtime::load`] (file → validated, pre-instantiated
//!   component) and [`Runtime::call`] (one request in a fresh `Store`);
//! - `state.rs`: what a `Store` holds for one request, and its limits;
//! - `cache.rs`: compiled components on disk, keyed by content hash;
//! - `guest_log.rs`: guest stdout/stderr into the host log.
//!
//! Each request runs in a fresh `Store` from [`Runtime::new_store`], with a
//! memory cap and a wall-clock deadline. The deadline is enforced twice:
//! wasm code yields to tokio on every epoch tick and traps once the deadline
//! has passed, and the whole call is wrapped in a timeout for the time the
//! guest spends waiting on the host.

mod cache;
mod guest_log;
mod state;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use http_body_util::BodyExt;
use hyper::body::Body;
use tokio::sync::oneshot;
use wasmtime::component::{Component, Linker, Resource};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};
use wasmtime_wasi_config::WasiConfigVariables;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};

pub use cache::{Source, sha256_hex};
pub use state::GuestState;

/// How often the epoch advances: the granularity of deadlines and of
/// yielding a busy guest back to the scheduler.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Bytes of each linear memory (and of each table) kept resident between
/// requests, reset in place rather than returned to the kernel: only the
/// pages a request dirtied where the kernel has PAGEMAP_SCAN (Linux 6.7+),
/// otherwise the whole region by memset.
const MEMORY_KEEP_RESIDENT: usize = 2 * 1024 * 1024;
const TABLE_KEEP_RESIDENT: usize = 64 * 1024;
/// Freed slots the pool keeps warm before it prefers reusing one over
/// touching a never-used slot. Every slot ever used keeps up to
/// [`MEMORY_KEEP_RESIDENT`] resident, so any budget here becomes RSS that
/// is never given back: wasmtime's default (100) cost +6.5 MiB a minute in
/// bench/soak, 16 cost +1 MiB a minute (+14 % over 10 minutes). With 0 the
/// pool reuses warm slots first (affine to the same component first), so
/// the slots touched are just the most requests ever in flight at once;
/// bench/run's hello ratio against `wasmtime serve` was unchanged.
const MAX_WARM_SLOTS: u32 = 0;

/// Limits for one call, taken from the route.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    /// Linear memory the instance may grow to, in bytes.
    pub memory: u64,
    /// Wall-clock time for the whole response.
    pub deadline: Duration,
    /// Time one database statement may take; `None` uses the pool's.
    pub statement_timeout: Option<Duration>,
}

/// The wasmtime side of the host, built once and shared by every request.
pub struct Runtime {
    /// Compiles and runs everything; its epoch is advanced by `_ticker`.
    engine: Engine,
    /// Every import a guest may use: WASI p2 (nothing granted), wasi:http
    /// types, `wasi:config/store` and `burrow:db`.
    linker: Linker<GuestState>,
    /// Compiled components on disk.
    cache: cache::ComponentCache,
    /// Settings handed to every guest through `wasi:config/store`.
    settings: Arc<WasiConfigVariables>,
    /// The database pool behind `burrow:db`, if configured.
    db: Option<Arc<crate::db::Db>>,
    /// Advances the epoch; stops when the runtime is dropped.
    _ticker: EpochTicker,
}

/// A component that passed every check and is ready to instantiate.
pub struct LoadedComponent {
    /// The route name it serves, for logs.
    pub route: Arc<str>,
    /// The file it came from.
    pub file: PathBuf,
    /// Hex SHA-256 of the file's bytes: the version.
    pub sha256: String,
    /// Imports resolved once; instantiation per request is cheap from here.
    pub pre: ProxyPre<GuestState>,
    /// Compiled now or loaded from the cache.
    pub source: Source,
    /// How long compiling or loading took.
    pub load_time: Duration,
    /// When it was loaded.
    pub loaded_at: SystemTime,
}

/// Why a call produced no response of the guest's own.
#[derive(Debug)]
pub enum GuestFailure {
    /// The wall-clock deadline passed (504).
    Deadline(Duration),
    /// The guest tried to grow memory past its cap and then trapped (500).
    MemoryLimit(u64),
    /// The guest trapped: panic, `unreachable`, bad access… (500).
    Trap(String),
    /// The guest reported an error instead of a response (500).
    ErrorCode(String),
    /// The guest returned without setting a response (500).
    NoResponse,
    /// No instance could be created, e.g. the pool is exhausted (503).
    Instantiate(String),
}

impl GuestFailure {
    /// A short name for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            GuestFailure::Deadline(_) => "deadline",
            GuestFailure::MemoryLimit(_) => "memory",
            GuestFailure::Trap(_) => "trap",
            GuestFailure::ErrorCode(_) => "error",
            GuestFailure::NoResponse => "no_response",
            GuestFailure::Instantiate(_) => "instantiate",
        }
    }
}

impl std::fmt::Display for GuestFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GuestFailure::Deadline(d) => write!(f, "deadline of {} ms exceeded", d.as_millis()),
            GuestFailure::MemoryLimit(cap) => {
                write!(f, "memory limit of {} MiB exceeded", cap / (1024 * 1024))
            }
            GuestFailure::Trap(msg) => write!(f, "guest trapped: {msg}"),
            GuestFailure::ErrorCode(code) => write!(f, "guest returned an error: {code}"),
            GuestFailure::NoResponse => f.write_str("guest returned without a response"),
            GuestFailure::Instantiate(msg) => write!(f, "could not instantiate the guest: {msg}"),
        }
    }
}

impl Runtime {
    /// Builds the engine (pooling allocator sized for `max_requests`
    /// instances of at most `max_memory` bytes each), the linker and the
    /// epoch ticker.
    pub fn new(
        max_requests: usize,
        max_memory: u64,
        cache_dir: Option<PathBuf>,
        settings: WasiConfigVariables,
        db: Option<Arc<crate::db::Db>>,
    ) -> Result<Self> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.memory_init_cow(true);
        let mut pool = PoolingAllocationConfig::default();
        // Room for every request in flight plus slack for instances still
        // being torn down; a Rust guest uses a few core instances, memories
        // and tables per component instance.
        let instances = u32::try_from(max_requests.saturating_mul(2).max(16)).unwrap_or(u32::MAX);
        pool.total_component_instances(instances);
        pool.total_core_instances(instances.saturating_mul(8));
        pool.total_memories(instances.saturating_mul(2));
        pool.total_tables(instances.saturating_mul(4));
        pool.total_stacks(instances);
        pool.max_memory_size(usize::try_from(max_memory).context("memory limit too large")?);
        // Reset the first pages of a reused slot with memset instead of
        // madvise: decommitting every request's memory cost a TLB
        // shootdown on every core plus page faults on the next request
        // (measured: most of the time of a hello request).
        pool.linear_memory_keep_resident(MEMORY_KEEP_RESIDENT);
        // Reset only the pages a request dirtied (Linux 6.7+) instead of
        // memsetting the whole kept region after every request: bench/run
        // measured hello at 119 µs of CPU a request instead of 148-191, and
        // RSS after 64 concurrent connections at 43 MiB instead of 153-165.
        pool.pagemap_scan(wasmtime::Enabled::Auto);
        pool.table_keep_resident(TABLE_KEEP_RESIDENT);
        pool.max_unused_warm_slots(MAX_WARM_SLOTS);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("creating the wasmtime engine")?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)?;
        wasmtime_wasi_config::add_to_linker(&mut linker, |s: &mut GuestState| s.config())
            .map_err(anyhow::Error::from)?;
        crate::db::add_to_linker(&mut linker, |s: &mut GuestState| &mut s.db)?;

        let cache = cache::ComponentCache::new(&engine, cache_dir);
        let ticker = EpochTicker::start(engine.clone());
        Ok(Self {
            engine,
            linker,
            cache,
            settings: Arc::new(settings),
            db,
            _ticker: ticker,
        })
    }

    /// The instance pool's occupancy, in Prometheus text: what is live and
    /// what freed slots keep resident for reuse.
    pub fn render_metrics(&self, out: &mut crate::metrics::Exposition) {
        let Some(pool) = self.engine.pooling_allocator_metrics() else {
            return;
        };
        out.gauge(
            "burrow_wasm_instances",
            "Component instances alive now (requests being served or torn down).",
            pool.component_instances() as f64,
        );
        out.gauge(
            "burrow_wasm_unused_warm_memories",
            "Freed linear-memory slots kept warm for reuse.",
            f64::from(pool.unused_warm_memories()),
        );
        out.gauge(
            "burrow_wasm_unused_memory_resident_bytes",
            "Bytes freed linear-memory slots keep resident for reuse.",
            pool.unused_memory_bytes_resident() as f64,
        );
    }

    /// Reads, checks, compiles (or loads from the cache) and
    /// pre-instantiates the component in `file`. Every failure names the
    /// file and what is wrong with it.
    pub async fn load(self: &Arc<Self>, route: &str, file: &Path) -> Result<LoadedComponent> {
        let bytes = std::fs::read(file)
            .with_context(|| format!("cannot read component file `{}`", file.display()))?;
        self.load_bytes(route, bytes, &format!("`{}`", file.display()), file)
            .await
    }

    /// Like [`Runtime::load`] for bytes that came from elsewhere (an
    /// upload); `what` names them in errors, `file` is recorded as their
    /// origin.
    pub async fn load_bytes(
        self: &Arc<Self>,
        route: &str,
        bytes: Vec<u8>,
        what: &str,
        file: &Path,
    ) -> Result<LoadedComponent> {
        check_component_header(&bytes)
            .with_context(|| format!("{what} is not a usable component"))?;
        let sha256 = sha256_hex(&bytes);
        let started = Instant::now();
        let this = Arc::clone(self);
        let digest = sha256.clone();
        // Compiling is seconds of CPU: keep it off the async worker threads.
        let (component, source) =
            tokio::task::spawn_blocking(move || this.cache.load(&this.engine, &bytes, &digest))
                .await
                .context("the compiler thread panicked")?
                .with_context(|| format!("{what} does not compile"))?;
        let pre = self
            .pre_instantiate(&component)
            .with_context(|| format!("{what} cannot be served"))?;
        Ok(LoadedComponent {
            route: Arc::from(route),
            file: file.to_path_buf(),
            sha256,
            pre,
            source,
            load_time: started.elapsed(),
            loaded_at: SystemTime::now(),
        })
    }

    fn pre_instantiate(&self, component: &Component) -> Result<ProxyPre<GuestState>> {
        let instance_pre = self.linker.instantiate_pre(component).map_err(|e| {
            anyhow::anyhow!(
                "it imports something burrow does not provide ({e}); a guest may import \
                 WASI 0.2, wasi:http/types, wasi:config/store and burrow:db only"
            )
        })?;
        ProxyPre::new(instance_pre).map_err(|e| {
            anyhow::anyhow!(
                "it does not export `wasi:http/incoming-handler@0.2.x` ({e}); build it as an \
                 HTTP handler, e.g. with `#[wstd::http_server]` or the burrow SDK"
            )
        })
    }

    /// A fresh store for one request: its own WASI context with nothing
    /// granted, its log sinks, its memory cap and its deadline.
    pub fn new_store(
        &self,
        request_id: Arc<str>,
        route: Arc<str>,
        limits: CallLimits,
        deadline: Instant,
    ) -> Store<GuestState> {
        let db = crate::db::DbState::new(self.db.clone(), limits.statement_timeout);
        let state = GuestState::new(
            request_id,
            route,
            limits.memory,
            Arc::clone(&self.settings),
            db,
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(Trap::Interrupt.into())
            } else {
                // Let other requests run, then come back next tick.
                Ok(wasmtime::UpdateDeadline::Yield(1))
            }
        });
        store
    }

    /// Runs `request` through `component`. Returns the guest's response as
    /// soon as its head is ready (the body streams from the guest as it
    /// writes it), or why there is none. Failures are logged here, with the
    /// request id; dropping the returned future or body stops the guest.
    pub async fn call<B>(
        &self,
        component: &LoadedComponent,
        limits: CallLimits,
        request_id: Arc<str>,
        request: hyper::Request<B>,
    ) -> Result<hyper::Response<HyperOutgoingBody>, GuestFailure>
    where
        B: Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let deadline = Instant::now() + limits.deadline;
        let mut store = self.new_store(
            Arc::clone(&request_id),
            Arc::clone(&component.route),
            limits,
            deadline,
        );
        let (sender, receiver) = oneshot::channel();
        let (req, out) = incoming_request(&mut store, request, sender)?;
        let pre = component.pre.clone();
        let route = Arc::clone(&component.route);
        let id = Arc::clone(&request_id);
        let task = tokio::spawn(async move {
            let run = async {
                let proxy = pre
                    .instantiate_async(&mut store)
                    .await
                    .map_err(|e| GuestFailure::Instantiate(format!("{e:#}")))?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
                    .map_err(|e| classify_trap(e, store.data(), limits))
            };
            let result = match tokio::time::timeout_at(deadline.into(), run).await {
                Ok(result) => result,
                Err(_elapsed) => Err(GuestFailure::Deadline(limits.deadline)),
            };
            store.data().finish_logs();
            if let Err(failure) = &result {
                tracing::warn!(request_id = %id, route = %route, "{failure}");
            }
            result
        });
        // If the caller goes away (the client hung up), the guest is
        // stopped rather than left running for nobody.
        let mut task = AbortOnDrop(Some(task));

        match receiver.await {
            // The body streams from the guest's task: keep it alive exactly
            // as long as the body is being read.
            Ok(Ok(response)) => Ok(response.map(|body| {
                GuestBody {
                    inner: body,
                    _task: task,
                }
                .boxed_unsync()
            })),
            Ok(Err(code)) => Err(GuestFailure::ErrorCode(format!("{code:?}"))),
            // The guest's task ended without setting a response.
            Err(_) => match task.0.take().expect("task present").await {
                Ok(Err(failure)) => Err(failure),
                Ok(Ok(())) => Err(GuestFailure::NoResponse),
                Err(join) => Err(GuestFailure::Trap(format!("host task failed: {join}"))),
            },
        }
    }
}

/// Where the guest's response (or error) goes; `call` awaits the receiver.
pub type ResponseSender = oneshot::Sender<Result<hyper::Response<HyperOutgoingBody>, ErrorCode>>;

/// The two arguments of `wasi:http/incoming-handler.handle`, in the store.
pub type HandleArgs = (
    Resource<HostIncomingRequest>,
    Resource<HostResponseOutparam>,
);

/// Puts `request` into `store` as the guest's `incoming-request`, with the
/// `response-outparam` whose response arrives on `sender`. Fails, as a
/// trap, when the request has no authority (no absolute URI and no usable
/// `Host`).
pub fn incoming_request<B>(
    store: &mut Store<GuestState>,
    request: hyper::Request<B>,
    sender: ResponseSender,
) -> Result<HandleArgs, GuestFailure>
where
    B: Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let mut http = store.data_mut().http();
    let req = http.new_incoming_request(Scheme::Http, request);
    let out = http.new_response_outparam(sender);
    match (req, out) {
        (Ok(req), Ok(out)) => Ok((req, out)),
        (Err(e), _) | (_, Err(e)) => Err(GuestFailure::Trap(format!("{e:#}"))),
    }
}

/// Aborts the guest's task when dropped.
struct AbortOnDrop(Option<tokio::task::JoinHandle<Result<(), GuestFailure>>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// A guest's response body, tied to the task that produces it.
struct GuestBody {
    inner: HyperOutgoingBody,
    /// Dropping the body (response sent, or client gone) ends the task.
    _task: AbortOnDrop,
}

impl Body for GuestBody {
    type Data = bytes::Bytes;
    type Error = wasmtime_wasi_http::Error;

    #[allow(clippy::type_complexity)]
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

fn classify_trap(error: wasmtime::Error, state: &GuestState, limits: CallLimits) -> GuestFailure {
    if matches!(error.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
        return GuestFailure::Deadline(limits.deadline);
    }
    if state.limits.hit() {
        return GuestFailure::MemoryLimit(limits.memory);
    }
    GuestFailure::Trap(format!("{error:?}"))
}

/// Tells a component from a core module or a file that is not wasm at all,
/// so that the error can say which and how to fix it.
fn check_component_header(bytes: &[u8]) -> Result<()> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        bail!(
            "it is not a WebAssembly binary (it does not start with `\\0asm`); \
             build a component with `cargo build --target wasm32-wasip2`"
        );
    }
    match bytes[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(()),
        [0x01, 0x00, 0x00, 0x00] => bail!(
            "it is a core WebAssembly module, not a component; build it with \
             `cargo build --target wasm32-wasip2` (or wrap it with `wasm-tools component new`)"
        ),
        _ => bail!("it has an unknown WebAssembly version or layer"),
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on its own thread, so
/// that deadlines hold even when every tokio worker is busy. Dropping it
/// stops the thread.
struct EpochTicker {
    /// Dropping this sender wakes the thread and ends it.
    _stop: mpsc::Sender<()>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("burrow-epoch".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(EPOCH_TICK) {
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        Self { _stop: stop }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_told_apart() {
        let e = check_component_header(b"hello world")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a WebAssembly binary"), "{e}");
        let e = check_component_header(b"\0asm\x01\0\0\0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("core WebAssembly module"), "{e}");
        assert!(check_component_header(b"\0asm\x0d\0\x01\0").is_ok());
        assert!(check_component_header(b"\0as").is_err());
    }
}
