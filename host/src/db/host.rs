//! `host.rs` implements the generated `burrow:db` traits for one request.
//! It owns the request's transactions (connections reserved for them, in a
//! resource table); the pool and the tunnel below it are not its business.
//! Everything still open when the request ends is rolled back.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Resource, ResourceTable};

use super::bindings::burrow::db::{sql, types};
use super::pool::{Db, Guarded};
use types::{Error, ExecResult, Isolation, RowSet, Value};

/// Time a rollback of an abandoned transaction may take.
const ROLLBACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Per-request database state, dropped with the request's `Store`.
pub struct DbState {
    /// The app's pool; `None` when no database is configured.
    db: Option<Arc<Db>>,
    /// This route's statement timeout.
    statement_timeout: Duration,
    /// Open transactions, by resource handle.
    table: ResourceTable,
    /// The connection this request's statements outside transactions use:
    /// taken from the pool at the first statement and returned when the
    /// request ends, as Django keeps one connection per request. Saves a
    /// pool round trip (and a reset) per statement.
    conn: Option<Guarded>,
}

/// A guest's open transaction: the connection reserved for it.
pub struct Transaction {
    conn: Guarded,
    /// True until COMMIT or ROLLBACK succeeded.
    open: bool,
}

impl DbState {
    pub fn new(db: Option<Arc<Db>>, statement_timeout: Option<Duration>) -> Self {
        let statement_timeout = statement_timeout
            .or_else(|| db.as_ref().map(|d| d.statement_timeout()))
            .unwrap_or(crate::config::DEFAULT_STATEMENT_TIMEOUT);
        Self {
            db,
            statement_timeout,
            table: ResourceTable::new(),
            conn: None,
        }
    }

    /// The request's connection, acquiring one if needed.
    async fn conn(&mut self, db: &Db) -> Result<Guarded, Error> {
        match self.conn.take() {
            Some(conn) if conn.is_clean() => Ok(conn),
            _ => db.conn().await,
        }
    }

    /// The pool and a connection for one statement (the request's own,
    /// if it still has a clean one); hand the connection back to `keep`.
    async fn checkout(&mut self) -> Result<(Arc<Db>, Guarded), Error> {
        let db = self.db()?;
        let conn = self.conn(&db).await?;
        Ok((db, conn))
    }

    /// Keeps `conn` for the next statement if it is still clean.
    fn keep(&mut self, conn: Guarded) {
        if conn.is_clean() {
            self.conn = Some(conn);
        }
    }

    fn db(&self) -> Result<Arc<Db>, Error> {
        self.db.clone().ok_or_else(|| {
            Error::Unavailable(
                "no database is configured for this server: set DB_NAME, DB_USER and DB_PASSWORD \
                 (and SSH_HOST/SSH_FORWARD for the tunnel)"
                    .to_string(),
            )
        })
    }

    fn tx(&mut self, tx: &Resource<Transaction>) -> wasmtime::Result<&mut Transaction> {
        Ok(self.table.get_mut(tx)?)
    }
}

impl types::Host for DbState {}

