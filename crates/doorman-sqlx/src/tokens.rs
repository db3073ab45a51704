//! [`TokenStore`]: bearer validation, refresh rotation, and purging.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use doorman::{Purged, Rotation, StoreError, TokenHash, TokenKind, TokenRecord, TokenStore};

use crate::SqlStore;
use crate::backend::{db, on_pool, write_conn, write_tx};
use crate::rows::{TokenRow, kind_text, secs, token_from_row};

/// Inserts `$tokens` (a `&[TokenRecord]`) on `$conn` inside a write
/// transaction, all in one multi-row `INSERT` (none for an empty slice),
/// binding each token's [`TOKEN_COLUMNS`] columns in [`INSERT_TOKEN`]'s
/// order; a hash that exists fails the transaction with
/// [`StoreError::Conflict`].
macro_rules! insert_tokens {
    ($conn:ident, $tokens:expr) => {{
        let tokens: &[::doorman::TokenRecord] = $tokens;
        if !tokens.is_empty() {
            let sql = sqlx::AssertSqlSafe($crate::tokens::insert_tokens_sql(tokens.len()));
            let mut query = sqlx::query(sql);
            for t in tokens {
                query = query
                    .bind(&t.hash.0[..])
                    .bind($crate::rows::kind_text(t.kind))
                    .bind(t.grant_id.as_str())
                    .bind(&t.client_id)
                    .bind(t.user_id.as_ref().map(::doorman::UserId::as_str))
                    .bind($crate::rows::scope_text(&t.scope))
                    .bind($crate::rows::secs(t.issued_at))
                    .bind(t.expires_at.map($crate::rows::secs))
                    .bind(t.consumed_at.map($crate::rows::secs));
            }
            query
                .execute(&mut *$conn)
                .await
                .map_err($crate::backend::conflict("a token with this hash exists"))?;
        }
    }};
}

pub(crate) use insert_tokens;

/// Columns of a token row, in the order [`insert_tokens!`] binds them.
const TOKEN_COLUMNS: usize = 9;

/// `INSERT INTO doorman_tokens … VALUES ($1, …, $9), ($10, …), …` for
/// `rows` rows. Only numbered placeholders are generated: nothing of a
/// record reaches the SQL text.
pub(crate) fn insert_tokens_sql(rows: usize) -> String {
    let mut sql = String::with_capacity(160 + rows * 48);
    sql.push_str(INSERT_TOKENS);
    sql.push_str("VALUES ");
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for col in 0..TOKEN_COLUMNS {
            if col > 0 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&(1 + row * TOKEN_COLUMNS + col).to_string());
        }
        sql.push(')');
    }
    sql
}

/// One token row: `insert_tokens_sql(1)`, for statements run row by row.
pub(crate) const INSERT_TOKEN: &str = "INSERT INTO doorman_tokens (hash, kind, grant_id, client_id, user_id, scope, \
     issued_at, expires_at, consumed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

const INSERT_TOKENS: &str = "INSERT INTO doorman_tokens (hash, kind, grant_id, client_id, user_id, scope, \
     issued_at, expires_at, consumed_at) ";

/// A token by its hash: a [`TokenRow`].
pub(crate) const SELECT_TOKEN: &str = "SELECT kind, grant_id, client_id, user_id, scope, issued_at, expires_at, consumed_at \
     FROM doorman_tokens WHERE hash = $1";
/// A token's grant id and kind.
pub(crate) const TOKEN_GRANT: &str = "SELECT grant_id, kind FROM doorman_tokens WHERE hash = $1";
/// A token's `consumed_at`.
pub(crate) const TOKEN_CONSUMED: &str = "SELECT consumed_at FROM doorman_tokens WHERE hash = $1";
/// Marks a grant revoked.
pub(crate) const FLAG_REVOKED: &str = "UPDATE doorman_grants SET revoked = TRUE WHERE id = $1";
/// Deletes every token of a grant.
pub(crate) const DELETE_GRANT_TOKENS: &str = "DELETE FROM doorman_tokens WHERE grant_id = $1";
/// Marks an unused refresh token used at `$2`.
pub(crate) const MARK_USED: &str =
    "UPDATE doorman_tokens SET consumed_at = $2 WHERE hash = $1 AND consumed_at IS NULL";
/// Deletes a grant's access tokens.
pub(crate) const DELETE_ACCESS: &str =
    "DELETE FROM doorman_tokens WHERE grant_id = $1 AND kind = 'access'";
/// Caps a grant's access tokens at `$2`.
pub(crate) const CAP_ACCESS: &str = "UPDATE doorman_tokens SET expires_at = $2 WHERE grant_id = $1 AND kind = 'access' \
     AND (expires_at IS NULL OR expires_at > $2)";
/// Deletes one token.
pub(crate) const DELETE_TOKEN: &str = "DELETE FROM doorman_tokens WHERE hash = $1";

#[async_trait]
impl TokenStore for SqlStore {
    /// One `SELECT … WHERE hash = $1` on the primary key.
    async fn token(&self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        if let Some(native) = self.backend.native() {
            return crate::native_ops::token(native, hash);
        }
        let row: Option<TokenRow> = on_pool!(self.backend, |pool| {
            sqlx::query_as(SELECT_TOKEN)
                .bind(&hash.0[..])
                .fetch_optional(pool)
                .await
                .map_err(db)?
        });
        row.map(|r| token_from_row(*hash, r)).transpose()
    }

