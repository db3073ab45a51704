//! The two backends, the SQL that differs between them, and the macros
//! that run one body of store code on either.
//!
//! Both backends take the same SQL text (`$1`-style parameters work in
//! SQLite too) and the same Rust types (`i64`, `bool`, `String`,
//! `Vec<u8>`), so each store operation is written once and the macros
//! below compile it twice, once per pool type. Only row locking and write
//! scheduling differ: PostgreSQL runs many writers at once and needs `FOR
//! UPDATE`, while SQLite has one writer at a time, so its writes queue
//! in the process for one writer connection ([`SqliteBackend`]) and take
//! the database's write lock up front (`BEGIN IMMEDIATE`). A store on a
//! SQLite file runs the same SQL text on its direct connections instead
//! (`native_ops.rs`).

use std::sync::Arc;

use doorman::StoreError;
use sqlx::{PgPool, SqlitePool};

use crate::native::Native;

/// The pool a [`SqlStore`](crate::SqlStore) runs on.
#[derive(Clone)]
pub(crate) enum Backend {
    Sqlite(SqliteBackend),
    Postgres(PgPool),
}

/// SQLite: the sqlx pool, and on a file the store's direct connections.
///
/// A store opened on a file by [`SqlStore::connect`](crate::SqlStore::connect)
/// runs every store operation on `native` (see [`crate::native`]): reads
/// on the calling thread, writes on its writer thread. The sqlx pool is
/// then the host's ([`SqlStore::sqlite_pool`](crate::SqlStore::sqlite_pool)).
/// On `:memory:` and on a host's pool the store runs on the pool, its
/// writes taking turns on `writer` first (a FIFO async mutex), so they
/// never race each other for SQLite's write lock nor sleep in its busy
/// handler.
#[derive(Clone)]
pub(crate) struct SqliteBackend {
    /// The sqlx pool: the store's reads and writes without `native`, and
    /// the host's own tables.
    pub read: SqlitePool,
    /// Held for the whole of every write on `read`, from before it takes
    /// its connection until after it commits. tokio's mutex is fair:
    /// writers go in the order they arrived.
    pub writer: Arc<tokio::sync::Mutex<()>>,
    /// The direct connections, on a file.
    pub native: Option<Arc<Native>>,
}

impl SqliteBackend {
    /// On `read` alone, or on `native` with `read` for the host.
    pub(crate) fn new(read: SqlitePool, native: Option<Native>) -> Self {
        Self {
            read,
            writer: Arc::new(tokio::sync::Mutex::new(())),
            native: native.map(Arc::new),
        }
    }
}

impl Backend {
    /// The direct SQLite connections, if the store runs on them.
    pub(crate) fn native(&self) -> Option<&Native> {
        match self {
            Backend::Sqlite(sqlite) => sqlite.native.as_deref(),
            Backend::Postgres(_) => None,
        }
    }
}

/// SQL whose text differs between the backends.
pub(crate) struct Dialect {
    /// `sqlite` or `postgres`.
    pub name: &'static str,
    /// Creates the table of applied migrations if missing.
    pub migrations_table: &'static str,
    /// Serializes migrations across connections and processes until the
    /// transaction ends (on SQLite, `BEGIN IMMEDIATE` already has).
    pub migration_lock: &'static str,
    /// Reads a grant's `revoked` flag and, on PostgreSQL, locks its row
    /// until the transaction ends: the lock that serializes rotation,
    /// revocation and creation of one grant.
    pub lock_grant: &'static str,
    /// Reads a consent's scopes, locking the row on PostgreSQL.
    pub lock_consent: &'static str,
    /// Deletes expired codes (on PostgreSQL skipping rows another
    /// transaction holds, so a purge never waits on or deadlocks with a
    /// request).
    pub purge_codes: &'static str,
    /// Deletes expired tokens (ditto).
    pub purge_tokens: &'static str,
    /// Deletes grants and revoked markers no token and no code refers to,
    /// answering each deleted row's `revoked` flag (ditto).
    pub purge_grants: &'static str,
}

