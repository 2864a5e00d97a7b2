//! Typed database access over `burrow:db/sql`: parameters from Rust
//! values, rows read by column name into Rust types, and transactions as a
//! closure.
//!
//! ```no_run
//! use burrow_sdk::db::{self, Decimal};
//!
//! let rows = db::query(
//!     "SELECT id, name, price FROM api_item WHERE owner_id = ? AND price > ?",
//!     &[&42i64, &Decimal::new("9.99")],
//! )?;
//! for row in rows.iter() {
//!     let id: i64 = row.get("id")?;
//!     let name: String = row.get("name")?;
//!     let price: Decimal = row.get("price")?;
//! }
//! let id = db::transaction(|tx| {
//!     let done = tx.execute("INSERT INTO api_item (name) VALUES (?)", &[&"pen"])?;
//!     Ok(done.last_insert_id)
//! })?;
//! # Ok::<(), burrow_sdk::db::DbError>(())
//! ```

use std::fmt;

use crate::bindings::burrow::db::sql;
pub use crate::bindings::burrow::db::types::{
    Column, Date, Datetime, Error as WitError, ExecResult, Isolation, Time, Value,
};

/// Why a database call failed, as the guest handles it.
#[derive(Debug, Clone, PartialEq)]
pub enum DbError {
    /// What the host reported (unavailable, timeout, query, …).
    Host(WitError),
    /// A column is missing or holds a value of another type.
    Decode(String),
}

impl DbError {
    /// MySQL's error number, for server errors (1062: duplicate key).
    pub fn mysql_code(&self) -> Option<u16> {
        match self {
            DbError::Host(WitError::Query(q)) => Some(q.code),
            _ => None,
        }
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Host(WitError::Unavailable(m)) => write!(f, "database unavailable: {m}"),
            DbError::Host(WitError::Timeout(m)) => write!(f, "database timeout: {m}"),
            DbError::Host(WitError::Query(q)) => {
                write!(f, "MySQL error {} ({}): {}", q.code, q.sqlstate, q.message)
            }
            DbError::Host(WitError::BadParameter(m)) => write!(f, "bad parameter: {m}"),
            DbError::Host(WitError::TooLarge(m)) => write!(f, "result too large: {m}"),
            DbError::Decode(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for DbError {}

impl From<WitError> for DbError {
    fn from(e: WitError) -> Self {
        DbError::Host(e)
    }
}

/// A DECIMAL as its exact text ("12.50"); never a float.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal(pub String);

impl Decimal {
    pub fn new(text: impl Into<String>) -> Self {
        Decimal(text.into())
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// JSON stored in a JSON column (sent and read as its text).
#[derive(Debug, Clone, PartialEq)]
pub struct Json(pub String);

/// A Rust value usable as a statement parameter.
pub trait ToParam {
    fn to_param(&self) -> Value;
}

macro_rules! signed {
    ($($t:ty),*) => {$(impl ToParam for $t { fn to_param(&self) -> Value { Value::Int(i64::from(*self)) } })*};
}
macro_rules! unsigned {
    ($($t:ty),*) => {$(impl ToParam for $t { fn to_param(&self) -> Value { Value::Uint(u64::from(*self)) } })*};
}
signed!(i8, i16, i32, i64);
unsigned!(u8, u16, u32, u64);

impl ToParam for bool {
    fn to_param(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}
impl ToParam for f64 {
    fn to_param(&self) -> Value {
        Value::Double(*self)
    }
}
impl ToParam for str {
    fn to_param(&self) -> Value {
        Value::Text(self.to_string())
    }
}
impl ToParam for &str {
    fn to_param(&self) -> Value {
        Value::Text(self.to_string())
    }
}
impl ToParam for String {
    fn to_param(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl ToParam for Vec<u8> {
    fn to_param(&self) -> Value {
        Value::Bytes(self.clone())
    }
}
impl ToParam for Decimal {
    fn to_param(&self) -> Value {
        Value::Decimal(self.0.clone())
    }
}
impl ToParam for Json {
    fn to_param(&self) -> Value {
        Value::Json(self.0.clone())
    }
}
impl ToParam for Date {
    fn to_param(&self) -> Value {
        Value::Date(*self)
    }
}
impl ToParam for Datetime {
    fn to_param(&self) -> Value {
        Value::Datetime(*self)
    }
}
impl ToParam for Time {
    fn to_param(&self) -> Value {
        Value::Time(*self)
    }
}
impl ToParam for Value {
    fn to_param(&self) -> Value {
        self.clone()
    }
}
impl<T: ToParam> ToParam for Option<T> {
    fn to_param(&self) -> Value {
        match self {
            Some(v) => v.to_param(),
            None => Value::Null,
        }
    }
}

/// A Rust type a column value can be read into.
pub trait FromValue: Sized {
    fn from_value(value: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Int(i) => Some(*i),
            Value::Uint(u) => i64::try_from(*u).ok(),
            Value::Bit(b) => i64::try_from(*b).ok(),
            _ => None,
        }
    }
}
impl FromValue for u64 {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Uint(u) | Value::Bit(u) => Some(*u),
            Value::Int(i) => u64::try_from(*i).ok(),
            _ => None,
        }
    }
}
impl FromValue for i32 {
    fn from_value(v: &Value) -> Option<Self> {
        i64::from_value(v).and_then(|i| i32::try_from(i).ok())
    }
}
impl FromValue for u32 {
    fn from_value(v: &Value) -> Option<Self> {
        u64::from_value(v).and_then(|i| u32::try_from(i).ok())
    }
}
impl FromValue for bool {
    fn from_value(v: &Value) -> Option<Self> {
        i64::from_value(v).map(|i| i != 0)
    }
}
impl FromValue for f64 {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Double(d) => Some(*d),
            Value::Float(f) => Some(f64::from(*f)),
            _ => None,
        }
    }
}
impl FromValue for String {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Text(s) | Value::Json(s) | Value::Decimal(s) => Some(s.clone()),
            _ => None,
        }
    }
}
impl FromValue for Decimal {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Decimal(s) => Some(Decimal(s.clone())),
            _ => None,
        }
    }
}
impl FromValue for Json {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            // MariaDB stores JSON as LONGTEXT: both arrive here.
            Value::Json(s) | Value::Text(s) => Some(Json(s.clone())),
            _ => None,
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Bytes(b) => Some(b.clone()),
            Value::Text(s) => Some(s.clone().into_bytes()),
            _ => None,
        }
    }
}
impl FromValue for Date {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Date(d) => Some(*d),
            _ => None,
        }
    }
}
impl FromValue for Datetime {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Datetime(d) | Value::Timestamp(d) => Some(*d),
            _ => None,
        }
    }
}
impl FromValue for Time {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Time(t) => Some(*t),
            _ => None,
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Null => Some(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// A query's result: its columns and rows.
#[derive(Debug, Clone)]
pub struct Rows {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Value>>,
}

/// One row, read by column name.
pub struct Row<'a> {
    columns: &'a [Column],
    values: &'a [Value],
}

impl Rows {
    pub fn iter(&self) -> impl Iterator<Item = Row<'_>> {
        self.rows.iter().map(|values| Row {
            columns: &self.columns,
            values,
        })
    }

