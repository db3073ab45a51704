//! The host's user row read in the same statement as a bearer token
//! ([`SqlStore::token_with_user`]), so that userinfo costs one query.

use std::fmt;
use std::sync::Arc;

use doorman::{StoreError, TokenHash, TokenRecord};
use rusqlite::types::Value as SqlValue;
use serde_json::{Number, Value};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow as _, Row as _, TypeInfo as _, ValueRef as _};

use crate::SqlStore;
use crate::backend::{db, on_pool};
use crate::native_ops::{first, token_row};
use crate::rows::{TokenRow, token_from_row};

/// How the host's user table joins a token's row: the table, the match
/// of its row to the token's `t.user_id` (text), and the columns to read.
///
/// All three are SQL text written into the statement as they are: they
/// must come from the host's code, never from a request. The statement is
///
/// ```sql
/// SELECT t.kind, …, (<on>) IS TRUE, <columns> FROM doorman_tokens t
/// LEFT JOIN <table> ON <on> WHERE t.hash = $1
/// ```
///
/// so `on` should match the table's key, which both SQLite and
/// PostgreSQL then read by its index. [`UserJoin::on_text_key`] and
/// [`UserJoin::on_integer_key`] write that match for the usual keys; the
/// match must be exact, as a user's claims go to whoever it matches. A
/// column may be an expression; on PostgreSQL it must be of an integer,
/// floating-point, boolean or text type (cast anything else, as
/// `u.created::text`).
///
/// ```
/// let users = doorman_sqlx::UserJoin::on_integer_key(
///     "app_users u",
///     "u.id",
///     &["u.name", "u.email", "u.credit"],
/// );
/// assert!(users.sql().contains("LEFT JOIN app_users u ON u.id = CAST(t.user_id AS BIGINT)"));
/// ```
#[derive(Clone)]
pub struct UserJoin {
    sql: Arc<str>,
    columns: usize,
}

impl UserJoin {
    /// Joins `table` (a table name and alias) where its `key` column, of
    /// a text type, equals the token's user id.
    pub fn on_text_key(table: &str, key: &str, columns: &[&str]) -> Self {
        Self::new(table, &format!("{key} = t.user_id"), columns)
    }

    /// Joins `table` (a table name and alias) where its `key` column, an
    /// integer, is the token's user id: the id is cast to find the row by
    /// the key's index, and the row counts only if the key written as text
    /// is the id exactly. So `"42abc"` (which SQLite's cast reads as 42),
    /// `"042"` or `"+42"` match no user; on PostgreSQL an id that is not an
    /// integer at all fails the statement (a `server_error`), so use this
    /// when every user id the host hands doorman is one of its keys.
    pub fn on_integer_key(table: &str, key: &str, columns: &[&str]) -> Self {
        Self::new(
            table,
            &format!("{key} = CAST(t.user_id AS BIGINT) AND CAST({key} AS TEXT) = t.user_id"),
            columns,
        )
    }

    /// Joins `table` (a table name and alias) on `on`, reading `columns`.
    pub fn new(table: &str, on: &str, columns: &[&str]) -> Self {
        let mut sql = String::from(
            "SELECT t.kind, t.grant_id, t.client_id, t.user_id, t.scope, t.issued_at, \
             t.expires_at, t.consumed_at, (",
        );
        sql.push_str(on);
        sql.push_str(") IS TRUE");
        for c in columns {
            sql.push_str(", ");
            sql.push_str(c);
        }
        sql.push_str(" FROM doorman_tokens t LEFT JOIN ");
        sql.push_str(table);
        sql.push_str(" ON ");
        sql.push_str(on);
        sql.push_str(" WHERE t.hash = $1");
        Self {
            sql: sql.into(),
            columns: columns.len(),
        }
    }

    /// The statement it runs.
    pub fn sql(&self) -> &str {
        &self.sql
    }
}

impl fmt::Debug for UserJoin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserJoin").field("sql", &self.sql).finish()
    }
}

/// The token's columns, then the flag that a user row matched.
const TOKEN_COLUMNS: usize = 8;

/// The host's columns of one user row, in [`UserJoin::new`]'s order, as
/// JSON values: SQL `NULL` is `null`, integers and floats are numbers,
/// booleans are booleans (SQLite has none: they read as 0 and 1), text
/// is a string.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRow(Vec<Value>);

impl UserRow {
    /// Column `i` (`null` past the end).
    pub fn get(&self, i: usize) -> &Value {
        self.0.get(i).unwrap_or(&Value::Null)
    }

    /// Column `i` as an integer, or an error naming it.
    pub fn i64(&self, i: usize) -> Result<i64, StoreError> {
        self.get(i)
            .as_i64()
            .ok_or_else(|| column_type(i, "an integer"))
    }

    /// Column `i` as text, or an error naming it.
    pub fn str(&self, i: usize) -> Result<&str, StoreError> {
        self.get(i).as_str().ok_or_else(|| column_type(i, "text"))
    }

    /// All the columns.
    pub fn into_values(self) -> Vec<Value> {
        self.0
    }
}

fn column_type(i: usize, what: &str) -> StoreError {
    StoreError::message(format!("doorman-sqlx: user column {i} is not {what}"))
}

fn unsupported(i: usize, ty: &str) -> StoreError {
    StoreError::message(format!(
        "doorman-sqlx: user column {i} has SQL type {ty}; cast it to an integer, float, boolean or text"
    ))
}

