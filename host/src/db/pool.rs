//! `pool.rs` is the client over the driver: one mysql_async pool for the
//! whole app, reached only at a literal address (the tunnel's local end by
//! default; never a Unix socket), with acquire and statement timeouts, size
//! limits on results, and server errors mapped to the WIT `error` variant.
//! It never reuses a connection in an unknown state: a connection whose
//! statement was cancelled, timed out or overflowed is killed server-side
//! and discarded, never returned to the pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Params, Pool, PoolConstraints, PoolOpts};

use super::bindings::burrow::db::types::{Error, ExecResult, QueryError, RowSet, Value};
use super::values::{ColumnInfo, describe, from_mysql, to_mysql};
use crate::config::DbConfig;

/// MySQL error codes with a meaning of their own.
const ER_NET_PACKET_TOO_LARGE: u16 = 1153;
const ER_QUERY_INTERRUPTED: u16 = 1317;
const ER_QUERY_TIMEOUT: u16 = 3024;
const ER_STATEMENT_TIMEOUT_MARIADB: u16 = 1969;

/// The app's database: one pool, its limits.
pub struct Db {
    /// The connection pool; cheap to clone, shared by every request.
    pool: Pool,
    /// Stops statements on connections that were abandoned.
    killer: Arc<Killer>,
    /// Limits and timeouts.
    config: DbConfig,
    /// Where the pool connects, for messages.
    target: String,
    /// Figures for `/_burrow/metrics`; `Guarded` holds the other half.
    stats: Arc<PoolStats>,
}

/// What the pool has done, for metrics.
#[derive(Default)]
pub struct PoolStats {
    /// Connections handed to requests and not yet returned.
    in_use: AtomicI64,
    /// Connections handed out since start-up.
    acquired: AtomicU64,
    /// Total time callers waited for them, in microseconds.
    wait_micros: AtomicU64,
    /// Callers that got none within the acquire timeout (or an error).
    failed: AtomicU64,
}

impl Db {
    /// Builds the pool (connections are opened on demand). `host` and
    /// `port` are the literal address to connect to.
    pub fn new(config: DbConfig, host: String, port: u16) -> Arc<Db> {
        let constraints = PoolConstraints::new(config.pool_min, config.pool_max)
            .unwrap_or_else(|| PoolConstraints::new(0, config.pool_max.max(1)).expect("0 <= max"));
        let opts = connect_opts(&config, &host, port).pool_opts(
            PoolOpts::default()
                .with_constraints(constraints)
                // Resetting on every return costs a reset and often a fresh
                // connection through the bastion per request (measured 45-95
                // ms against 1-3 ms); a connection whose session a statement
                // may have changed is closed instead (see `changes_session`).
                .with_reset_connection(false)
                .with_inactive_connection_ttl(Duration::from_secs(60)),
        );
        let killer = Arc::new(Killer {
            opts: Opts::from(connect_opts(&config, &host, port)),
            slots: tokio::sync::Semaphore::new(KILLERS),
        });
        Arc::new(Db {
            pool: Pool::new(Opts::from(opts)),
            killer,
            target: format!("{host}:{port}"),
            config,
            stats: Arc::default(),
        })
    }

    /// The default statement timeout (routes may override it).
    pub fn statement_timeout(&self) -> Duration {
        self.config.statement_timeout
    }

    /// A connection, within the acquire timeout.
    pub async fn conn(&self) -> Result<Guarded, Error> {
        let started = Instant::now();
        let got = tokio::time::timeout(self.config.acquire_timeout, self.pool.get_conn()).await;
        let waited = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.stats.wait_micros.fetch_add(waited, Ordering::Relaxed);
        if !matches!(got, Ok(Ok(_))) {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
        }
        match got {
            Ok(Ok(conn)) => {
                self.stats.acquired.fetch_add(1, Ordering::Relaxed);
                self.stats.in_use.fetch_add(1, Ordering::Relaxed);
                Ok(Guarded {
                    conn: Some(conn),
                    killer: Arc::clone(&self.killer),
                    stats: Arc::clone(&self.stats),
                    clean: true,
                    session_changed: false,
                })
            }
            Ok(Err(e)) => Err(map_error(e, &self.target)),
            Err(_) => Err(Error::Unavailable(format!(
                "no database connection within {} ms (pool of {} busy, or the database at {} is unreachable)",
                started.elapsed().as_millis(),
                self.config.pool_max,
                self.target
            ))),
        }
    }