    pub fn first(&self) -> Option<Row<'_>> {
        self.iter().next()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Every row as a `T`.
    pub fn to_vec<T: FromRow>(&self) -> Result<Vec<T>, DbError> {
        self.iter().map(|row| T::from_row(&row)).collect()
    }
}

impl Row<'_> {
    /// The value of column `name` as a `T`; `Option<T>` for nullable ones.
    pub fn get<T: FromValue>(&self, name: &str) -> Result<T, DbError> {
        let index = self
            .columns
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| DbError::Decode(format!("no column `{name}` in the result")))?;
        let value = &self.values[index];
        T::from_value(value).ok_or_else(|| {
            DbError::Decode(format!(
                "column `{name}` holds {value:?}, not a {}",
                std::any::type_name::<T>()
            ))
        })
    }
}

/// A type built from one row, e.g. a model struct.
pub trait FromRow: Sized {
    fn from_row(row: &Row<'_>) -> Result<Self, DbError>;
}

fn to_values(params: &[&dyn ToParam]) -> Vec<Value> {
    params.iter().map(|p| p.to_param()).collect()
}

/// Runs a SELECT (or anything returning rows) with `?` parameters.
pub fn query(statement: &str, params: &[&dyn ToParam]) -> Result<Rows, DbError> {
    let set = sql::query(statement, &to_values(params))?;
    Ok(Rows {
        columns: set.columns,
        rows: set.rows,
    })
}

/// Runs an INSERT, UPDATE, DELETE or DDL statement (autocommit).
pub fn execute(statement: &str, params: &[&dyn ToParam]) -> Result<ExecResult, DbError> {
    Ok(sql::execute(statement, &to_values(params))?)
}

/// An open transaction, handed to the closure of [`transaction`].
pub struct Tx {
    inner: Option<sql::Transaction>,
}

impl Tx {
    fn inner(&self) -> &sql::Transaction {
        // Always present until `transaction` commits or rolls back.
        self.inner.as_ref().expect("transaction in use")
    }

    pub fn query(&self, statement: &str, params: &[&dyn ToParam]) -> Result<Rows, DbError> {
        let set = self.inner().query(statement, &to_values(params))?;
        Ok(Rows {
            columns: set.columns,
            rows: set.rows,
        })
    }

    pub fn execute(&self, statement: &str, params: &[&dyn ToParam]) -> Result<ExecResult, DbError> {
        Ok(self.inner().execute(statement, &to_values(params))?)
    }
}

/// Runs `work` in a transaction: commits when it returns `Ok`, rolls back
/// when it returns `Err`. A panic traps the guest, and the host rolls the
/// transaction back.
pub fn transaction<T, E: From<DbError>>(work: impl FnOnce(&Tx) -> Result<T, E>) -> Result<T, E> {
    transaction_with(None, work)
}

/// [`transaction`] with an isolation level.
pub fn transaction_with<T, E: From<DbError>>(
    isolation: Option<Isolation>,
    work: impl FnOnce(&Tx) -> Result<T, E>,
) -> Result<T, E> {
    let tx = Tx {
        inner: Some(sql::begin(isolation).map_err(DbError::from)?),
    };
    match work(&tx) {
        Ok(value) => {
            let mut tx = tx;
            sql::Transaction::commit(tx.inner.take().expect("open")).map_err(DbError::from)?;
            Ok(value)
        }
        Err(e) => {
            let mut tx = tx;
            let _ = sql::Transaction::rollback(tx.inner.take().expect("open"));
            Err(e)
        }
    }
}
