//! Embedded, versioned, forward-only migrations.
//!
//! Applied versions are recorded in `doorman_migrations` (not sqlx's
//! `_sqlx_migrations`, which the host may use for its own tables in the
//! same database) with a SHA-256 of their SQL, so an edited migration is
//! refused instead of silently diverging. All pending migrations run in one
//! transaction that first takes a lock — `BEGIN IMMEDIATE` on SQLite, a
//! transaction-scoped advisory lock on PostgreSQL — so any number of
//! processes may connect at once: one applies, the others wait and then
//! find nothing to do. Versions the database has but this build does not
//! know (a newer instance during a rolling upgrade) are left alone.

use chrono::Utc;
use doorman::StoreError;
use sha2::{Digest, Sha256};

use crate::backend::{Backend, db, write_tx};

/// One schema change, in both dialects.
struct Migration {
    version: i64,
    description: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

/// Every migration, oldest first. Never edit one that has shipped: add
/// the next version instead.
const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "initial schema",
    sqlite: include_str!("../migrations/sqlite/0001_initial.sql"),
    postgres: include_str!("../migrations/postgres/0001_initial.sql"),
}];

/// Brings the schema up to date; answers how many migrations it applied.
pub(crate) async fn run(backend: &Backend) -> Result<usize, StoreError> {
    write_tx!(backend, |conn, d| {
        sqlx::query(d.migration_lock)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        sqlx::raw_sql(d.migrations_table)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        let applied: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT version, checksum FROM doorman_migrations")
                .fetch_all(&mut *conn)
                .await
                .map_err(db)?;
        let mut count = 0;
        for m in MIGRATIONS {
            let sql = if d.name == "sqlite" {
                m.sqlite
            } else {
                m.postgres
            };
            let checksum = Sha256::digest(sql.as_bytes()).to_vec();
            match applied.iter().find(|(v, _)| *v == m.version) {
                Some((_, sum)) if *sum == checksum => continue,
                Some(_) => {
                    return Err(StoreError::message(format!(
                        "doorman-sqlx: migration {} ({}) differs from the one applied to this database",
                        m.version, m.description
                    )));
                }
                None => {}
            }
            sqlx::raw_sql(sql).execute(&mut *conn).await.map_err(db)?;
            sqlx::query(
                "INSERT INTO doorman_migrations (version, description, checksum, applied_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(m.version)
            .bind(m.description)
            .bind(checksum)
            .bind(Utc::now().timestamp())
            .execute(&mut *conn)
            .await
            .map_err(db)?;
            count += 1;
        }
        Ok(count)
    })
}

/// The newest schema version this build knows.
#[cfg(test)]
pub(crate) fn latest() -> i64 {
    MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0)
}
