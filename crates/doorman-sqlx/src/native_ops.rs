//! Every store operation on the direct SQLite connections
//! ([`crate::native`]): the same SQL text and the same meaning as the
//! sqlx forms beside the traits, without a thread hand-off per statement.
//!
//! Reads run on the caller's thread. Writes are closures run on the
//! writer thread, each in a savepoint of a group transaction, so they own
//! what they write (records are cloned in) and return what they found.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use doorman::{
    Client, CodeIssuer, CodeRecord, CodeTake, Consent, GrantId, GrantRecord, Purged, Redemption,
    Rotation, Scopes, StoreError, TokenHash, TokenKind, TokenRecord, UserId,
};
use rusqlite::{Connection, Row, ToSql};

use crate::backend::SQLITE;
use crate::clients::{
    DELETE_CLIENT, DELETE_CLIENT_REST, INSERT_CLIENT, SELECT_CLIENT, UPDATE_CLIENT,
};
use crate::codes::{INSERT_CODE, TAKE_CODE, USED_CODE, issue_for};
use crate::grants::{
    INSERT_CONSENT, INSERT_GRANT, LIST_CONSENTS, REVOKE_CONSENT, REVOKE_GRANT, SELECT_CONSENT,
    UPDATE_CONSENT, consent_existed,
};
use crate::native::{Native, named, sqlite};
use crate::rows::{
    ClientCols, client_cols, client_from_row, code_from_row, consent_from_row, kind_text,
    scope_text, secs, token_from_row, union_text,
};
use crate::tokens::{
    CAP_ACCESS, DELETE_ACCESS, DELETE_GRANT_TOKENS, DELETE_TOKEN, FLAG_REVOKED, INSERT_TOKEN,
    MARK_USED, SELECT_TOKEN, TOKEN_CONSUMED, TOKEN_GRANT,
};

// ---------------------------------------------------------------------------
// Statement helpers

/// Runs `sql` with `params`: how many rows it changed.
fn exec<const N: usize>(
    conn: &Connection,
    sql: &str,
    params: [&dyn ToSql; N],
) -> Result<usize, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(sqlite)?;
    stmt.execute(&named(params)[..]).map_err(sqlite)
}

/// [`exec`], with a unique-key violation answered as
/// [`StoreError::Conflict`] with `what`.
fn exec_unique<const N: usize>(
    conn: &Connection,
    sql: &str,
    params: [&dyn ToSql; N],
    what: &'static str,
) -> Result<usize, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(sqlite)?;
    stmt.execute(&named(params)[..]).map_err(|e| match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation
                && matches!(
                    f.extended_code,
                    rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                        | rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                ) =>
        {
            StoreError::Conflict(what)
        }
        _ => sqlite(e),
    })
}

/// Every row `sql` answers, decoded by `decode` (a statement with
/// `RETURNING` runs to its end).
fn all<T, const N: usize>(
    conn: &Connection,
    sql: &str,
    params: [&dyn ToSql; N],
    decode: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(sqlite)?;
    let rows = stmt.query_map(&named(params)[..], decode).map_err(sqlite)?;
    rows.collect::<Result<_, _>>().map_err(sqlite)
}

/// The first row `sql` answers, if any (for statements without side
/// effects).
pub(crate) fn first<T, const N: usize>(
    conn: &Connection,
    sql: &str,
    params: [&dyn ToSql; N],
    decode: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Option<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(sqlite)?;
    let mut rows = stmt.query(&named(params)[..]).map_err(sqlite)?;
    match rows.next().map_err(sqlite)? {
        Some(row) => decode(row).map(Some).map_err(sqlite),
        None => Ok(None),
    }
}

/// A row decoder, column for column as a `*Row` tuple of `rows.rs`:
/// `decoder!(name -> Type: 0 1 2)` reads columns 0, 1 and 2 into a tuple.
macro_rules! decoder {
    ($name:ident -> $row:ty: $($col:literal)*) => {
        pub(crate) fn $name(r: &Row<'_>) -> rusqlite::Result<$row> {
            Ok(($(r.get($col)?,)*))
        }
    };
}

decoder!(client_row -> crate::rows::ClientRow: 0 1 2 3 4 5 6 7 8 9);
decoder!(code_row -> crate::rows::CodeRow: 0 1 2 3 4 5 6 7 8);
decoder!(token_row -> crate::rows::TokenRow: 0 1 2 3 4 5 6 7);
decoder!(consent_row -> crate::rows::ConsentRow: 0 1 2 3);

// ---------------------------------------------------------------------------
// Clients

pub(crate) fn client(native: &Native, client_id: &str) -> Result<Option<Client>, StoreError> {
    native
        .read(|c| first(c, SELECT_CLIENT, [&client_id], client_row))?
        .map(client_from_row)
        .transpose()
}

