//! `host.rs` implements the generated `burrow:db` traits for one request.
//! It owns the request's transaction handles (in the resource table); the
//! pool and the tunnel below it are not its business.

use wasmtime::component::{Resource, ResourceTable};

use super::bindings::burrow::db::{sql, types};
use types::{Error, ExecResult, Isolation, RowSet, Value};

/// Per-request database state, dropped with the request's `Store`: anything
/// still open in it is rolled back then.
pub struct DbState {
    /// Transactions the guest holds, by resource handle.
    table: ResourceTable,
}

impl DbState {
    pub fn new() -> Self {
        Self {
            table: ResourceTable::new(),
        }
    }
}

impl Default for DbState {
    fn default() -> Self {
        Self::new()
    }
}

/// A guest's open transaction.
pub struct Transaction {
    _private: (),
}

/// The answer while no database is configured.
fn not_configured() -> Error {
    Error::Unavailable(
        "no database is configured for this server: set DB_NAME, DB_USER, DB_PASSWORD \
         (and DB_HOST/DB_PORT or an SSH tunnel) to enable it"
            .to_string(),
    )
}

impl types::Host for DbState {}

impl sql::Host for DbState {
    async fn query(
        &mut self,
        _statement: String,
        _params: Vec<Value>,
    ) -> wasmtime::Result<Result<RowSet, Error>> {
        Ok(Err(not_configured()))
    }

    async fn execute(
        &mut self,
        _statement: String,
        _params: Vec<Value>,
    ) -> wasmtime::Result<Result<ExecResult, Error>> {
        Ok(Err(not_configured()))
    }

    async fn begin(
        &mut self,
        _isolation: Option<Isolation>,
    ) -> wasmtime::Result<Result<Resource<Transaction>, Error>> {
        Ok(Err(not_configured()))
    }
}

impl sql::HostTransaction for DbState {
    async fn query(
        &mut self,
        _tx: Resource<Transaction>,
        _statement: String,
        _params: Vec<Value>,
    ) -> wasmtime::Result<Result<RowSet, Error>> {
        Ok(Err(not_configured()))
    }

    async fn execute(
        &mut self,
        _tx: Resource<Transaction>,
        _statement: String,
        _params: Vec<Value>,
    ) -> wasmtime::Result<Result<ExecResult, Error>> {
        Ok(Err(not_configured()))
    }

    async fn commit(&mut self, tx: Resource<Transaction>) -> wasmtime::Result<Result<(), Error>> {
        self.table.delete(tx)?;
        Ok(Err(not_configured()))
    }

    async fn rollback(&mut self, tx: Resource<Transaction>) -> wasmtime::Result<Result<(), Error>> {
        self.table.delete(tx)?;
        Ok(Err(not_configured()))
    }

    async fn drop(&mut self, tx: Resource<Transaction>) -> wasmtime::Result<()> {
        self.table.delete(tx)?;
        Ok(())
    }
}
