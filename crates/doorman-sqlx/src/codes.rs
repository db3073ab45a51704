//! [`CodeStore`]: authorization codes, consumed by one statement.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use doorman::{
    CodeIssuer, CodeRecord, CodeStore, CodeTake, GrantId, Redemption, StoreError, TokenHash,
};

use crate::SqlStore;
use crate::backend::{conflict, db, sqlite_script, write_conn, write_tx};
use crate::grants::insert_grant;
use crate::rows::{CodeRow, code_from_row, scope_text, secs};
use crate::tokens::{bind_grant_and_tokens, grant_script, insert_tokens};

#[async_trait]
impl CodeStore for SqlStore {
    /// Refuses (with [`StoreError::Conflict`]) a hash that is stored
    /// already: overwriting a used code's tombstone would allow a replay.
    async fn put_code(&self, code: &CodeRecord) -> Result<(), StoreError> {
        write_conn!(self.backend, |conn| {
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
        let key = &hash.0[..];
        write_conn!(self.backend, |conn| {
            // `fetch_all`, not `fetch_optional`: the statement runs to
            // completion before the connection is used again.
            let taken: Vec<CodeRow> = sqlx::query_as(TAKE_CODE)
                .bind(key)
                .bind(secs(now))
                .fetch_all(&mut *conn)
                .await
                .map_err(db)?;
            if let Some(row) = taken.into_iter().next() {
                return Ok(CodeTake::Taken(code_from_row(*hash, row)?));
            }
            let used: Option<String> = sqlx::query_scalar(USED_CODE)
                .bind(key)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db)?;
            Ok(used.map_or(CodeTake::Missing, |g| CodeTake::Replayed(GrantId(g))))
        })
    }
}

/// Consumes a code: matches only while `consumed_at IS NULL`, so of any
/// number of concurrent callers, on any connection or process, exactly one
/// gets the row back. `$1` the hash, `$2` the time.
const TAKE_CODE: &str = "UPDATE doorman_codes SET consumed_at = $2 WHERE hash = $1 AND consumed_at IS NULL \
     RETURNING grant_id, client_id, user_id, redirect_uri, redirect_uri_explicit, scope, \
     code_challenge, issued_at, expires_at";

/// The grant id of a stored code (used, after [`TAKE_CODE`] matched nothing).
const USED_CODE: &str = "SELECT grant_id FROM doorman_codes WHERE hash = $1";

/// [`TAKE_CODE`] as the first statement of an SQLite write transaction.
const BEGIN_TAKE_CODE: &str = "BEGIN IMMEDIATE; UPDATE doorman_codes SET consumed_at = $2 \
     WHERE hash = $1 AND consumed_at IS NULL \
     RETURNING grant_id, client_id, user_id, redirect_uri, redirect_uri_explicit, scope, \
     code_challenge, issued_at, expires_at";

/// [`USED_CODE`], then the end of the transaction [`BEGIN_TAKE_CODE`] began.
const USED_CODE_COMMIT: &str = "SELECT grant_id FROM doorman_codes WHERE hash = $1; COMMIT";

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
/// On SQLite's own writer the transaction is two scripts, two round trips
/// (see [`sqlite_script!`](crate::backend::sqlite_script)): `BEGIN
/// IMMEDIATE` with the code's consumption, then, after `issue`, the
/// grant, its tokens and `COMMIT` ([`grant_script`]).
pub(crate) async fn redeem(
    store: &SqlStore,
    hash: &TokenHash,
    now: DateTime<Utc>,
    issue: &CodeIssuer<'_>,
) -> Result<Redemption, StoreError> {
    let key = &hash.0[..];
    let script = sqlite_script!(store.backend, |conn| {
        let taken: Vec<CodeRow> = sqlx::query_as(BEGIN_TAKE_CODE)
            .bind(key)
            .bind(secs(now))
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
        let Some(row) = taken.into_iter().next() else {
            // Nothing was written: the read and the end in one trip.
            let used: Vec<String> = sqlx::query_scalar(USED_CODE_COMMIT)
                .bind(key)
                .fetch_all(&mut *conn)
                .await
                .map_err(db)?;
            return Ok(used
                .into_iter()
                .next()
                .map_or(Redemption::Missing, |g| Redemption::Replayed(GrantId(g))));
        };
        let (grant, tokens) = match run_issuer(issue, *hash, row)? {
            Ok(issued) => issued,
            Err(refusal) => {
                sqlx::query("COMMIT")
                    .execute(&mut *conn)
                    .await
                    .map_err(db)?;
                return Ok(Redemption::Refused(refusal));
            }
        };
        let sql = sqlx::AssertSqlSafe(grant_script(false, tokens.len()));
        let inserted = bind_grant_and_tokens!(sqlx::query(sql), &grant, &tokens)
            .fetch_all(&mut *conn)
            .await
            .map_err(conflict("a token with this hash exists"))?;
        Ok(if inserted.is_empty() {
            Redemption::Revoked
        } else {
            Redemption::Issued
        })
    });
    if let Some(result) = script {
        return result;
    }
    write_tx!(store.backend, |conn, _d| {
        let taken: Vec<CodeRow> = sqlx::query_as(TAKE_CODE)
            .bind(key)
            .bind(secs(now))
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
        let Some(row) = taken.into_iter().next() else {
            let used: Option<String> = sqlx::query_scalar(USED_CODE)
                .bind(key)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db)?;
            return Ok(used.map_or(Redemption::Missing, |g| Redemption::Replayed(GrantId(g))));
        };
        let (grant, tokens) = match run_issuer(issue, *hash, row)? {
            Ok(issued) => issued,
            Err(refusal) => return Ok(Redemption::Refused(refusal)),
        };
        if !insert_grant!(conn, &grant) {
            return Ok(Redemption::Revoked);
        }
        insert_tokens!(conn, &tokens);
        Ok(Redemption::Issued)
    })
}

/// What the engine's issuer answers for a taken code.
type Issued = Result<(doorman::GrantRecord, Vec<doorman::TokenRecord>), doorman::OAuthError>;

/// Calls the engine's issuer on a code just taken: the grant with its
/// tokens, or the engine's refusal. Tokens naming another grant than the
/// one created are the caller's bug, refused as a store conflict.
fn run_issuer(issue: &CodeIssuer<'_>, hash: TokenHash, row: CodeRow) -> Result<Issued, StoreError> {
    let record = code_from_row(hash, row)?;
    let issued = issue(&record);
    if let Ok((grant, tokens)) = &issued
        && tokens.iter().any(|t| t.grant_id != grant.id)
    {
        return Err(StoreError::Conflict(
            "a token names another grant than the one created",
        ));
    }
    Ok(issued)
}
