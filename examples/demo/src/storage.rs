//! Opening the database named by `DATABASE_URL`: the OAuth store and the
//! host's own tables share it.

use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use doorman::{MemoryStore, Store};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

use crate::config::redact_url;
use crate::db::Db;
use crate::error::DemoError;

/// The opened database.
pub(crate) struct Storage {
    /// The OAuth store.
    pub store: Arc<dyn Store>,
    /// The host's tables.
    pub db: Db,
    /// What to print: the backend and where it is, without credentials.
    pub description: String,
}

impl Storage {
    /// Connects to `url` (`sqlite:…` or `postgres:…` / `postgresql:…`).
    pub(crate) async fn open(url: &str) -> Result<Self, DemoError> {
        let db = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(5));
            Db::Sqlite(SqlitePoolOptions::new().connect_with(options).await?)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Db::Postgres(
                PgPoolOptions::new()
                    .max_connections(10)
                    .connect(url)
                    .await?,
            )
        } else {
            return Err(DemoError::Config(
                "DATABASE_URL: expected sqlite://… or postgres://…".into(),
            ));
        };
        let description = describe(url);
        // TODO(doorman-sqlx): use SqlStore over the same pool once it lands.
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        Ok(Self {
            store,
            db,
            description,
        })
    }

    /// Closes the pools, waiting for connections in use to come back.
    pub(crate) async fn close(&self) {
        self.db.close().await;
    }
}

/// `SQLite (file)` or `PostgreSQL (postgres://user@host/db)`.
pub(crate) fn describe(url: &str) -> String {
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
        assert_eq!(
            describe("postgres://u:hunter2@db:5432/app"),
            "PostgreSQL (postgres://u@db:5432/app)"
        );
    }
}
