//! `state.rs` is what one request's `Store` holds: the WASI context (with
//! nothing of the host granted), the wasi:http tables, the settings view,
//! the database state and the memory cap. Built by `Runtime::new_store`,
//! dropped with the store at the end of the request, which releases
//! everything the guest opened.

use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::guest_log::{GuestLog, Stream};
use crate::db::DbState;

/// One request's store data.
pub struct GuestState {
    /// WASI p2: clocks and randomness only; no files, env, args or sockets.
    wasi: WasiCtx,
    /// wasi:http limits for this request.
    http: WasiHttpCtx,
    /// Resources (requests, bodies, streams) the guest holds.
    table: ResourceTable,
    /// Refuses outbound HTTP.
    hooks: DenyOutbound,
    /// Settings shared by all requests; `wasi:config/store` reads them.
    settings: Arc<WasiConfigVariables>,
    /// The memory cap, consulted by wasmtime on every `memory.grow`.
    pub(super) limits: MemoryCap,
    /// The request's database handles.
    pub(crate) db: DbState,
    /// Guest stdout and stderr, flushed when the call ends.
    logs: [GuestLog; 2],
}

impl GuestState {
    pub(super) fn new(
        request_id: Arc<str>,
        route: Arc<str>,
        memory_limit: u64,
        settings: Arc<WasiConfigVariables>,
        db: DbState,
    ) -> Self {
        let stdout = GuestLog::new(Arc::clone(&request_id), Arc::clone(&route), Stream::Stdout);
        let stderr = GuestLog::new(request_id, route, Stream::Stderr);
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: DenyOutbound,
            settings,
            limits: MemoryCap::new(memory_limit),
            db,
            logs: [stdout, stderr],
        }
    }

    pub(super) fn config(&mut self) -> WasiConfig<'_> {
        WasiConfig::from(&*self.settings)
    }

    pub(super) fn finish_logs(&self) {
        for log in &self.logs {
            log.finish();
        }
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for GuestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Guests get no outbound HTTP: every request is refused with
/// `HTTP-request-denied` and logged.
struct DenyOutbound;

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<wasmtime_wasi_http::WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<(), wasmtime_wasi_http::Error>> + Send>,
)>;

impl WasiHttpHooks for DenyOutbound {
    // A guest may set any response header: hop-by-hop ones are dropped by
    // the server with a log line, so a guest that sets `Connection` still
    // gets its response out instead of failing on the header.
    fn is_forbidden_header(&mut self, _name: &http::HeaderName) -> bool {
        false
    }

    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<
            dyn Future<Output = wasmtime_wasi_http::Result<(), wasmtime_wasi_http::Error>> + Send,
        >,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        tracing::warn!(uri = %request.uri(), "guest attempted outbound HTTP; denied");
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

/// Caps each linear memory of one instance and remembers whether the guest
/// hit the cap, so that the trap that follows is reported as what it is.
pub(super) struct MemoryCap {
    /// Bytes one memory may grow to.
    limit: usize,
    /// Set when a `memory.grow` was refused.
    hit: bool,
}

/// Tables a guest may grow to; Rust guests use a handful of entries.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl MemoryCap {
    fn new(limit: u64) -> Self {
        Self {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            hit: false,
        }
    }

    pub(super) fn hit(&self) -> bool {
        self.hit
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
