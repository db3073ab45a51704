//! [`CodeStore`]: authorization codes, consumed by one statement.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use doorman::{
    CodeIssuer, CodeRecord, CodeStore, CodeTake, GrantId, Redemption, StoreError, TokenHash,
};

use crate::SqlStore;
use crate::backend::{conflict, db, write_conn, write_tx};
use crate::grants::insert_grant;
use crate::rows::{CodeRow, code_from_row, scope_text, secs};
use crate::tokens::insert_tokens;

/// Takes the code with hash `$hash` (a `&TokenHash`) at `$now` on `$conn`,
/// inside a write: [`TAKE_CODE`], then, if it matched nothing,
/// [`USED_CODE`] to tell a replay from an unknown code. Evaluates to the
/// [`CodeTake`]; `?` leaves the enclosing body on a database error.
macro_rules! take {
    ($conn:ident, $hash:expr, $now:expr) => {{
        let hash: &TokenHash = $hash;
        // `fetch_all`, not `fetch_optional`: the statement runs to
        // completion before the connection is used again.
        let taken: Vec<CodeRow> = sqlx::query_as(TAKE_CODE)
            .bind(&hash.0[..])
            .bind(secs($now))
            .fetch_all(&mut *$conn)
            .await
            .map_err(db)?;
        match taken.into_iter().next() {
            Some(row) => CodeTake::Taken(code_from_row(*hash, row)?),
            None => {
                let used: Option<String> = sqlx::query_scalar(USED_CODE)
                    .bind(&hash.0[..])
                    .fetch_optional(&mut *$conn)
                    .await
                    .map_err(db)?;
                used.map_or(CodeTake::Missing, |g| CodeTake::Replayed(GrantId(g)))
            }
        }
    }};
}

#[async_trait]
impl CodeStore for SqlStore {
    /// Refuses (with [`StoreError::Conflict`]) a hash that is stored
    /// already: overwriting a used code's tombstone would allow a replay.
    async fn put_code(&self, code: &CodeRecord) -> Result<(), StoreError> {
        if let Some(native) = self.backend.native() {
            return crate::native_ops::put_code(native, code).await;
        }
        write_conn!(self.backend, |conn| {
            sqlx::query(INSERT_CODE)
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
                .execute(&mut *conn)
                .await
                .map_err(conflict("a code with this hash exists"))?;
            Ok(())
        })
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
        if let Some(native) = self.backend.native() {
            return crate::native_ops::take_code(native, *hash, now).await;
        }
        write_conn!(self.backend, |conn| Ok(take!(conn, hash, now)))
    }
}

/// Consumes a code: matches only while `consumed_at IS NULL`, so of any
/// number of concurrent callers, on any connection or process, exactly one
/// gets the row back. `$1` the hash, `$2` the time.
pub(crate) const TAKE_CODE: &str = "UPDATE doorman_codes SET consumed_at = $2 WHERE hash = $1 AND consumed_at IS NULL \
     RETURNING grant_id, client_id, user_id, redirect_uri, redirect_uri_explicit, scope, \
     code_challenge, issued_at, expires_at";

/// The grant id of a stored code (used, after [`TAKE_CODE`] matched nothing).
pub(crate) const USED_CODE: &str = "SELECT grant_id FROM doorman_codes WHERE hash = $1";

/// Stores a code; a stored hash is a unique violation.
pub(crate) const INSERT_CODE: &str = "INSERT INTO doorman_codes (hash, grant_id, client_id, user_id, redirect_uri, \
     redirect_uri_explicit, scope, code_challenge, issued_at, expires_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// [`Store::redeem_code`](doorman::Store::redeem_code) in one write
/// transaction: take the code, ask `issue`, store the grant and its tokens.
///
/// - Unknown or used code: as [`CodeStore::take_code`], `issue` is not
///   called and nothing is written.
/// - `issue` refuses: the consumption alone commits → `Refused`.
/// - The grant id exists (a revoked marker left by a concurrent replay):
///   the consumption alone commits → `Revoked`.
/// - Otherwise the grant row and all its tokens (one multi-row `INSERT`)
///   commit with the consumption → `Issued`.
///
/// A store error (a token naming another grant, a token hash stored
/// already, a lost connection) rolls everything back, the consumption
/// too: nothing was issued, and the code stays redeemable. On PostgreSQL
/// a transaction aborted as a deadlock victim is run again, calling `issue`
/// again; what the last call answered is what is stored.
///
/// On a SQLite file the transaction runs on the store's writer thread,
/// `issue` with it ([`crate::native_ops::redeem`]).
pub(crate) async fn redeem(
    store: &SqlStore,
    hash: &TokenHash,
    now: DateTime<Utc>,
    issue: Arc<CodeIssuer>,
) -> Result<Redemption, StoreError> {
    if let Some(native) = store.backend.native() {
        return crate::native_ops::redeem(native, *hash, now, issue).await;
    }
    write_tx!(store.backend, |conn, _d| {
        let (grant, tokens) = match issue_for(&*issue, take!(conn, hash, now))? {
            Ok(issued) => issued,
            Err(answer) => return Ok(answer),
        };
        if !insert_grant!(conn, &grant) {
            return Ok(Redemption::Revoked);
        }
        insert_tokens!(conn, &tokens);
        Ok(Redemption::Issued)
    })
}

/// What a redemption inserts: the grant and its first tokens.
pub(crate) type Issued = (doorman::GrantRecord, Vec<doorman::TokenRecord>);

/// The step of a redemption after the take: what to insert (`Ok`), or
/// the answer already decided (`Err`: a replay, an unknown code, or the
/// engine's refusal, which leaves the code consumed). Tokens naming
/// another grant than the one created are the caller's bug, refused as a
/// store conflict.
pub(crate) fn issue_for(
    issue: &CodeIssuer,
    take: CodeTake,
) -> Result<Result<Issued, Redemption>, StoreError> {
    let record = match take {
        CodeTake::Taken(record) => record,
        CodeTake::Replayed(grant) => return Ok(Err(Redemption::Replayed(grant))),
        CodeTake::Missing => return Ok(Err(Redemption::Missing)),
    };
    match issue(&record) {
        Err(refusal) => Ok(Err(Redemption::Refused(refusal))),
        Ok((grant, tokens)) if tokens.iter().any(|t| t.grant_id != grant.id) => Err(
            StoreError::Conflict("a token names another grant than the one created"),
        ),
        Ok(issued) => Ok(Ok(issued)),
    }
}