impl sql::Host for DbState {
    async fn query(
        &mut self,
        statement: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<RowSet, Error>> {
        let (db, mut conn) = match self.checkout().await {
            Ok(checked_out) => checked_out,
            Err(e) => return Ok(Err(e)),
        };
        let result = db
            .query(&mut conn, &statement, params, self.statement_timeout)
            .await;
        self.keep(conn);
        Ok(result)
    }

    async fn execute(
        &mut self,
        statement: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<ExecResult, Error>> {
        let (db, mut conn) = match self.checkout().await {
            Ok(checked_out) => checked_out,
            Err(e) => return Ok(Err(e)),
        };
        let result = db
            .execute(&mut conn, &statement, params, self.statement_timeout)
            .await;
        self.keep(conn);
        Ok(result)
    }

    async fn begin(
        &mut self,
        isolation: Option<Isolation>,
    ) -> wasmtime::Result<Result<Resource<Transaction>, Error>> {
        // The request's own connection if it has one: a pool of one must
        // not deadlock on a transaction begun after a plain query.
        let (db, mut conn) = match self.checkout().await {
            Ok(checked_out) => checked_out,
            Err(e) => return Ok(Err(e)),
        };
        if let Some(level) = isolation {
            let level = match level {
                Isolation::ReadUncommitted => "READ UNCOMMITTED",
                Isolation::ReadCommitted => "READ COMMITTED",
                Isolation::RepeatableRead => "REPEATABLE READ",
                Isolation::Serializable => "SERIALIZABLE",
            };
            let sql = format!("SET TRANSACTION ISOLATION LEVEL {level}");
            if let Err(e) = db
                .execute(&mut conn, &sql, Vec::new(), self.statement_timeout)
                .await
            {
                return Ok(Err(e));
            }
        }
        if let Err(e) = db
            .execute(
                &mut conn,
                "START TRANSACTION",
                Vec::new(),
                self.statement_timeout,
            )
            .await
        {
            return Ok(Err(e));
        }
        Ok(Ok(self.table.push(Transaction { conn, open: true })?))
    }
}

impl sql::HostTransaction for DbState {
    async fn query(
        &mut self,
        tx: Resource<Transaction>,
        statement: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<RowSet, Error>> {
        let (db, timeout) = match self.db() {
            Ok(db) => (db, self.statement_timeout),
            Err(e) => return Ok(Err(e)),
        };
        let tx = self.tx(&tx)?;
        Ok(db.query(&mut tx.conn, &statement, params, timeout).await)
    }

    async fn execute(
        &mut self,
        tx: Resource<Transaction>,
        statement: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<ExecResult, Error>> {
        let (db, timeout) = match self.db() {
            Ok(db) => (db, self.statement_timeout),
            Err(e) => return Ok(Err(e)),
        };
        let tx = self.tx(&tx)?;
        Ok(db.execute(&mut tx.conn, &statement, params, timeout).await)
    }

    async fn commit(&mut self, tx: Resource<Transaction>) -> wasmtime::Result<Result<(), Error>> {
        let mut tx = self.table.delete(tx)?;
        let db = match self.db() {
            Ok(db) => db,
            Err(e) => return Ok(Err(e)),
        };
        let result = db
            .execute(&mut tx.conn, "COMMIT", Vec::new(), self.statement_timeout)
            .await
            .map(|_| ());
        tx.open = result.is_err();
        if result.is_ok() {
            tx.conn.session_restored();
        }
        Ok(result)
    }

    async fn rollback(&mut self, tx: Resource<Transaction>) -> wasmtime::Result<Result<(), Error>> {
        let tx = self.table.delete(tx)?;
        Ok(rollback(self.db.clone(), tx).await)
    }

    async fn drop(&mut self, tx: Resource<Transaction>) -> wasmtime::Result<()> {
        let tx = self.table.delete(tx)?;
        let _ = rollback(self.db.clone(), tx).await;
        Ok(())
    }
}

async fn rollback(db: Option<Arc<Db>>, mut tx: Transaction) -> Result<(), Error> {
    let Some(db) = db else { return Ok(()) };
    if !tx.conn.is_clean() {
        // Its statement was abandoned: discarding the connection (which the
        // guard does on drop) makes the server roll back.
        return Ok(());
    }
    let result = db
        .execute(&mut tx.conn, "ROLLBACK", Vec::new(), ROLLBACK_TIMEOUT)
        .await
        .map(|_| ());
    tx.open = result.is_err();
    if result.is_ok() {
        tx.conn.session_restored();
    }
    result
}

impl Drop for Transaction {
    fn drop(&mut self) {
        // Reached when the request ends (or the guest trapped) with the
        // transaction still open. The connection must not go back to the
        // pool mid-transaction: mark it dirty so the guard discards it and
        // the server rolls the transaction back.
        if self.open {
            self.conn.abandon();
        }
    }
}
