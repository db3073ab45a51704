//! SQLite and PostgreSQL storage for [doorman], on sqlx (and SQLite files
//! directly).
//!
//! ```
//! use std::sync::Arc;
//! use doorman::{Store, TokenHash, TokenStore};
//! use doorman_sqlx::SqlStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), doorman::StoreError> {
//! // The backend follows the URL: `sqlite://app.db` (created if missing),
//! // `sqlite::memory:`, or `postgres://user@host/db`. Migrations run on connect.
//! let store = SqlStore::connect("sqlite::memory:").await?;
//! assert_eq!(store.backend_name(), "sqlite");
//! assert_eq!(store.token(&TokenHash::of("no such token")).await?, None);
//!
//! // Hand it to `doorman::AuthorizationServer::builder` as the store.
//! let store: Arc<dyn Store> = Arc::new(store);
//! # let _ = store;
//! # Ok(())
//! # }
//! ```
//!
//! [`SqlStore`] implements every storage trait of the core
//! ([`doorman::store`]) on either backend:
//!
//! - **SQLite** is the embedded default: one file, WAL mode, `synchronous =
//!   NORMAL`. On a file the store drives SQLite directly (rusqlite, the
//!   same bundled SQLite library sqlx links), without sqlx's thread
//!   hand-off per statement: reads run on the calling thread on a few
//!   reading connections, each held for one statement; writes go, first
//!   come first served, to one writer thread, which runs all the writes
//!   waiting for it as one `BEGIN IMMEDIATE` transaction (group commit;
//!   should one fail, the group runs again with each write in a savepoint,
//!   so the failure undoes only itself) and answers none before the commit.
//!   So a burst of concurrent writers never races for SQLite's write lock
//!   nor sleeps in its busy handler, and a write cancelled by its caller
//!   happens whole or not at all. WAL checkpoints run on a thread beside
//!   the writer. One more connection holds a read transaction open and
//!   reads nothing, so that the readers' transactions share its lock on
//!   the `-shm` file instead of taking their own; while reads go on it
//!   follows every commit (this process's or another's) within a few
//!   milliseconds, and it steps aside for checkpoints. The busy timeout
//!   still makes writers of *other* processes sharing the file wait for
//!   the lock instead of failing. A crash never leaves a half-issued
//!   grant (after a power loss `NORMAL` may lose the last commits, never
//!   half of one). On `:memory:` and on a host's pool the store runs on
//!   the sqlx pool, its writes queued in the process the same way. A
//!   process that owns its file alone can say so
//!   ([`SqlStoreOptions::sqlite_exclusive`]): transactions then take no
//!   file lock, and other processes cannot open the file.
//! - **PostgreSQL** serves many app instances sharing one database. Writes
//!   that must not interleave (rotating a refresh token, revoking or
//!   creating a grant) lock the grant's row first, so whichever commits
//!   first, no token of a revoked grant survives.
//!
//! Every compare-and-set of the store contracts is one SQL statement or
//! one transaction: a code is consumed by `UPDATE … WHERE consumed_at IS
//! NULL RETURNING …`, so of any number of concurrent redemptions, over any
//! number of pools and processes, exactly one wins. A code exchange
//! ([`Store::redeem_code`](doorman::Store::redeem_code)) is one write
//! transaction: the code consumed, the grant and its tokens inserted (the
//! tokens by one multi-row `INSERT`). Codes, tokens and
//! client secrets are stored only as their [`TokenHash`](doorman::TokenHash)
//! keys (32-byte blobs, the primary keys): a secret's SHA-256; for a code
//! or token, 6 bytes of its issue time then 26 bytes of its SHA-256, so
//! new rows append to the B-trees instead of each dirtying a random page.
//! Validating a bearer token is one indexed lookup
//! and one round trip (pooled connections are checked when they are
//! returned, not again when they are handed out). A host whose user table
//! lives in the same database reads a token and its user's row in one
//! statement ([`SqlStore::token_with_user`], a [`UserJoin`]), which makes
//! the userinfo endpoint one round trip too
//! ([`doorman::Claims::claims_with_token`]).
//!
//! Expired rows stay until [`Store::purge_expired`](doorman::Store::purge_expired)
//! removes them; call it periodically (say, every few minutes). The
//! schema is created and upgraded by embedded, versioned, forward-only
//! migrations, safe to run from several processes at once. All tables are
//! named `doorman_*`, so the host can keep its own tables in the same
//! database ([`SqlStore::sqlite_pool`], [`SqlStore::pg_pool`],
//! [`SqlStore::from_sqlite_pool`], [`SqlStore::from_pg_pool`]). Queries
//! are checked at run time, so the crate builds without a database.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod backend;
mod clients;
mod codes;
mod grants;
mod migrate;
mod native;
mod native_ops;
mod options;
mod rows;
mod tokens;
mod users;

