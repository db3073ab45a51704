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
//! the database's write lock up front (`BEGIN IMMEDIATE`).

use std::sync::Arc;

use doorman::StoreError;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions as _, Connection as _, PgPool, Sqlite, SqlitePool};

/// The pool a [`SqlStore`](crate::SqlStore) runs on.
#[derive(Clone)]
pub(crate) enum Backend {
    Sqlite(SqliteBackend),
    Postgres(PgPool),
}

/// SQLite's read pool and its in-process write queue.
///
/// SQLite lets one connection write at a time. Left to race, pooled
/// connections would all run `BEGIN IMMEDIATE` and the losers would sleep
/// in SQLite's busy handler (a back-off of 1, 2, 5, 10, … ms) while the
/// lock sat free. Instead every write of this store first takes its turn
/// on `writer`, a FIFO async mutex, and runs on the connection it guards;
/// only writers of *other* processes (or pools) sharing the file ever meet
/// the busy handler (the busy timeout still covers them).
#[derive(Clone)]
pub(crate) struct SqliteBackend {
    /// Reads, and the host's own tables ([`SqlStore::sqlite_pool`](crate::SqlStore::sqlite_pool)).
    pub read: SqlitePool,
    /// Held for the whole of every write, from before it takes its
    /// connection until after it commits. tokio's mutex is fair: writers
    /// go in the order they arrived.
    pub writer: Arc<tokio::sync::Mutex<Writer>>,
}

impl SqliteBackend {
    /// Reads on `read`; writes on `own`, or on connections of `read` if `None`.
    pub(crate) fn new(
        read: SqlitePool,
        own: Option<(SqliteConnection, SqliteConnectOptions)>,
    ) -> Self {
        let writer = match own {
            Some((conn, options)) => Writer::Own {
                conn,
                options: Box::new(options),
                broken: false,
                open: false,
            },
            None => Writer::Pooled,
        };
        Self {
            read,
            writer: Arc::new(tokio::sync::Mutex::new(writer)),
        }
    }
}

/// The connection SQLite writes run on, behind [`SqliteBackend::writer`].
pub(crate) enum Writer {
    /// One connection of the store's own beside the read pool, used by one
    /// write at a time. Not a pool: a pool checks a connection when it
    /// comes back (a round trip to its thread) on a task of its own, and the
    /// next write would wait for both. Its page cache stays warm, as no
    /// other connection of the process writes.
    Own {
        conn: SqliteConnection,
        /// Opens a new one.
        options: Box<SqliteConnectOptions>,
        /// A write lost the connection (its thread or I/O failed): the
        /// next write closes it and opens a new one. (A [`write_tx!`]
        /// cancelled midway needs nothing: sqlx queues the rollback of its
        /// transaction ahead of the next command; see `open` for a
        /// [`sqlite_script!`].)
        broken: bool,
        /// A [`sqlite_script!`] began a transaction in SQL and did not see
        /// it end (its future was dropped midway): sqlx knows nothing of
        /// that transaction, so the next write rolls it back first.
        open: bool,
    },
    /// Writes take a connection of the read pool: for `:memory:` (one
    /// connection is the whole database) and for a host's pool.
    Pooled,
    /// After [`SqlStore::close`](crate::SqlStore::close).
    Closed,
}

impl Writer {
    /// The connection for one write (the caller holds the write turn).
    pub(crate) async fn lease<'a>(
        &'a mut self,
        read: &SqlitePool,
    ) -> Result<Lease<'a>, StoreError> {
        match self {
            Writer::Own {
                conn,
                options,
                broken,
                open,
            } => {
                if *open {
                    // Cleared only once the rollback ran: this write may
                    // be dropped too.
                    *broken |= !rollback(conn).await;
                    *open = false;
                }
                if *broken {
                    let fresh = options.connect().await.map_err(db)?;
                    // Closing waits for the old connection's thread, so its
                    // write lock is gone before the fresh one writes.
                    let _ = std::mem::replace(conn, fresh).close().await;
                    *broken = false;
                }
                Ok(Lease::Own { conn, broken, open })
            }
            Writer::Pooled => Ok(Lease::Pooled(read.acquire().await.map_err(db)?)),
            Writer::Closed => Err(db(sqlx::Error::PoolClosed)),
        }
    }

    /// Whether writes run on the store's own connection, where
    /// [`sqlite_script!`] may run.
    pub(crate) fn is_own(&self) -> bool {
        matches!(self, Writer::Own { .. })
    }

    /// Closes the store's own connection; later writes fail.
    pub(crate) async fn close(&mut self) {
        if let Writer::Own { conn, .. } = std::mem::replace(self, Writer::Closed) {
            let _ = conn.close().await;
        }
    }
}

/// A connection for one SQLite write.
pub(crate) enum Lease<'a> {
    Own {
        conn: &'a mut SqliteConnection,
        broken: &'a mut bool,
        open: &'a mut bool,
    },
    Pooled(PoolConnection<Sqlite>),
}