    /// One transaction that locks the grant's row before it looks at the
    /// token again, so concurrent rotations of one token, and a rotation
    /// racing a revocation, take turns: the first marks the token used, the
    /// next finds it used and revokes the grant, any later one finds the
    /// grant revoked (`Missing`).
    async fn rotate_refresh(
        &self,
        old: &TokenHash,
        now: DateTime<Utc>,
        access_valid_until: DateTime<Utc>,
        new_tokens: &[TokenRecord],
    ) -> Result<Rotation, StoreError> {
        if let Some(native) = self.backend.native() {
            return crate::native_ops::rotate_refresh(
                native,
                old,
                now,
                access_valid_until,
                new_tokens,
            )
            .await;
        }
        let key = &old.0[..];
        write_tx!(self.backend, |conn, d| {
            let found: Option<(String, String)> = sqlx::query_as(TOKEN_GRANT)
                .bind(key)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db)?;
            let grant_id = match found {
                Some((grant_id, kind)) if kind == kind_text(TokenKind::Refresh) => grant_id,
                _ => return Ok(Rotation::Missing),
            };
            let revoked: Option<bool> = sqlx::query_scalar(d.lock_grant)
                .bind(&grant_id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db)?;
            if revoked != Some(false) {
                return Ok(Rotation::Missing);
            }
            // Read again under the grant's lock: a rotation or revocation
            // that committed while we waited is visible now.
            let consumed: Option<Option<i64>> = sqlx::query_scalar(TOKEN_CONSUMED)
                .bind(key)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db)?;
            match consumed {
                None => return Ok(Rotation::Missing),
                Some(Some(_)) => {
                    // RFC 9700 §4.14.2: a used refresh token came back; the
                    // whole grant goes.
                    sqlx::query(FLAG_REVOKED)
                        .bind(&grant_id)
                        .execute(&mut *conn)
                        .await
                        .map_err(db)?;
                    sqlx::query(DELETE_GRANT_TOKENS)
                        .bind(&grant_id)
                        .execute(&mut *conn)
                        .await
                        .map_err(db)?;
                    return Ok(Rotation::Reused);
                }
                Some(None) => {}
            }
            if new_tokens.iter().any(|t| t.grant_id.as_str() != grant_id) {
                return Err(StoreError::Conflict(
                    "a new token names another grant than the rotated one",
                ));
            }
            let marked = sqlx::query(MARK_USED)
                .bind(key)
                .bind(secs(now))
                .execute(&mut *conn)
                .await
                .map_err(db)?
                .rows_affected();
            if marked == 0 {
                // Purged under us (a purge does not take the grant's lock).
                return Ok(Rotation::Missing);
            }
            if access_valid_until <= now {
                sqlx::query(DELETE_ACCESS)
                    .bind(&grant_id)
                    .execute(&mut *conn)
                    .await
                    .map_err(db)?;
            } else {
                sqlx::query(CAP_ACCESS)
                    .bind(&grant_id)
                    .bind(secs(access_valid_until))
                    .execute(&mut *conn)
                    .await
                    .map_err(db)?;
            }
            insert_tokens!(conn, new_tokens);
            Ok(Rotation::Rotated)
        })
    }

    async fn delete_token(&self, hash: &TokenHash) -> Result<bool, StoreError> {
        if let Some(native) = self.backend.native() {
            return crate::native_ops::delete_token(native, hash).await;
        }
        let n = write_conn!(self.backend, |conn| {
            sqlx::query(DELETE_TOKEN)
                .bind(&hash.0[..])
                .execute(&mut *conn)
                .await
                .map_err(db)
                .map(|done| done.rows_affected())
        })?;
        Ok(n > 0)
    }
}

/// [`Store::purge_expired`](doorman::Store::purge_expired): on a SQLite
/// file in steps ([`crate::native_ops::purge`]); on the sqlx SQLite pool
/// one write transaction; on PostgreSQL three statements that skip rows
/// other transactions hold.
pub(crate) async fn purge(store: &SqlStore, now: DateTime<Utc>) -> Result<Purged, StoreError> {
    if let Some(native) = store.backend.native() {
        return crate::native_ops::purge(native, now).await;
    }
    write_tx!(store.backend, |conn, d| {
        let codes = sqlx::query(d.purge_codes)
            .bind(secs(now))
            .execute(&mut *conn)
            .await
            .map_err(db)?
            .rows_affected();
        let tokens = sqlx::query(d.purge_tokens)
            .bind(secs(now))
            .execute(&mut *conn)
            .await
            .map_err(db)?
            .rows_affected();
        let grants: Vec<bool> = sqlx::query_scalar(d.purge_grants)
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
        let grants = grants.into_iter().filter(|revoked| !revoked).count() as u64;
        Ok(Purged {
            codes,
            tokens,
            grants,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_one_row_insert_is_the_multi_row_one_for_one_row() {
        assert_eq!(insert_tokens_sql(1), INSERT_TOKEN);
    }

    #[test]
    fn the_multi_row_insert_numbers_every_placeholder_once() {
        let one = insert_tokens_sql(1);
        assert!(
            one.ends_with("VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"),
            "{one}"
        );
        let three = insert_tokens_sql(3);
        assert!(
            three.ends_with(
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9), \
                 ($10, $11, $12, $13, $14, $15, $16, $17, $18), \
                 ($19, $20, $21, $22, $23, $24, $25, $26, $27)"
            ),
            "{three}"
        );
    }
}
