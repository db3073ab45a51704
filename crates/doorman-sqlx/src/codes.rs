//! [`CodeStore`]: authorization codes, consumed by one statement.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use doorman::{CodeRecord, CodeStore, CodeTake, GrantId, StoreError, TokenHash};

use crate::SqlStore;
use crate::backend::{conflict, db, on_pool};
use crate::rows::{CodeRow, code_from_row, scope_text, secs};

#[async_trait]
impl CodeStore for SqlStore {
    /// Refuses (with [`StoreError::Conflict`]) a hash that is stored
    /// already: overwriting a used code's tombstone would allow a replay.
    async fn put_code(&self, code: &CodeRecord) -> Result<(), StoreError> {
        on_pool!(self.backend, |pool| {
            sqlx::query(
                "INSERT INTO doorman_codes (hash, grant_id, client_id, user_id, redirect_uri, redirect_uri_explicit, \
                 scope, code_challenge, issued_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&code.hash.0[..])
            .bind(code.grant_id.as_str())
            .bind(&code.client_id)
            .bind(code.user_id.as_str())
            .bind(&code.redirect_uri)
            .bind(code.redirect_uri_explicit)
            .bind(scope_text(&code.scope))
            .bind(code.code_challenge.as_deref())
            .bind(secs(code.issued_at))
            .bind(secs(code.expires_at))
            .execute(pool)
            .await
            .map_err(conflict("a code with this hash exists"))?;
        });
        Ok(())
    }

    /// One `UPDATE … WHERE consumed_at IS NULL RETURNING …` consumes the
    /// code: the database lets exactly one of any number of concurrent
    /// callers, on any connection or process, match the unconsumed row
    /// (PostgreSQL makes the others wait for the row lock and re-check;
    /// SQLite runs writers one at a time). A caller that matched nothing
    /// then reads the row to tell a replay from an unknown code. A used
    /// code answers [`CodeTake::Replayed`] until
    /// [`Store::purge_expired`](doorman::Store::purge_expired) removes it.
    async fn take_code(
        &self,
        hash: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<CodeTake, StoreError> {
        let key = &hash.0[..];
        on_pool!(self.backend, |pool| {
            // `fetch_all`, not `fetch_optional`: the statement runs to
            // completion before the connection goes back to the pool.
            let taken: Vec<CodeRow> = sqlx::query_as(
                "UPDATE doorman_codes SET consumed_at = $2 WHERE hash = $1 AND consumed_at IS NULL \
                 RETURNING grant_id, client_id, user_id, redirect_uri, redirect_uri_explicit, scope, \
                 code_challenge, issued_at, expires_at",
            )
            .bind(key)
            .bind(secs(now))
            .fetch_all(pool)
            .await
            .map_err(db)?;
            if let Some(row) = taken.into_iter().next() {
                return Ok(CodeTake::Taken(code_from_row(*hash, row)?));
            }
            let used: Option<String> =
                sqlx::query_scalar("SELECT grant_id FROM doorman_codes WHERE hash = $1")
                    .bind(key)
                    .fetch_optional(pool)
                    .await
                    .map_err(db)?;
            Ok(used.map_or(CodeTake::Missing, |g| CodeTake::Replayed(GrantId(g))))
        })
    }
}
