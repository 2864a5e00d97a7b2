//! `db/` is the guest's database capability: the `burrow:db/sql` import.
//!
//! Layout, one concern per file:
//! - `mod.rs`: the generated bindings and the wiring into a linker;
//! - `host.rs`: the implementation of the generated traits for one request;
//! - `pool.rs`: the client over mysql_async (pool, timeouts, errors);
//! - `values.rs`: MySQL values ↔ WIT values.
//!
//! Without a configured database every call answers `unavailable`, saying so.

mod host;
mod pool;
pub mod values;

pub use host::{DbState, Transaction};
pub use pool::{Db, connect_opts};

/// Host-side bindings for `wit/db.wit`'s `database` world.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "burrow:db/database",
        imports: { default: async | trappable },
        with: { "burrow:db/sql.transaction": super::Transaction },
    });
}

use wasmtime::component::{HasData, Linker};

/// Adds `burrow:db/sql` (and its `types`) to `linker`; `get` finds the
/// request's [`DbState`] in the store data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut DbState,
) -> anyhow::Result<()> {
    bindings::burrow::db::types::add_to_linker::<T, HasDb>(linker, get)?;
    bindings::burrow::db::sql::add_to_linker::<T, HasDb>(linker, get)?;
    Ok(())
}

struct HasDb;

impl HasData for HasDb {
    type Data<'a> = &'a mut DbState;
}
