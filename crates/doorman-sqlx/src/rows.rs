//! How records become columns and back.
//!
//! Times are unix seconds, hashes 32-byte blobs, scopes space-joined,
//! lists JSON arrays. Rows are read as tuples, which decode the same way
//! on both backends.

use chrono::{DateTime, Utc};
use doorman::{
    Client, CodeRecord, Consent, GrantId, GrantType, Scopes, StoreError, TokenHash, TokenKind,
    TokenRecord, UserId,
};

use crate::backend::corrupt;

/// Unix seconds; sub-second precision is dropped.
pub(crate) fn secs(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

fn time(secs: i64, what: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp(secs, 0).ok_or_else(|| corrupt(what))
}

fn opt_time(secs: Option<i64>, what: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    secs.map(|s| time(s, what)).transpose()
}

fn hash(bytes: &[u8], what: &str) -> Result<TokenHash, StoreError> {
    <[u8; 32]>::try_from(bytes)
        .map(TokenHash)
        .map_err(|_| corrupt(what))
}

pub(crate) fn scope_text(s: &Scopes) -> String {
    s.as_str().to_owned()
}

/// The scope column: the canonical string this crate wrote (one copy), or
/// whatever else a row holds, read leniently as its valid tokens.
fn scopes(text: &str) -> Scopes {
    Scopes::parse(text).unwrap_or_else(|_| Scopes::from_tokens(text.split(' ')))
}

pub(crate) fn kind_text(k: TokenKind) -> &'static str {
    match k {
        TokenKind::Access => "access",
        TokenKind::Refresh => "refresh",
    }
}

fn kind(text: &str) -> Result<TokenKind, StoreError> {
    match text {
        "access" => Ok(TokenKind::Access),
        "refresh" => Ok(TokenKind::Refresh),
        _ => Err(corrupt("token")),
    }
}

// ---------------------------------------------------------------------------
// Clients

/// `client_id, secret_hash, name, description, redirect_uris, scope,
/// grant_types, trusted, released_claims, created_at`.
pub(crate) type ClientRow = (
    String,
    Option<Vec<u8>>,
    String,
    String,
    String,
    String,
    String,
    bool,
    Option<String>,
    i64,
);

/// A client's columns, ready to bind.
pub(crate) struct ClientCols {
    pub secret_hash: Option<Vec<u8>>,
    pub redirect_uris: String,
    pub scope: String,
    pub grant_types: String,
    pub released_claims: Option<String>,
    pub created_at: i64,
}

pub(crate) fn client_cols(c: &Client) -> Result<ClientCols, StoreError> {
    let json = |v: &Vec<String>| serde_json::to_string(v).map_err(StoreError::backend);
    Ok(ClientCols {
        secret_hash: c.secret_hash.map(|h| h.0.to_vec()),
        redirect_uris: json(&c.redirect_uris)?,
        scope: scope_text(&c.scope),
        grant_types: c
            .grant_types
            .iter()
            .map(|g| g.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        released_claims: c.released_claims.as_ref().map(json).transpose()?,
        created_at: secs(c.created_at),
    })
}

pub(crate) fn client_from_row(row: ClientRow) -> Result<Client, StoreError> {
    let (
        client_id,
        secret_hash,
        name,
        description,
        redirect_uris,
        scope,
        grant_types,
        trusted,
        released_claims,
        created,
    ) = row;
    let list =
        |text: &str| serde_json::from_str::<Vec<String>>(text).map_err(|_| corrupt("client"));
    Ok(Client {
        client_id,
        secret_hash: secret_hash.map(|h| hash(&h, "client")).transpose()?,
        name,
        description,
        redirect_uris: list(&redirect_uris)?,
        scope: scopes(&scope),
        grant_types: grant_types
            .split(' ')
            .filter(|g| !g.is_empty())
            .map(|g| GrantType::parse(g).ok_or_else(|| corrupt("client")))
            .collect::<Result<_, _>>()?,
        trusted,
        released_claims: released_claims.as_deref().map(list).transpose()?,
        created_at: time(created, "client")?,
    })
}

// ---------------------------------------------------------------------------
// Codes

/// `grant_id, client_id, user_id, redirect_uri, redirect_uri_explicit,
/// scope, code_challenge, issued_at, expires_at` (the hash is the key).
pub(crate) type CodeRow = (
    String,
    String,
    String,
    String,
    bool,
    String,
    Option<String>,
    i64,
    i64,
);

pub(crate) fn code_from_row(hash: TokenHash, row: CodeRow) -> Result<CodeRecord, StoreError> {
    let (
        grant_id,
        client_id,
        user_id,
        redirect_uri,
        redirect_uri_explicit,
        scope,
        code_challenge,
        issued,
        expires,
    ) = row;
    Ok(CodeRecord {
        hash,
        grant_id: GrantId(grant_id),
        client_id,
        user_id: UserId(user_id),
        redirect_uri,
        redirect_uri_explicit,
        scope: scopes(&scope),
        code_challenge,
        issued_at: time(issued, "code")?,
        expires_at: time(expires, "code")?,
    })
}

// ---------------------------------------------------------------------------
// Tokens

/// `kind, grant_id, client_id, user_id, scope, issued_at, expires_at,
/// consumed_at` (the hash is the key).
pub(crate) type TokenRow = (
    String,
    String,
    String,
    Option<String>,
    String,
    i64,
    Option<i64>,
    Option<i64>,
);

pub(crate) fn token_from_row(hash: TokenHash, row: TokenRow) -> Result<TokenRecord, StoreError> {
    let (kind_text, grant_id, client_id, user_id, scope, issued, expires, consumed) = row;
    Ok(TokenRecord {
        hash,
        kind: kind(&kind_text)?,
        grant_id: GrantId(grant_id),
        client_id,
        user_id: user_id.map(UserId),
        scope: scopes(&scope),
        issued_at: time(issued, "token")?,
        expires_at: opt_time(expires, "token")?,
        consumed_at: opt_time(consumed, "token")?,
    })
}

// ---------------------------------------------------------------------------
// Consents

/// `client_id, scope, granted_at, updated_at`.
pub(crate) type ConsentRow = (String, String, i64, i64);

pub(crate) fn consent_from_row(user: &UserId, row: ConsentRow) -> Result<Consent, StoreError> {
    let (client_id, scope, granted, updated) = row;
    Ok(Consent {
        user_id: user.clone(),
        client_id,
        scope: scopes(&scope),
        granted_at: time(granted, "consent")?,
        updated_at: time(updated, "consent")?,
    })
}

pub(crate) fn union_text(stored: &str, added: &Scopes) -> String {
    scope_text(&scopes(stored).union(added))
}