/// Binds a client's columns in [`INSERT_CLIENT`]'s and [`UPDATE_CLIENT`]'s order.
fn write_client(
    c: &Connection,
    sql: &str,
    client: &Client,
    cols: &ClientCols,
) -> Result<usize, StoreError> {
    exec_unique(
        c,
        sql,
        [
            &client.client_id,
            &cols.secret_hash,
            &client.name,
            &client.description,
            &cols.redirect_uris,
            &cols.scope,
            &cols.grant_types,
            &client.trusted,
            &cols.released_claims,
            &cols.created_at,
        ],
        "a client with this id exists",
    )
}

pub(crate) async fn create_client(native: &Native, client: &Client) -> Result<bool, StoreError> {
    let (client, cols) = (client.clone(), client_cols(client)?);
    native
        .write(move |c| Ok(write_client(c, INSERT_CLIENT, &client, &cols)? == 1))
        .await
}

pub(crate) async fn update_client(native: &Native, client: &Client) -> Result<bool, StoreError> {
    let (client, cols) = (client.clone(), client_cols(client)?);
    native
        .write(move |c| Ok(write_client(c, UPDATE_CLIENT, &client, &cols)? > 0))
        .await
}

pub(crate) async fn delete_client(native: &Native, client_id: &str) -> Result<bool, StoreError> {
    let id = client_id.to_owned();
    native
        .write(move |c| {
            if exec(c, DELETE_CLIENT, [&id])? == 0 {
                return Ok(false);
            }
            for sql in DELETE_CLIENT_REST {
                exec(c, sql, [&id])?;
            }
            Ok(true)
        })
        .await
}

// ---------------------------------------------------------------------------
// Codes

pub(crate) async fn put_code(native: &Native, code: &CodeRecord) -> Result<(), StoreError> {
    let code = code.clone();
    native
        .write(move |c| {
            exec_unique(
                c,
                INSERT_CODE,
                [
                    &&code.hash.0[..],
                    &code.grant_id.as_str(),
                    &code.client_id,
                    &code.user_id.as_str(),
                    &code.redirect_uri,
                    &code.redirect_uri_explicit,
                    &scope_text(&code.scope),
                    &code.code_challenge,
                    &secs(code.issued_at),
                    &secs(code.expires_at),
                ],
                "a code with this hash exists",
            )
            .map(drop)
        })
        .await
}

/// Takes the code (as `CodeStore::take_code` does) on the writer's
/// connection: the record, or the grant id of a used code, or nothing.
fn take(c: &Connection, hash: TokenHash, now: i64) -> Result<CodeTake, StoreError> {
    let key = &hash.0[..];
    if let Some(row) = all(c, TAKE_CODE, [&key, &now], code_row)?
        .into_iter()
        .next()
    {
        return Ok(CodeTake::Taken(code_from_row(hash, row)?));
    }
    let used = first(c, USED_CODE, [&key], |r| r.get::<_, String>(0))?;
    Ok(used.map_or(CodeTake::Missing, |g| CodeTake::Replayed(GrantId(g))))
}

pub(crate) async fn take_code(
    native: &Native,
    hash: TokenHash,
    now: DateTime<Utc>,
) -> Result<CodeTake, StoreError> {
    let now = secs(now);
    native.write(move |c| take(c, hash, now)).await
}

/// `Store::redeem_code` in one savepoint of the writer's transaction, with
/// `issue` run on the writer thread between the take and the inserts.
pub(crate) async fn redeem(
    native: &Native,
    hash: TokenHash,
    now: DateTime<Utc>,
    issue: Arc<CodeIssuer>,
) -> Result<Redemption, StoreError> {
    let now = secs(now);
    native
        .write(move |c| {
            let (grant, tokens) = match issue_for(&*issue, take(c, hash, now)?)? {
                Ok(issued) => issued,
                Err(answer) => return Ok(answer),
            };
            Ok(if insert_grant(c, &grant, &tokens)? {
                Redemption::Issued
            } else {
                Redemption::Revoked
            })
        })
        .await
}

// ---------------------------------------------------------------------------
// Grants and consents

/// Inserts `grant` and its `tokens` unless a grant or revoked marker with
/// its id exists: whether it did.
fn insert_grant(
    c: &Connection,
    grant: &GrantRecord,
    tokens: &[TokenRecord],
) -> Result<bool, StoreError> {
    let created = exec(
        c,
        INSERT_GRANT,
        [
            &grant.id.as_str(),
            &grant.client_id,
            &grant.user_id.as_ref().map(UserId::as_str),
            &scope_text(&grant.scope),
            &secs(grant.created_at),
        ],
    )?;
    if created == 0 {
        return Ok(false);
    }
    insert_tokens(c, tokens)?;
    Ok(true)
}