    /// Appends the pool's metrics to `out`.
    pub fn render_metrics(&self, out: &mut crate::metrics::Exposition) {
        let s = &self.stats;
        out.gauge(
            "burrow_db_pool_max",
            "Connections the pool may open (DB_POOL_MAX).",
            self.config.pool_max as f64,
        );
        out.gauge(
            "burrow_db_connections_in_use",
            "Pooled connections held by requests now.",
            s.in_use.load(Ordering::Relaxed) as f64,
        );
        out.counter(
            "burrow_db_acquired_total",
            "Connections handed to requests.",
            s.acquired.load(Ordering::Relaxed) as f64,
        );
        out.counter(
            "burrow_db_acquire_wait_seconds_total",
            "Time requests spent waiting for a connection.",
            s.wait_micros.load(Ordering::Relaxed) as f64 / 1e6,
        );
        out.counter(
            "burrow_db_acquire_failures_total",
            "Requests that got no connection (acquire timeout or database down).",
            s.failed.load(Ordering::Relaxed) as f64,
        );
    }

    /// `SELECT 1` through a pooled connection: the readiness probe.
    pub async fn ping(&self) -> Result<(), Error> {
        let mut conn = self.conn().await?;
        self.query(
            &mut conn,
            "SELECT 1",
            Vec::new(),
            self.config.statement_timeout,
        )
        .await
        .map(|_| ())
    }

    /// Runs a row-returning statement on `conn`.
    pub async fn query(
        &self,
        conn: &mut Guarded,
        statement: &str,
        params: Vec<Value>,
        timeout: Duration,
    ) -> Result<RowSet, Error> {
        let params = convert_params(params)?;
        conn.session_changed |= changes_session(statement);
        let (max_rows, max_bytes) = (self.config.max_rows, self.config.max_result_bytes);
        let target = self.target.clone();
        conn.run(timeout, async move |c: &mut Conn| {
            let limits = (max_rows, max_bytes, target.as_str());
            if params.is_empty() {
                let result = c
                    .query_iter(statement)
                    .await
                    .map_err(|e| (map_error(e, &target), false))?;
                read_rows(result, limits).await
            } else {
                let result = c
                    .exec_iter(statement, Params::Positional(params))
                    .await
                    .map_err(|e| (map_error(e, &target), false))?;
                read_rows(result, limits).await
            }
        })
        .await
    }

    /// Runs a data-changing statement on `conn`.
    pub async fn execute(
        &self,
        conn: &mut Guarded,
        statement: &str,
        params: Vec<Value>,
        timeout: Duration,
    ) -> Result<ExecResult, Error> {
        let params = convert_params(params)?;
        conn.session_changed |= changes_session(statement);
        let target = self.target.clone();
        conn.run(timeout, async move |c: &mut Conn| {
            if params.is_empty() {
                c.query_drop(statement).await
            } else {
                c.exec_drop(statement, Params::Positional(params)).await
            }
            .map_err(|e| (map_error(e, &target), false))?;
            Ok(ExecResult {
                rows_affected: c.affected_rows(),
                last_insert_id: c.last_insert_id().filter(|id| *id != 0),
            })
        })
        .await
    }
}

/// How every connection is opened, pooled or not.
pub fn connect_opts(config: &DbConfig, host: &str, port: u16) -> OptsBuilder {
    OptsBuilder::default()
        .ip_or_hostname(host.to_string())
        .tcp_port(port)
        .user(Some(config.user.clone()))
        .pass(config.password.as_ref().map(|p| p.expose().to_string()))
        .db_name(Some(config.name.clone()))
        // Through the tunnel only: the server's own socket path must never
        // be tried (it is on another machine, or worse, a local one).
        .prefer_socket(false)
        .tcp_nodelay(true)
        .tcp_keepalive(Some(Duration::from_secs(30)))
        // `setup` runs after every connect and every reset.
        .setup(vec![
            "SET time_zone = '+00:00'".to_string(),
            "SET NAMES utf8mb4".to_string(),
        ])
}