fn float(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

impl SqlStore {
    /// The token stored under `hash` and, when its user's row matches,
    /// that row's `join` columns: one statement, so one round trip and
    /// one read transaction. `None` when no token is stored under `hash`;
    /// the row is `None` for a token without a user or whose user's row
    /// is gone.
    ///
    /// This is the read behind [`doorman::Claims::claims_with_token`] for a
    /// host whose users live in the store's database. The record is
    /// exactly what [`doorman::TokenStore::token`] answers: the server
    /// still checks its kind and expiry.
    pub async fn token_with_user(
        &self,
        hash: &TokenHash,
        join: &UserJoin,
    ) -> Result<Option<(TokenRecord, Option<UserRow>)>, StoreError> {
        if let Some(native) = self.backend.native() {
            let found = native.read(|c| {
                first(c, &join.sql, [&&hash.0[..]], |r| {
                    let matched: bool = r.get(TOKEN_COLUMNS)?;
                    let values = matched
                        .then(|| {
                            (0..join.columns)
                                .map(|i| r.get::<_, SqlValue>(TOKEN_COLUMNS + 1 + i))
                                .collect::<rusqlite::Result<Vec<_>>>()
                        })
                        .transpose()?;
                    Ok((token_row(r)?, values))
                })
            })?;
            let Some((token, values)) = found else {
                return Ok(None);
            };
            let user = values
                .map(|v| {
                    v.into_iter()
                        .enumerate()
                        .map(native_value)
                        .collect::<Result<_, _>>()
                        .map(UserRow)
                })
                .transpose()?;
            return Ok(Some((token_from_row(*hash, token)?, user)));
        }
        let sql = sqlx::AssertSqlSafe(join.sql.clone());
        let key = &hash.0[..];
        let (token, user) = on_pool!(self.backend, |pool| {
            let Some(row) = sqlx::query(sql)
                .bind(key)
                .fetch_optional(pool)
                .await
                .map_err(db)?
            else {
                return Ok(None);
            };
            pool_row(&row, join.columns)?
        });
        Ok(Some((token_from_row(*hash, token)?, user)))
    }
}

fn native_value((i, value): (usize, SqlValue)) -> Result<Value, StoreError> {
    Ok(match value {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(n) => Value::from(n),
        SqlValue::Real(f) => float(f),
        SqlValue::Text(t) => Value::String(t),
        SqlValue::Blob(_) => return Err(unsupported(i, "BLOB")),
    })
}

/// A row of one of sqlx's pools whose columns the user row may hold.
trait PoolRow: sqlx::Row {
    /// Column `at`, not NULL, of the SQL type named `ty`, as JSON; `None`
    /// for a type it does not map.
    fn typed(&self, ty: &str, at: usize) -> Option<Result<Value, sqlx::Error>>;
}

impl PoolRow for SqliteRow {
    fn typed(&self, ty: &str, at: usize) -> Option<Result<Value, sqlx::Error>> {
        Some(match ty {
            "INTEGER" | "BOOLEAN" | "NUMERIC" => {
                self.try_get_unchecked::<i64, _>(at).map(Value::from)
            }
            "REAL" => self.try_get_unchecked::<f64, _>(at).map(float),
            "TEXT" | "DATE" | "TIME" | "DATETIME" => {
                self.try_get_unchecked::<String, _>(at).map(Value::String)
            }
            _ => return None,
        })
    }
}

impl PoolRow for PgRow {
    fn typed(&self, ty: &str, at: usize) -> Option<Result<Value, sqlx::Error>> {
        Some(match ty {
            "INT2" => self.try_get::<i16, _>(at).map(Value::from),
            "INT4" => self.try_get::<i32, _>(at).map(Value::from),
            "INT8" => self.try_get::<i64, _>(at).map(Value::from),
            "FLOAT4" => self.try_get::<f32, _>(at).map(|f| float(f64::from(f))),
            "FLOAT8" => self.try_get::<f64, _>(at).map(float),
            "BOOL" => self.try_get::<bool, _>(at).map(Value::Bool),
            "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" => {
                self.try_get::<String, _>(at).map(Value::String)
            }
            _ => return None,
        })
    }
}

/// The token, and the user's columns when a user row matched, from a row
/// of one of sqlx's pools.
fn pool_row<R: PoolRow>(row: &R, columns: usize) -> Result<(TokenRow, Option<UserRow>), StoreError>
where
    TokenRow: for<'r> sqlx::FromRow<'r, R>,
    bool: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    let token = TokenRow::from_row(row).map_err(db)?;
    let matched: bool = row.try_get(TOKEN_COLUMNS).map_err(db)?;
    if !matched {
        return Ok((token, None));
    }
    let mut values = Vec::with_capacity(columns);
    for i in 0..columns {
        let at = TOKEN_COLUMNS + 1 + i;
        let raw = row.try_get_raw(at).map_err(db)?;
        if raw.is_null() {
            values.push(Value::Null);
            continue;
        }
        let ty = raw.type_info().name().to_owned();
        match row.typed(&ty, at) {
            Some(value) => values.push(value.map_err(db)?),
            None => return Err(unsupported(i, &ty)),
        }
    }
    Ok((token, Some(UserRow(values))))
}