impl Lease<'_> {
    /// The write ended with `result`: an error of the connection itself
    /// has the store's own connection replaced before the next write.
    pub(crate) fn finish<T>(&mut self, result: &Result<T, StoreError>) {
        if let Lease::Own { broken, .. } = self {
            **broken |= result.as_ref().is_err_and(is_connection_lost);
        }
    }

    /// A [`sqlite_script!`] is about to begin a transaction in SQL, or has
    /// seen it end (`false`).
    pub(crate) fn set_open(&mut self, now_open: bool) {
        if let Lease::Own { open, .. } = self {
            **open = now_open;
        }
    }

    /// Ends whatever transaction a failed [`sqlite_script!`] left open; a
    /// connection that cannot is replaced before the next write.
    pub(crate) async fn roll_back(&mut self) {
        if let Lease::Own { conn, broken, open } = self {
            **broken |= !rollback(conn).await;
            **open = false;
        }
    }
}

/// `ROLLBACK` on `conn`, which sqlx may not know to be in a transaction:
/// whether the connection is now outside any ("no transaction is active"
/// counts as success).
async fn rollback(conn: &mut SqliteConnection) -> bool {
    use sqlx::Executor as _;
    match conn.execute("ROLLBACK").await {
        Ok(_) => true,
        Err(sqlx::Error::Database(d)) => d.message().contains("no transaction is active"),
        Err(_) => false,
    }
}

impl std::ops::Deref for Lease<'_> {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        match self {
            Lease::Own { conn, .. } => conn,
            Lease::Pooled(conn) => conn,
        }
    }
}

impl std::ops::DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        match self {
            Lease::Own { conn, .. } => conn,
            Lease::Pooled(conn) => conn,
        }
    }
}

/// An error that leaves the connection unusable (its thread gone, I/O
/// failed), as opposed to one of a statement.
fn is_connection_lost(e: &StoreError) -> bool {
    let StoreError::Backend(source) = e else {
        return false;
    };
    matches!(
        source.downcast_ref::<sqlx::Error>(),
        Some(sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed | sqlx::Error::Protocol(_))
    )
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
                let mut writer = sqlite.writer.lock().await;
                let mut lease = writer.lease(&sqlite.read).await?;
                let result: ::std::result::Result<_, ::doorman::StoreError> = async {
                    let $conn = &mut *lease;
                    $body
                }
                .await;
                lease.finish(&result);
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
                let mut writer = sqlite.writer.lock().await;
                let mut lease = writer.lease(&sqlite.read).await?;
                let result = $crate::backend::write_tx!(
                    @run ::sqlx::Connection::begin_with(&mut *lease, "BEGIN IMMEDIATE"),
                    $crate::backend::SQLITE,
                    |$conn, $d| $body
                );
                lease.finish(&result);
                result
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

/// On SQLite with the store's own writer connection, runs `$body` in the
/// write queue as a transaction the body's SQL begins and commits itself:
/// `sqlite_script!(self.backend, |conn| { … Ok(x) })` evaluates to
/// `Some(result)`, or to `None` on PostgreSQL and on a pooled SQLite
/// writer (the caller then runs its [`write_tx!`] form).
///
/// Why: every statement is a round trip to the connection's thread, and
/// on SQLite the single writer is the bottleneck. One query string may
/// hold several statements (numbered parameters index one shared list),
/// so `BEGIN IMMEDIATE; INSERT …; INSERT …; COMMIT` costs one round trip
/// instead of four.
///
/// sqlx does not track a transaction begun in SQL, so this macro does: an
/// `Err` from the body issues `ROLLBACK` (whichever statement failed), and
/// a body dropped midway leaves the writer marked open, to be rolled back
/// before the next write. Only `execute` and `fetch_all` may run a script
/// (`fetch_optional` would stop it after its first row).
macro_rules! sqlite_script {
    ($backend:expr, |$conn:ident| $body:expr) => {
        match &$backend {
            $crate::backend::Backend::Sqlite(sqlite) => {
                let mut writer = sqlite.writer.lock().await;
                if writer.is_own() {
                    Some(match writer.lease(&sqlite.read).await {
                        Ok(mut lease) => {
                            lease.set_open(true);
                            let result: ::std::result::Result<_, ::doorman::StoreError> = async {
                                let $conn: &mut ::sqlx::SqliteConnection = &mut *lease;
                                $body
                            }
                            .await;
                            if result.is_ok() {
                                lease.set_open(false);
                            } else {
                                lease.roll_back().await;
                            }
                            lease.finish(&result);
                            result
                        }
                        Err(e) => Err(e),
                    })
                } else {
                    None
                }
            }
            $crate::backend::Backend::Postgres(_) => None,
        }
    };
}

pub(crate) use {on_pool, sqlite_script, write_conn, write_tx};

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