use std::fmt;
use std::str::FromStr as _;
use std::time::{Duration, Instant};

use doorman::StoreError;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use crate::backend::{Backend, SqliteBackend, db};
pub use crate::options::SqlStoreOptions;
pub use crate::users::{UserJoin, UserRow};
/// The rusqlite this crate drives SQLite files with, for
/// [`SqlStore::sqlite_read`].
pub use rusqlite;

/// A [`doorman::Store`] on SQLite or PostgreSQL.
///
/// Cloning is cheap and shares the pool.
#[derive(Clone)]
pub struct SqlStore {
    backend: Backend,
}

impl fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &self.backend_name())
            .finish_non_exhaustive()
    }
}

impl SqlStore {
    /// Connects with default [`SqlStoreOptions`] and brings the schema up
    /// to date.
    ///
    /// The scheme picks the backend:
    ///
    /// - `sqlite://path/to/file.db` — created if missing unless the URL
    ///   says otherwise (`?mode=rw` refuses to create, `?mode=rwc` creates);
    ///   `sqlite::memory:` is a private in-memory database, gone when the
    ///   store closes (its pool has a single connection);
    /// - `postgres://…` or `postgresql://…`.
    ///
    /// Fails on any other scheme, a malformed URL, an unreachable database,
    /// or a migration that cannot be applied. Error messages never repeat
    /// the URL (it may hold a password).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, SqlStoreOptions::new()).await
    }

    /// [`SqlStore::connect`] with explicit pool options.
    pub async fn connect_with(url: &str, options: SqlStoreOptions) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Self::connect_sqlite(url, &options).await
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::connect_postgres(url, &options).await
        } else {
            Err(StoreError::message(
                "doorman-sqlx: unsupported database URL (expected sqlite:… or postgres://… / postgresql://…)",
            ))
        }
    }

    async fn connect_sqlite(url: &str, options: &SqlStoreOptions) -> Result<Self, StoreError> {
        let query = url.split_once('?').map_or("", |(_, q)| q);
        let mode_given = query.split('&').any(|kv| kv.starts_with("mode="));
        let in_memory = url.contains(":memory:") || query.split('&').any(|kv| kv == "mode=memory");
        let mut connect = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::message(format!("doorman-sqlx: invalid SQLite URL: {e}")))?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(options.busy_timeout)
            .foreign_keys(true);
        if !mode_given {
            connect = connect.create_if_missing(true);
        }
        if options.sqlite_exclusive && !in_memory {
            connect = connect.vfs(native::EXCLUSIVE_VFS);
        }
        let pool = SqlitePoolOptions::new()
            .acquire_timeout(options.acquire_timeout)
            .test_before_acquire(false);
        let readers = if in_memory {
            // Every connection to `:memory:` would otherwise be its own
            // database, and the last one closing would drop it. Reads and
            // writes share this one connection.
            pool.max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            pool.max_connections(
                options
                    .max_connections
                    .unwrap_or(SqlStoreOptions::SQLITE_CONNECTIONS),
            )
        };
        // Processes creating one new file at the same moment race to switch
        // it to WAL, and SQLite answers the loser `SQLITE_BUSY` at once (its
        // busy handler cannot help with that lock upgrade). Once the file is
        // in WAL mode this never happens again; until then, try again.
        // Every option but `mode=rw`/`rwc` (read-only, immutable, another
        // VFS, …) keeps the store on the sqlx pool, which honours them.
        let direct = !in_memory
            && query
                .split('&')
                .all(|kv| kv.is_empty() || kv == "mode=rw" || kv == "mode=rwc");
        let deadline = Instant::now() + options.busy_timeout;
        loop {
            let opened = async {
                let pool = readers.clone().connect_with(connect.clone()).await;
                let pool = pool.map_err(db)?;
                let on_pool = Self {
                    backend: Backend::Sqlite(SqliteBackend::new(pool.clone(), None)),
                };
                let native = match migrate::run(&on_pool.backend).await {
                    Ok(_) if direct => open_native(&pool, options).await,
                    Ok(_) => Ok(None),
                    Err(e) => Err(e),
                };
                match native {
                    Ok(native) => Ok(Self {
                        backend: Backend::Sqlite(SqliteBackend::new(pool, native)),
                    }),
                    Err(e) => {
                        // Before a retry, or a failed connect: no
                        // connection of this attempt lingers on the file.
                        pool.close().await;
                        Err(e)
                    }
                }
            }
            .await;
            match opened {
                Err(e) if backend::is_busy(&e) && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                other => return other,
            }
        }
    }

    async fn connect_postgres(url: &str, options: &SqlStoreOptions) -> Result<Self, StoreError> {
        let connect = PgConnectOptions::from_str(url)
            .map_err(|_| StoreError::message("doorman-sqlx: invalid PostgreSQL URL"))?;
        let pool = PgPoolOptions::new()
            .max_connections(
                options
                    .max_connections
                    .unwrap_or(SqlStoreOptions::POSTGRES_CONNECTIONS),
            )
            .acquire_timeout(options.acquire_timeout)
            .test_before_acquire(false)
            .connect_with(connect)
            .await
            .map_err(db)?;
        Self::from_pg_pool(pool).await
    }

    /// A store on the host's own SQLite pool, after bringing the schema up
    /// to date.
    ///
    /// The pool should be in WAL mode with a busy timeout (as
    /// [`SqlStore::connect`] sets up), or concurrent writers may fail
    /// with `database is locked`.
    ///
    /// The store's own writes queue in the process and run one at a time
    /// on this pool; writes the host makes through the pool do not join
    /// that queue, so they may wait in SQLite's busy handler while the
    /// store writes (and make the store's writes wait there).
    pub async fn from_sqlite_pool(pool: SqlitePool) -> Result<Self, StoreError> {
        let store = Self {
            backend: Backend::Sqlite(SqliteBackend::new(pool, None)),
        };
        migrate::run(&store.backend).await?;
        Ok(store)
    }

    /// A store on the host's own PostgreSQL pool, after bringing the schema
    /// up to date.
    pub async fn from_pg_pool(pool: PgPool) -> Result<Self, StoreError> {
        let store = Self {
            backend: Backend::Postgres(pool),
        };
        migrate::run(&store.backend).await?;
        Ok(store)
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// The SQLite pool, for the host's own tables; `None` on PostgreSQL.
    ///
    /// On a file the store reads and writes on connections of its own
    /// (see the crate docs) and this pool is the host's; for hot reads
    /// [`SqlStore::sqlite_read`] skips sqlx's thread hand-off. The host's
    /// writes through this pool do not join the store's write queue: they
    /// wait for SQLite's write lock in its busy handler while the store
    /// writes, and make the store's writer wait there too, so they suit
    /// occasional writes (a login, a registration), not a hot path.
    pub fn sqlite_pool(&self) -> Option<&SqlitePool> {
        match &self.backend {
            Backend::Sqlite(sqlite) => Some(&sqlite.read),
            Backend::Postgres(_) => None,
        }
    }

    /// Runs `f` on one of the store's own reading connections to its
    /// SQLite file, on this thread: for the host's hot reads of its own
    /// tables (a user row per userinfo, say) without sqlx's thread
    /// hand-off. The connection is held for the call, so `f` should be
    /// one or two statements. The connection is read-only (`PRAGMA
    /// query_only`): a write fails, as it belongs on the store's writer
    /// thread and would otherwise race it for SQLite's lock.
    ///
    /// `None` when the store does not drive SQLite directly (PostgreSQL,
    /// `:memory:`, a host's pool, a read-only URL): use the pools then.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), doorman::StoreError> {
    /// # let dir = std::env::temp_dir().join(format!("doorman-doc-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).map_err(doorman::StoreError::backend)?;
    /// # let url = format!("sqlite://{}/read.db", dir.display());
    /// let store = doorman_sqlx::SqlStore::connect(&url).await?;
    /// let clients = store.sqlite_read(|conn| {
    ///     conn.query_row("SELECT COUNT(*) FROM doorman_clients", [], |row| row.get::<_, i64>(0))
    /// });
    /// assert_eq!(clients.transpose()?, Some(0));
    /// # store.close().await;
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// # Ok(())
    /// # }
    /// ```
    pub fn sqlite_read<T>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Option<Result<T, StoreError>> {
        let native = self.backend.native()?;
        Some(native.read(|conn| f(conn).map_err(native::sqlite)))
    }

    /// The PostgreSQL pool, for the host's own tables; `None` on SQLite.
    pub fn pg_pool(&self) -> Option<&PgPool> {
        match &self.backend {
            Backend::Postgres(pool) => Some(pool),
            Backend::Sqlite(_) => None,
        }
    }

    /// The schema version of the database, as recorded by the migrations
    /// (the newest this build knows, [`SqlStore::SCHEMA_VERSION`], after a
    /// successful connect — or a newer one written by a newer build).
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let v: Option<i64> = backend::on_pool!(self.backend, |pool| {
            sqlx::query_scalar("SELECT MAX(version) FROM doorman_migrations")
                .fetch_one(pool)
                .await
                .map_err(db)?
        });
        Ok(v.unwrap_or(0))
    }

    /// The newest schema version this build of doorman-sqlx migrates to.
    pub const SCHEMA_VERSION: i64 = 1;

    /// Closes the pool, waiting for connections in use to be returned.
    /// Every clone of the store is closed with it; calls made afterwards
    /// fail.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(sqlite) => {
                if let Some(native) = &sqlite.native {
                    native.close().await;
                }
                // After the write in progress, if any: the writer's turn.
                let _turn = sqlite.writer.lock().await;
                sqlite.read.close().await;
            }
            Backend::Postgres(pool) => pool.close().await,
        }
    }
}

