//! Opening the database named by `DATABASE_URL`: the OAuth store
//! (`doorman_sqlx::SqlStore`, tables `doorman_*`) and the host's own
//! tables (`demo_*`) share it, and its pool. `memory:` keeps both in
//! process memory instead (`doorman::MemoryStore`), for benchmarks and
//! trials: nothing survives the process.

use std::sync::Arc;

use doorman::{MemoryStore, Store};
use doorman_sqlx::{SqlStore, SqlStoreOptions};

use crate::config::redact_url;
use crate::db::Db;
use crate::error::DemoError;

/// The opened database.
pub(crate) struct Storage {
    /// The OAuth store.
    pub store: Arc<dyn Store>,
    /// The same store, to close its pool (none in memory).
    sql: Option<SqlStore>,
    /// The host's tables, on the store's pool.
    pub db: Db,
    /// What to print: the backend and where it is, without credentials.
    pub description: String,
}

impl Storage {
    /// Connects to `url` (`sqlite:…` or `postgres://…` / `postgresql://…`)
    /// and brings the store's schema up to date; `sqlite_exclusive`: the
    /// process owns a SQLite file alone.
    pub(crate) async fn open(url: &str, sqlite_exclusive: bool) -> Result<Self, DemoError> {
        if url == MEMORY_URL {
            let memory = Arc::new(MemoryStore::new());
            return Ok(Self {
                store: memory.clone(),
                sql: None,
                db: Db::memory(memory),
                description: describe(url),
            });
        }
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(DemoError::Config(
                "DATABASE_URL: expected sqlite://…, postgres://… or memory:".into(),
            ));
        }
        let options = SqlStoreOptions::new().sqlite_exclusive(sqlite_exclusive);
        let sql = SqlStore::connect_with(url, options).await?;
        // One pool for both: SQLite then has one set of writers queueing
        // for its lock, and `sqlite::memory:` one database.
        let db = match (sql.sqlite_pool(), sql.pg_pool()) {
            (Some(pool), _) => Db::Sqlite(pool.clone(), sql.clone()),
            (None, Some(pool)) => Db::Postgres(pool.clone(), sql.clone()),
            (None, None) => return Err(DemoError::Database("the store exposes no pool".into())),
        };
        let description = describe(url);
        Ok(Self {
            store: Arc::new(sql.clone()),
            sql: Some(sql),
            db,
            description,
        })
    }

    /// Closes the pool, waiting for connections in use to come back.
    pub(crate) async fn close(&self) {
        if let Some(sql) = &self.sql {
            sql.close().await;
        }
    }
}

/// `DATABASE_URL` for process memory.
pub(crate) const MEMORY_URL: &str = "memory:";

/// `SQLite (file)` or `PostgreSQL (postgres://user@host/db)`.
pub(crate) fn describe(url: &str) -> String {
    if url == MEMORY_URL {
        return "memory (this process only: lost when it stops)".to_owned();
    }
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let path = rest.trim_start_matches("//");
        let path = path.split('?').next().unwrap_or("");
        if path.is_empty() || path == ":memory:" {
            "SQLite (in memory)".to_owned()
        } else {
            format!("SQLite ({path})")
        }
    } else {
        format!("PostgreSQL ({})", redact_url(url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_carry_no_password() {
        assert_eq!(
            describe("sqlite://doorman-demo.db?mode=rwc"),
            "SQLite (doorman-demo.db)"
        );
        assert_eq!(describe("sqlite::memory:"), "SQLite (in memory)");
        assert!(describe("memory:").starts_with("memory"));
        assert_eq!(
            describe("postgres://u:hunter2@db:5432/app"),
            "PostgreSQL (postgres://u@db:5432/app)"
        );
    }
}
