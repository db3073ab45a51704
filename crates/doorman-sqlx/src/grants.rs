//! [`GrantStore`]: grants, their revocation, and consents.
//!
//! A grant's row is the lock its tokens hang on. Creating a grant inserts
//! the row; revoking it upserts the row as a revoked marker; rotating one
//! of its refresh tokens locks the row first (see `tokens.rs`). On
//! PostgreSQL these therefore wait for each other on that row, and each
//! deletes or inserts tokens only while holding it; on SQLite every write
//! transaction holds the database's single write lock. Either way, no
//! token of a revoked grant survives, whichever commits first.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use doorman::{Consent, GrantId, GrantRecord, GrantStore, Scopes, StoreError, TokenRecord, UserId};

use crate::SqlStore;
use crate::backend::{db, on_pool, write_tx};
use crate::rows::{ConsentRow, consent_from_row, scope_text, secs, union_text};
use crate::tokens::{DELETE_GRANT_TOKENS, insert_tokens};

/// Inserts `$grant` (a `&GrantRecord`) on `$conn` inside a write
/// transaction, unless a grant or a revoked marker with its id exists
/// (`INSERT … ON CONFLICT (id) DO NOTHING`; on PostgreSQL this waits for a
/// concurrent transaction writing that id). Evaluates to whether the row
/// was inserted.
macro_rules! insert_grant {
    ($conn:ident, $grant:expr) => {{
        let grant: &::doorman::GrantRecord = $grant;
        sqlx::query($crate::grants::INSERT_GRANT)
            .bind(grant.id.as_str())
            .bind(&grant.client_id)
            .bind(grant.user_id.as_ref().map(::doorman::UserId::as_str))
            .bind($crate::rows::scope_text(&grant.scope))
            .bind($crate::rows::secs(grant.created_at))
            .execute(&mut *$conn)
            .await
            .map_err($crate::backend::db)?
            .rows_affected()
            == 1
    }};
}

/// Inserts a grant unless its id exists (live or a revoked marker): `$1`
/// to `$5` its id, client, user, scope and creation time.
pub(crate) const INSERT_GRANT: &str = "INSERT INTO doorman_grants (id, client_id, user_id, scope, created_at, revoked) \
     VALUES ($1, $2, $3, $4, $5, FALSE) ON CONFLICT (id) DO NOTHING";

pub(crate) use insert_grant;

/// Upserts a grant's row as a revoked marker.
pub(crate) const REVOKE_GRANT: &str = "INSERT INTO doorman_grants (id, revoked) VALUES ($1, TRUE) \
     ON CONFLICT (id) DO UPDATE SET revoked = TRUE";
/// A consent: a [`ConsentRow`] (`$1` the user, `$2` the client).
pub(crate) const SELECT_CONSENT: &str = "SELECT client_id, scope, granted_at, updated_at FROM doorman_consents \
     WHERE user_id = $1 AND client_id = $2";
/// A user's consents, oldest first.
pub(crate) const LIST_CONSENTS: &str = "SELECT client_id, scope, granted_at, updated_at FROM doorman_consents \
     WHERE user_id = $1 ORDER BY granted_at, client_id";
/// A first consent (`$3` scope, `$4` now).
pub(crate) const INSERT_CONSENT: &str = "INSERT INTO doorman_consents (user_id, client_id, scope, granted_at, updated_at) \
     VALUES ($1, $2, $3, $4, $4) ON CONFLICT (user_id, client_id) DO NOTHING";
/// A widened consent (`$3` scope, `$4` now).
pub(crate) const UPDATE_CONSENT: &str =
    "UPDATE doorman_consents SET scope = $3, updated_at = $4 WHERE user_id = $1 AND client_id = $2";

/// [`GrantStore::revoke_consent`]'s statements, in order (`$1` the user,
/// `$2` the client): the consent; unused codes (after this, every code
/// left is used, and its grant is revoked whether or not it exists yet);
/// the live grants; the grants used codes may still create; their tokens.
pub(crate) const REVOKE_CONSENT: [&str; 5] = [
    "DELETE FROM doorman_consents WHERE user_id = $1 AND client_id = $2",
    "DELETE FROM doorman_codes WHERE user_id = $1 AND client_id = $2 AND consumed_at IS NULL",
    "UPDATE doorman_grants SET revoked = TRUE WHERE user_id = $1 AND client_id = $2 AND revoked = FALSE",
    "INSERT INTO doorman_grants (id, revoked) \
     SELECT DISTINCT grant_id, TRUE FROM doorman_codes WHERE user_id = $1 AND client_id = $2 \
     ON CONFLICT (id) DO UPDATE SET revoked = TRUE",
    "DELETE FROM doorman_tokens WHERE grant_id IN \
     (SELECT id FROM doorman_grants WHERE user_id = $1 AND client_id = $2) \
     OR grant_id IN (SELECT grant_id FROM doorman_codes WHERE user_id = $1 AND client_id = $2)",
];

/// Whether [`REVOKE_CONSENT`]'s changed-row counts mean a consent or a
/// live grant existed (unused codes are not access yet).
pub(crate) fn consent_existed(changed: &[usize]) -> bool {
    changed.first().is_some_and(|&n| n > 0) || changed.get(2).is_some_and(|&n| n > 0)
}

