//! Pool settings for [`SqlStore::connect_with`](crate::SqlStore::connect_with).

use std::time::Duration;

/// How [`SqlStore::connect_with`](crate::SqlStore::connect_with) sizes and
/// tunes its pool. The defaults suit a web server.
///
/// ```
/// use std::time::Duration;
/// use doorman_sqlx::SqlStoreOptions;
///
/// let options = SqlStoreOptions::new().max_connections(4).busy_timeout(Duration::from_secs(30));
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
pub struct SqlStoreOptions {
    pub(crate) max_connections: Option<u32>,
    pub(crate) busy_timeout: Duration,
    pub(crate) acquire_timeout: Duration,
    pub(crate) sqlite_exclusive: bool,
}

impl SqlStoreOptions {
    /// Default number of SQLite readers: they run in parallel under WAL.
    /// Writes take turns on one more connection of their own.
    pub const SQLITE_CONNECTIONS: u32 = 8;
    /// Default pool size on PostgreSQL, per store (per app instance).
    pub const POSTGRES_CONNECTIONS: u32 = 32;

    /// The defaults: 8 reading connections and 1 writing on a SQLite file
    /// (1 in all for `:memory:`), 32 on PostgreSQL; a 10 s SQLite busy
    /// timeout; a 30 s wait for a free connection.
    pub fn new() -> Self {
        Self {
            max_connections: None,
            busy_timeout: Duration::from_secs(10),
            acquire_timeout: Duration::from_secs(30),
            sqlite_exclusive: false,
        }
    }

    /// The most connections the pool opens (ignored for SQLite `:memory:`,
    /// which needs exactly one). On a SQLite file this is both the number
    /// of the store's own reading connections and the size of the sqlx
    /// pool kept for the host's queries (opened as they are needed); the
    /// store's writer and checkpoint connections are two more.
    #[must_use]
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = Some(n.max(1));
        self
    }

    /// SQLite only: how long a write waits for a writer of another
    /// process (or of another pool on the same file) to finish before
    /// failing with `database is locked`. The store's own writes queue in
    /// the process and never wait here for each other.
    #[must_use]
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// SQLite files only: whether this process owns the file alone
    /// (default `false`: shared).
    ///
    /// Shared, every process may open the file: the store, a second
    /// instance, the `sqlite3` shell, the host's management commands. The
    /// price is a lock on the `-shm` file (an `fcntl` system call under a
    /// mutex shared by the process's connections) that SQLite takes and
    /// drops around transactions. The store keeps one connection holding
    /// the readers' lock, so that reads mostly only count it (BENCHMARKS.md,
    /// S13); commits still pay it, and so do reads in the few milliseconds
    /// after a commit until that connection has moved past it.
    ///
    /// Exclusive, the store opens the file with SQLite's `unix-excl` VFS:
    /// the first connection locks the file for this process, the WAL index
    /// lives in the process's memory instead of the `-shm` file, and
    /// transactions take no file lock at all. On the benchmark box that
    /// made bearer checks 30–60 % faster than shared, and code exchanges
    /// up to 40 %, until the shared store kept its readers' lock; since,
    /// reads run about as fast in both modes and code exchanges about a
    /// tenth faster exclusive (BENCHMARKS.md, S8 and S13). What it costs:
    ///
    /// - No other process can use the file while the store is open: it
    ///   gets `database is locked` after its busy timeout — including a
    ///   new instance started before the old one has stopped, and the
    ///   `sqlite3` shell. Opening the store fails the same way while
    ///   another process has the file open.
    /// - In this process, use the file only through the store
    ///   ([`SqlStore::sqlite_pool`](crate::SqlStore::sqlite_pool),
    ///   [`SqlStore::sqlite_read`](crate::SqlStore::sqlite_read)): a
    ///   connection opened another way would use the other VFS on the
    ///   same file.
    ///
    /// Ignored for `:memory:` and on PostgreSQL.
    #[must_use]
    pub fn sqlite_exclusive(mut self, exclusive: bool) -> Self {
        self.sqlite_exclusive = exclusive;
        self
    }

    /// How long a call waits for a free connection before failing.
    #[must_use]
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }
}

impl Default for SqlStoreOptions {
    fn default() -> Self {
        Self::new()
    }
}