pub(crate) const SQLITE: Dialect = Dialect {
    name: "sqlite",
    migrations_table: "CREATE TABLE IF NOT EXISTS doorman_migrations (\
         version INTEGER PRIMARY KEY NOT NULL, description TEXT NOT NULL, \
         checksum BLOB NOT NULL, applied_at INTEGER NOT NULL)",
    migration_lock: "SELECT 1",
    lock_grant: "SELECT revoked FROM doorman_grants WHERE id = $1",
    lock_consent: "SELECT scope FROM doorman_consents WHERE user_id = $1 AND client_id = $2",
    purge_codes: "DELETE FROM doorman_codes WHERE expires_at <= $1",
    purge_tokens: "DELETE FROM doorman_tokens WHERE expires_at <= $1",
    purge_grants: "DELETE FROM doorman_grants \
         WHERE NOT EXISTS (SELECT 1 FROM doorman_tokens t WHERE t.grant_id = doorman_grants.id) \
         AND NOT EXISTS (SELECT 1 FROM doorman_codes c WHERE c.grant_id = doorman_grants.id) \
         RETURNING revoked",
};

pub(crate) const POSTGRES: Dialect = Dialect {
    name: "postgres",
    migrations_table: "CREATE TABLE IF NOT EXISTS doorman_migrations (\
         version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
         checksum BYTEA NOT NULL, applied_at BIGINT NOT NULL)",
    // A transaction-scoped advisory lock: released by COMMIT or ROLLBACK,
    // so an error can never leave it held. The key is doorman's own.
    migration_lock: "SELECT pg_advisory_xact_lock(7164208530190427183)",
    lock_grant: "SELECT revoked FROM doorman_grants WHERE id = $1 FOR UPDATE",
    lock_consent: "SELECT scope FROM doorman_consents WHERE user_id = $1 AND client_id = $2 FOR UPDATE",
    purge_codes: "DELETE FROM doorman_codes WHERE hash IN \
         (SELECT hash FROM doorman_codes WHERE expires_at <= $1 FOR UPDATE SKIP LOCKED)",
    purge_tokens: "DELETE FROM doorman_tokens WHERE hash IN \
         (SELECT hash FROM doorman_tokens WHERE expires_at <= $1 FOR UPDATE SKIP LOCKED)",
    purge_grants: "DELETE FROM doorman_grants WHERE id IN \
         (SELECT g.id FROM doorman_grants g \
          WHERE NOT EXISTS (SELECT 1 FROM doorman_tokens t WHERE t.grant_id = g.id) \
          AND NOT EXISTS (SELECT 1 FROM doorman_codes c WHERE c.grant_id = g.id) \
          FOR UPDATE OF g SKIP LOCKED) \
         RETURNING revoked",
};

/// How often a write transaction is tried when PostgreSQL aborts it as a
/// deadlock victim or a serialization failure. The lock order of the
/// operations makes either unlikely; retrying makes it invisible.
pub(crate) const ATTEMPTS: u32 = 3;