#[async_trait]
impl GrantStore for SqlStore {
    /// One transaction: `INSERT … ON CONFLICT (id) DO NOTHING` of the
    /// grant (a live grant or a revoked marker with this id makes it a
    /// no-op, answered `Ok(false)`), then the tokens. A token hash that is
    /// stored already fails the call with [`StoreError::Conflict`] and
    /// writes nothing. On SQLite's own writer the whole transaction is one
    /// script, one round trip (`tokens::grant_script`).
    async fn create_grant(
        &self,
        grant: &GrantRecord,
        tokens: &[TokenRecord],
    ) -> Result<bool, StoreError> {
        if tokens.iter().any(|t| t.grant_id != grant.id) {
            return Err(StoreError::Conflict(
                "a token names another grant than the one created",
            ));
        }
        if let Some(native) = self.backend.native() {
            return crate::native_ops::create_grant(native, grant, tokens).await;
        }
        write_tx!(self.backend, |conn, _d| {
            if !insert_grant!(conn, grant) {
                return Ok(false);
            }
            insert_tokens!(conn, tokens);
            Ok(true)
        })
    }

    /// One transaction: upsert the grant's row as revoked (taking its lock,
    /// or waiting for a concurrent creation or rotation to commit), then
    /// delete its tokens.
    async fn revoke_grant(&self, grant_id: &GrantId) -> Result<(), StoreError> {
        if let Some(native) = self.backend.native() {
            return crate::native_ops::revoke_grant(native, grant_id).await;
        }
        write_tx!(self.backend, |conn, _d| {
            sqlx::query(REVOKE_GRANT)
                .bind(grant_id.as_str())
                .execute(&mut *conn)
                .await
                .map_err(db)?;
            sqlx::query(DELETE_GRANT_TOKENS)
                .bind(grant_id.as_str())
                .execute(&mut *conn)
                .await
                .map_err(db)?;
            Ok(())
        })
    }

    async fn consent(&self, user: &UserId, client_id: &str) -> Result<Option<Consent>, StoreError> {
        if let Some(native) = self.backend.native() {
            return crate::native_ops::consent(native, user, client_id);
        }
        let row: Option<ConsentRow> = on_pool!(self.backend, |pool| {
            sqlx::query_as(SELECT_CONSENT)
                .bind(user.as_str())
                .bind(client_id)
                .fetch_optional(pool)
                .await
                .map_err(db)?
        });
        row.map(|r| consent_from_row(user, r)).transpose()
    }

    /// Inserts the consent, or else locks it and stores the union of the
    /// scopes, in one transaction; concurrent approvals add up.
    async fn add_consent(
        &self,
        user: &UserId,
        client_id: &str,
        scope: &Scopes,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if let Some(native) = self.backend.native() {
            return crate::native_ops::add_consent(native, user, client_id, scope, now).await;
        }
        write_tx!(self.backend, |conn, d| {
            // A consent revoked between the two statements sends us round
            // again; three rounds would take a remarkable coincidence.
            for _ in 0..3 {
                let inserted = sqlx::query(INSERT_CONSENT)
                    .bind(user.as_str())
                    .bind(client_id)
                    .bind(scope_text(scope))
                    .bind(secs(now))
                    .execute(&mut *conn)
                    .await
                    .map_err(db)?
                    .rows_affected();
                if inserted == 1 {
                    return Ok(());
                }
                let stored: Option<String> = sqlx::query_scalar(d.lock_consent)
                    .bind(user.as_str())
                    .bind(client_id)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(db)?;
                let Some(stored) = stored else { continue };
                sqlx::query(UPDATE_CONSENT)
                    .bind(user.as_str())
                    .bind(client_id)
                    .bind(union_text(&stored, scope))
                    .bind(secs(now))
                    .execute(&mut *conn)
                    .await
                    .map_err(db)?;
                return Ok(());
            }
            Err(StoreError::message(
                "doorman-sqlx: add_consent kept racing with revoke_consent",
            ))
        })
    }

    async fn list_consents(&self, user: &UserId) -> Result<Vec<Consent>, StoreError> {
        if let Some(native) = self.backend.native() {
            return crate::native_ops::list_consents(native, user);
        }
        let rows: Vec<ConsentRow> = on_pool!(self.backend, |pool| {
            sqlx::query_as(LIST_CONSENTS)
                .bind(user.as_str())
                .fetch_all(pool)
                .await
                .map_err(db)?
        });
        rows.into_iter()
            .map(|r| consent_from_row(user, r))
            .collect()
    }

    /// One transaction: the consent, the user's unused codes for the
    /// client, and every grant of the user to the client — those created
    /// and those a used code may still create — revoked (left as markers)
    /// with all their tokens.
    async fn revoke_consent(&self, user: &UserId, client_id: &str) -> Result<bool, StoreError> {
        if let Some(native) = self.backend.native() {
            return crate::native_ops::revoke_consent(native, user, client_id).await;
        }
        write_tx!(self.backend, |conn, _d| {
            let mut changed = Vec::with_capacity(5);
            for sql in REVOKE_CONSENT {
                let result = sqlx::query(sql)
                    .bind(user.as_str())
                    .bind(client_id)
                    .execute(&mut *conn)
                    .await;
                changed.push(result.map_err(db)?.rows_affected() as usize);
            }
            Ok(consent_existed(&changed))
        })
    }
}