/// Inserts `tokens`, one cached single-row statement each.
fn insert_tokens(c: &Connection, tokens: &[TokenRecord]) -> Result<(), StoreError> {
    for t in tokens {
        exec_unique(
            c,
            INSERT_TOKEN,
            [
                &&t.hash.0[..],
                &kind_text(t.kind),
                &t.grant_id.as_str(),
                &t.client_id,
                &t.user_id.as_ref().map(UserId::as_str),
                &scope_text(&t.scope),
                &secs(t.issued_at),
                &t.expires_at.map(secs),
                &t.consumed_at.map(secs),
            ],
            "a token with this hash exists",
        )?;
    }
    Ok(())
}

pub(crate) async fn create_grant(
    native: &Native,
    grant: &GrantRecord,
    tokens: &[TokenRecord],
) -> Result<bool, StoreError> {
    let (grant, tokens) = (grant.clone(), tokens.to_vec());
    native
        .write(move |c| insert_grant(c, &grant, &tokens))
        .await
}

/// Leaves `grant_id` revoked with no token.
fn revoke(c: &Connection, grant_id: &str) -> Result<(), StoreError> {
    exec(c, REVOKE_GRANT, [&grant_id])?;
    exec(c, DELETE_GRANT_TOKENS, [&grant_id])?;
    Ok(())
}

pub(crate) async fn revoke_grant(native: &Native, grant_id: &GrantId) -> Result<(), StoreError> {
    let id = grant_id.clone();
    native.write(move |c| revoke(c, id.as_str())).await
}

pub(crate) fn consent(
    native: &Native,
    user: &UserId,
    client_id: &str,
) -> Result<Option<Consent>, StoreError> {
    native
        .read(|c| first(c, SELECT_CONSENT, [&user.as_str(), &client_id], consent_row))?
        .map(|r| consent_from_row(user, r))
        .transpose()
}

pub(crate) fn list_consents(native: &Native, user: &UserId) -> Result<Vec<Consent>, StoreError> {
    native
        .read(|c| all(c, LIST_CONSENTS, [&user.as_str()], consent_row))?
        .into_iter()
        .map(|r| consent_from_row(user, r))
        .collect()
}

pub(crate) async fn add_consent(
    native: &Native,
    user: &UserId,
    client_id: &str,
    scope: &Scopes,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let (user, client_id, scope, now) =
        (user.clone(), client_id.to_owned(), scope.clone(), secs(now));
    native
        .write(move |c| {
            let (u, cid) = (user.as_str(), client_id.as_str());
            if exec(c, INSERT_CONSENT, [&u, &cid, &scope_text(&scope), &now])? == 1 {
                return Ok(());
            }
            // The writer thread is the only writer of this store: the row
            // the insert met is still there.
            let stored = first(c, SELECT_CONSENT, [&u, &cid], |r| r.get::<_, String>(1))?
                .ok_or_else(|| StoreError::message("doorman-sqlx: a consent vanished mid-write"))?;
            exec(
                c,
                UPDATE_CONSENT,
                [&u, &cid, &union_text(&stored, &scope), &now],
            )?;
            Ok(())
        })
        .await
}

pub(crate) async fn revoke_consent(
    native: &Native,
    user: &UserId,
    client_id: &str,
) -> Result<bool, StoreError> {
    let (user, client_id) = (user.clone(), client_id.to_owned());
    native
        .write(move |c| {
            let mut changed = [0; REVOKE_CONSENT.len()];
            for (n, sql) in changed.iter_mut().zip(REVOKE_CONSENT) {
                *n = exec(c, sql, [&user.as_str(), &client_id])?;
            }
            Ok(consent_existed(&changed))
        })
        .await
}

// ---------------------------------------------------------------------------
// Tokens