/// Runs `$body` with the pool for reads: `on_pool!(self.backend, |pool| …)`.
/// The body is compiled once per backend. Never for writes (see
/// [`write_conn!`] and [`write_tx!`]).
macro_rules! on_pool {
    ($backend:expr, |$pool:ident| $body:expr) => {
        match &$backend {
            $crate::backend::Backend::Sqlite(sqlite) => {
                let $pool = &sqlite.read;
                $body
            }
            $crate::backend::Backend::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` with a connection for writes outside a transaction (for a
/// single statement, or statements that need not be atomic together):
/// `write_conn!(self.backend, |conn| { … Ok(x) })`, with `&mut *conn` as
/// the executor. The body is an async block's contents evaluating to
/// `Result<T, StoreError>`; `?` and `return` leave the body.
///
/// On SQLite the body runs in the process's write queue (see
/// [`SqliteBackend`]); on PostgreSQL on any pooled connection.
macro_rules! write_conn {
    ($backend:expr, |$conn:ident| $body:expr) => {
        match &$backend {
            $crate::backend::Backend::Sqlite(sqlite) => {
                let _turn = sqlite.writer.lock().await;
                let mut pooled = sqlite.read.acquire().await.map_err($crate::backend::db)?;
                let result: ::std::result::Result<_, ::doorman::StoreError> = async {
                    let $conn = &mut *pooled;
                    $body
                }
                .await;
                result
            }
            $crate::backend::Backend::Postgres(pool) => {
                let mut pooled = pool.acquire().await.map_err($crate::backend::db)?;
                let result: ::std::result::Result<_, ::doorman::StoreError> = async {
                    let $conn = &mut *pooled;
                    $body
                }
                .await;
                result
            }
        }
    };
}

/// Runs `$body` in a write transaction: `write_tx!(self.backend, |conn, dialect| { … Ok(x) })`.
///
/// The body is an async block's contents evaluating to
/// `Result<T, StoreError>`; `?` and `return` leave the body. `Ok` commits,
/// `Err` rolls back. On SQLite the transaction waits for its turn in the
/// process's write queue (see [`SqliteBackend`]) and then starts with
/// `BEGIN IMMEDIATE`, so it holds the write lock from the start: writers
/// of other processes sharing the file wait on the busy timeout instead
/// of failing when a read lock cannot be upgraded. On PostgreSQL a
/// deadlock or serialization failure reruns the body (up to [`ATTEMPTS`]
/// times).
macro_rules! write_tx {
    ($backend:expr, |$conn:ident, $d:ident| $body:expr) => {
        match &$backend {
            $crate::backend::Backend::Sqlite(sqlite) => {
                let _turn = sqlite.writer.lock().await;
                let mut pooled = sqlite.read.acquire().await.map_err($crate::backend::db)?;
                $crate::backend::write_tx!(
                    @run ::sqlx::Connection::begin_with(&mut *pooled, "BEGIN IMMEDIATE"),
                    $crate::backend::SQLITE,
                    |$conn, $d| $body
                )
            }
            $crate::backend::Backend::Postgres(pool) => {
                $crate::backend::write_tx!(@run pool.begin_with("BEGIN"), $crate::backend::POSTGRES, |$conn, $d| $body)
            }
        }
    };
    (@run $begin:expr, $dialect:path, |$conn:ident, $d:ident| $body:expr) => {{
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut tx = match $begin.await {
                Ok(tx) => tx,
                Err(e) => break Err($crate::backend::db(e)),
            };
            let result: ::std::result::Result<_, ::doorman::StoreError> = async {
                let $conn = &mut *tx;
                let $d = &$dialect;
                $body
            }
            .await;
            match result {
                Ok(value) => match tx.commit().await {
                    Ok(()) => break Ok(value),
                    Err(e) => break Err($crate::backend::db(e)),
                },
                Err(e) if attempt < $crate::backend::ATTEMPTS && $crate::backend::is_transient(&e) => continue,
                Err(e) => break Err(e),
            }
        }
    }};
}

pub(crate) use {on_pool, write_conn, write_tx};

/// Wraps a database error.
pub(crate) fn db(e: sqlx::Error) -> StoreError {
    StoreError::backend(e)
}

/// A unique-key violation becomes [`StoreError::Conflict`] with `what`;
/// anything else is a backend failure.
pub(crate) fn conflict(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(what),
        _ => db(e),
    }
}

/// A PostgreSQL deadlock (`40P01`) or serialization failure (`40001`):
/// the transaction was aborted as a whole and may simply be run again.
pub(crate) fn is_transient(e: &StoreError) -> bool {
    let StoreError::Backend(source) = e else {
        return false;
    };
    match source.downcast_ref::<sqlx::Error>() {
        Some(sqlx::Error::Database(d)) => matches!(d.code().as_deref(), Some("40P01" | "40001")),
        _ => false,
    }
}

/// SQLite's `SQLITE_BUSY` (any extended code): the database is locked.
pub(crate) fn is_busy(e: &StoreError) -> bool {
    let StoreError::Backend(source) = e else {
        return false;
    };
    match source.downcast_ref::<sqlx::Error>() {
        Some(sqlx::Error::Database(d)) => d
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(|c| c & 0xff == 5),
        _ => false,
    }
}

/// A row that cannot be decoded into a record.
pub(crate) fn corrupt(what: &str) -> StoreError {
    StoreError::message(format!("doorman-sqlx: corrupt {what} row"))
}