#[async_trait::async_trait]
impl doorman::Store for SqlStore {
    /// One write transaction: the code is taken by the same statement as
    /// [`take_code`](doorman::CodeStore::take_code), `issue` runs inside
    /// the transaction, and the grant (unless its id was revoked:
    /// `Revoked`) and all its tokens are inserted before the commit. A
    /// refusal by `issue` commits the consumption alone. A store error
    /// rolls everything back, the consumption too. On SQLite this is one
    /// turn in the write queue instead of two; on PostgreSQL one
    /// transaction instead of two.
    async fn redeem_code(
        &self,
        hash: &doorman::TokenHash,
        now: chrono::DateTime<chrono::Utc>,
        issue: std::sync::Arc<doorman::CodeIssuer>,
    ) -> Result<doorman::Redemption, StoreError> {
        codes::redeem(self, hash, now, issue).await
    }

    /// Deletes codes and tokens with `expires_at <= now`, then grants and
    /// revoked markers that no token and no code refers to. On PostgreSQL
    /// rows locked by a transaction in flight are skipped (and taken by the
    /// next purge), so purging never blocks a request. On a SQLite file it
    /// deletes at most 2000 rows per write, so the store's other writes go
    /// between its steps instead of waiting for all of it.
    async fn purge_expired(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<doorman::Purged, StoreError> {
        tokens::purge(self, now).await
    }
}

/// The store's direct connections to the file `pool` is open on (see
/// [`native`]), with as many readers as the pool may open.
async fn open_native(
    pool: &SqlitePool,
    options: &SqlStoreOptions,
) -> Result<Option<native::Native>, StoreError> {
    let files: Vec<(String, String)> =
        sqlx::query_as("SELECT name, file FROM pragma_database_list")
            .fetch_all(pool)
            .await
            .map_err(db)?;
    let Some((_, file)) = files
        .into_iter()
        .find(|(name, file)| name == "main" && !file.is_empty())
    else {
        return Ok(None);
    };
    let readers = options
        .max_connections
        .unwrap_or(SqlStoreOptions::SQLITE_CONNECTIONS) as usize;
    let busy = options.busy_timeout;
    let exclusive = options.sqlite_exclusive;
    let path = std::path::PathBuf::from(file);
    tokio::task::spawn_blocking(move || native::Native::open(&path, readers, busy, exclusive))
        .await
        .map_err(StoreError::backend)?
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_version_matches_the_migrations() {
        assert_eq!(SqlStore::SCHEMA_VERSION, migrate::latest());
    }
}