/// Reads a whole result within the row and byte limits. The error's flag
/// says whether the connection is left mid-result (and must be discarded).
async fn read_rows<P: mysql_async::prelude::Protocol>(
    mut result: mysql_async::QueryResult<'_, 'static, P>,
    (max_rows, max_bytes, target): (usize, usize, &str),
) -> Result<RowSet, (Error, bool)> {
    let described: Vec<_> = result.columns_ref().iter().map(describe).collect();
    let (columns, infos): (Vec<_>, Vec<ColumnInfo>) = described.into_iter().unzip();
    let mut rows = Vec::new();
    let mut bytes = 0usize;
    while let Some(row) = result
        .next()
        .await
        .map_err(|e| (map_error(e, target), true))?
    {
        if rows.len() >= max_rows {
            let message = format!("the result has more than {max_rows} rows; add a LIMIT");
            return Err((Error::TooLarge(message), true));
        }
        let mut out = Vec::with_capacity(infos.len());
        for (value, info) in row.unwrap().into_iter().zip(&infos) {
            bytes += approx_size(&value);
            let value = from_mysql(value, info)
                .map_err(|m| (Error::Unavailable(format!("unreadable value: {m}")), true))?;
            out.push(value);
        }
        if bytes > max_bytes {
            let message = format!(
                "the result is larger than {max_bytes} bytes; select fewer rows or columns"
            );
            return Err((Error::TooLarge(message), true));
        }
        rows.push(out);
    }
    // Any further result sets (multi-statement text) are read and dropped.
    result
        .drop_result()
        .await
        .map_err(|e| (map_error(e, target), true))?;
    Ok(RowSet { columns, rows })
}

/// A pooled connection that is returned to the pool only when it is known
/// to be clean; otherwise (cancelled mid-statement, timed out, result cut
/// short) it is killed on the server and discarded.
pub struct Guarded {
    conn: Option<Conn>,
    /// Used when the connection is abandoned mid-statement.
    killer: Arc<Killer>,
    /// Counts the connection in use until it is dropped.
    stats: Arc<PoolStats>,
    /// False while a statement is in flight or after one was abandoned.
    clean: bool,
    /// A statement may have changed session state (variables, an open
    /// transaction, locks): the connection must not serve another request.
    session_changed: bool,
}

impl Guarded {
    /// Runs `op` within `timeout`. `op`'s error carries whether the
    /// connection is left dirty.
    async fn run<T>(
        &mut self,
        timeout: Duration,
        op: impl AsyncFnOnce(&mut Conn) -> Result<T, (Error, bool)>,
    ) -> Result<T, Error> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(Error::Unavailable("the connection was discarded".into()));
        };
        self.clean = false;
        match tokio::time::timeout(timeout, op(conn)).await {
            Ok(Ok(value)) => {
                self.clean = true;
                Ok(value)
            }
            Ok(Err((error, dirty))) => {
                // A server error leaves the connection usable; an I/O error or
                // a cut-short result does not.
                self.clean = !dirty && matches!(error, Error::Query(_) | Error::BadParameter(_));
                Err(error)
            }
            Err(_) => Err(Error::Timeout(format!(
                "the statement ran longer than {} ms and was cancelled",
                timeout.as_millis()
            ))),
        }
    }

    /// Marks the connection as not reusable: it is discarded on drop.
    pub fn abandon(&mut self) {
        self.clean = false;
    }

    /// The transaction API's own statements (isolation, START, COMMIT,
    /// ROLLBACK) leave a known session behind once the transaction ended.
    pub fn session_restored(&mut self) {
        self.session_changed = false;
    }

    /// Whether the connection can still be used by this request.
    pub fn is_clean(&self) -> bool {
        self.clean && self.conn.is_some()
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        self.stats.in_use.fetch_sub(1, Ordering::Relaxed);
        if self.clean && !self.session_changed {
            // Back to the pool, as it was.
            drop(conn);
            return;
        }
        if self.clean {
            // Its session may differ from a fresh one's: close it.
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = conn.disconnect().await;
                });
            }
            return;
        }
        // Unknown state: close it, and stop whatever it still runs on the
        // server (the server may not notice the disconnect until it writes).
        let killer = Arc::clone(&self.killer);
        let id = conn.id();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    let _ = conn.disconnect().await;
                    killer.kill_query(id).await;
                });
            }
            Err(_) => drop(conn),
        }
        tracing::debug!(
            connection_id = id,
            "discarded a database connection in an unknown state"
        );
    }
}