pub(crate) fn token(native: &Native, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError> {
    native
        .read(|c| first(c, SELECT_TOKEN, [&&hash.0[..]], token_row))?
        .map(|r| token_from_row(*hash, r))
        .transpose()
}

pub(crate) async fn rotate_refresh(
    native: &Native,
    old: &TokenHash,
    now: DateTime<Utc>,
    access_valid_until: DateTime<Utc>,
    new_tokens: &[TokenRecord],
) -> Result<Rotation, StoreError> {
    let (old, new_tokens) = (*old, new_tokens.to_vec());
    let (now, until) = (secs(now), secs(access_valid_until));
    native
        .write(move |c| {
            let key = &old.0[..];
            let found = first(c, TOKEN_GRANT, [&key], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            let grant_id = match found {
                Some((grant_id, kind)) if kind == kind_text(TokenKind::Refresh) => grant_id,
                _ => return Ok(Rotation::Missing),
            };
            let revoked = first(c, SQLITE.lock_grant, [&grant_id], |r| r.get::<_, bool>(0))?;
            if revoked != Some(false) {
                return Ok(Rotation::Missing);
            }
            match first(c, TOKEN_CONSUMED, [&key], |r| r.get::<_, Option<i64>>(0))? {
                None => return Ok(Rotation::Missing),
                Some(None) => {}
                Some(Some(_)) => {
                    // RFC 9700 §4.14.2: a used refresh token came back; the
                    // whole grant goes.
                    exec(c, FLAG_REVOKED, [&grant_id])?;
                    exec(c, DELETE_GRANT_TOKENS, [&grant_id])?;
                    return Ok(Rotation::Reused);
                }
            }
            if new_tokens.iter().any(|t| t.grant_id.as_str() != grant_id) {
                return Err(StoreError::Conflict(
                    "a new token names another grant than the rotated one",
                ));
            }
            if exec(c, MARK_USED, [&key, &now])? == 0 {
                return Ok(Rotation::Missing);
            }
            if until <= now {
                exec(c, DELETE_ACCESS, [&grant_id])?;
            } else {
                exec(c, CAP_ACCESS, [&grant_id, &until])?;
            }
            insert_tokens(c, &new_tokens)?;
            Ok(Rotation::Rotated)
        })
        .await
}

pub(crate) async fn delete_token(native: &Native, hash: &TokenHash) -> Result<bool, StoreError> {
    let hash = *hash;
    native
        .write(move |c| Ok(exec(c, DELETE_TOKEN, [&&hash.0[..]])? > 0))
        .await
}

/// Rows one step of [`purge`] deletes at most.
const PURGE_CHUNK: i64 = 2000;

/// Expired codes, at most `$2` of them.
const PURGE_CODES: &str = "DELETE FROM doorman_codes WHERE hash IN \
     (SELECT hash FROM doorman_codes WHERE expires_at <= $1 LIMIT $2)";
/// Expired tokens, at most `$2` of them.
const PURGE_TOKENS: &str = "DELETE FROM doorman_tokens WHERE hash IN \
     (SELECT hash FROM doorman_tokens WHERE expires_at <= $1 LIMIT $2)";
/// The next `$2` grant ids after `$1`.
const NEXT_GRANTS: &str = "SELECT id FROM doorman_grants WHERE id > $1 ORDER BY id LIMIT $2";
/// Grants (and revoked markers) with ids in `($1, $2]` that no token and
/// no code refers to, answering each one's `revoked` flag.
const PURGE_GRANTS: &str = "DELETE FROM doorman_grants WHERE id > $1 AND id <= $2 \
     AND NOT EXISTS (SELECT 1 FROM doorman_tokens t WHERE t.grant_id = doorman_grants.id) \
     AND NOT EXISTS (SELECT 1 FROM doorman_codes c WHERE c.grant_id = doorman_grants.id) \
     RETURNING revoked";

/// Deletes expired codes, then expired tokens, then grants and revoked
/// markers nothing refers to any more, in steps of at most
/// [`PURGE_CHUNK`] rows, each a write of its own: the writes that queue
/// meanwhile go between the steps instead of waiting for the whole purge
/// (one transaction over a few hundred thousand rows stopped every write
/// for seconds). Grants are walked once in id order. Each step decides on
/// what is committed at that moment, so whatever the interleaving, a
/// grant goes only once nothing refers to it.
pub(crate) async fn purge(native: &Native, now: DateTime<Utc>) -> Result<Purged, StoreError> {
    let now = secs(now);
    let mut purged = Purged::default();
    for (sql, count) in [
        (PURGE_CODES, &mut purged.codes),
        (PURGE_TOKENS, &mut purged.tokens),
    ] {
        loop {
            let n = native
                .write(move |c| exec(c, sql, [&now, &PURGE_CHUNK]))
                .await?;
            *count += n as u64;
            if (n as i64) < PURGE_CHUNK {
                break;
            }
        }
    }
    let mut after = String::new();
    loop {
        let (seen, last, live) = native
            .write(move |c| {
                let ids = all(c, NEXT_GRANTS, [&after, &PURGE_CHUNK], |r| {
                    r.get::<_, String>(0)
                })?;
                let Some(last) = ids.last().cloned() else {
                    return Ok((0, after.clone(), 0));
                };
                let revoked = all(c, PURGE_GRANTS, [&after, &last], |r| r.get::<_, bool>(0))?;
                Ok((ids.len(), last, revoked.into_iter().filter(|r| !r).count()))
            })
            .await?;
        purged.grants += live as u64;
        if (seen as i64) < PURGE_CHUNK {
            return Ok(purged);
        }
        after = last;
    }
}