/// Whether `statement` may leave session state behind: variables, an open
/// transaction outside the transaction API, locks, temporary tables, the
/// default database. Such a connection is closed, not pooled, afterwards.
/// Transactions begun with `begin` are tracked by their resource instead.
pub fn changes_session(statement: &str) -> bool {
    let words: Vec<String> = statement
        .split_whitespace()
        .take(2)
        .map(|w| w.trim_start_matches('(').to_ascii_uppercase())
        .collect();
    let first = words.first().map(String::as_str).unwrap_or("");
    let second = words.get(1).map(String::as_str).unwrap_or("");
    matches!(
        first,
        "SET"
            | "BEGIN"
            | "START"
            | "LOCK"
            | "UNLOCK"
            | "USE"
            | "XA"
            | "SAVEPOINT"
            | "HANDLER"
            | "PREPARE"
    ) || (first == "CREATE" && second == "TEMPORARY")
        || statement.contains(';')
}

/// Kill requests go through connections of their own, never the pool's:
/// a pool of one must not wait behind its own clean-up.
struct Killer {
    opts: Opts,
    /// Kills in flight at once.
    slots: tokio::sync::Semaphore,
}

/// Kill connections open at once.
const KILLERS: usize = 2;

impl Killer {
    async fn kill_query(&self, id: u32) {
        let Ok(_slot) = self.slots.acquire().await else {
            return;
        };
        let attempt = async {
            let mut conn = Conn::new(self.opts.clone()).await?;
            // "Unknown thread id" just means it had already ended.
            let _ = conn.query_drop(format!("KILL QUERY {id}")).await;
            conn.disconnect().await
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), attempt).await;
    }
}

fn convert_params(params: Vec<Value>) -> Result<Vec<mysql_async::Value>, Error> {
    params
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            to_mysql(v).map_err(|m| Error::BadParameter(format!("parameter {}: {m}", i + 1)))
        })
        .collect()
}

fn approx_size(value: &mysql_async::Value) -> usize {
    match value {
        mysql_async::Value::Bytes(b) => b.len() + 8,
        _ => 16,
    }
}

/// Whose fault, in the guest's terms.
fn map_error(e: mysql_async::Error, target: &str) -> Error {
    use mysql_async::{DriverError, Error as E};
    match e {
        E::Server(s) => match s.code {
            ER_NET_PACKET_TOO_LARGE => {
                Error::TooLarge(format!("{} (max_allowed_packet)", s.message))
            }
            ER_QUERY_TIMEOUT | ER_STATEMENT_TIMEOUT_MARIADB | ER_QUERY_INTERRUPTED => {
                Error::Timeout(s.message)
            }
            code => Error::Query(QueryError {
                code,
                sqlstate: s.state,
                message: s.message,
            }),
        },
        E::Driver(DriverError::StmtParamsMismatch { required, supplied }) => {
            Error::BadParameter(format!(
                "the statement has {required} `?` placeholder(s) but {supplied} parameter(s) were given"
            ))
        }
        E::Driver(DriverError::PacketTooLarge) => {
            Error::TooLarge("a value is larger than the server's max_allowed_packet".into())
        }
        E::Driver(d) => Error::Unavailable(format!("database at {target}: {d}")),
        E::Io(io) => Error::Unavailable(format!("database at {target} unreachable: {io}")),
        other => Error::Unavailable(format!("database at {target}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::changes_session;

    #[test]
    fn session_changing_statements_are_recognised() {
        for sql in [
            "SET @x = 1",
            "set time_zone = '+01:00'",
            "START TRANSACTION",
            "begin",
            "LOCK TABLES t WRITE",
            "CREATE TEMPORARY TABLE t (id INT)",
            "USE other",
            "SELECT 1; SET @x = 2",
        ] {
            assert!(changes_session(sql), "{sql}");
        }
        for sql in [
            "SELECT * FROM t",
            "INSERT INTO t VALUES (?)",
            "UPDATE t SET x = 1",
            "CREATE TABLE t (id INT)",
            "  select 1",
        ] {
            assert!(!changes_session(sql), "{sql}");
        }
    }
}
