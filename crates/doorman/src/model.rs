//! The records a store keeps: clients, codes, grants, tokens, consents.
//!
//! None holds a credential in plaintext: codes, tokens and client secrets
//! appear only as [`TokenHash`]es.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::scope::Scopes;
use crate::secret::{TokenHash, random_bytes};

/// The host's identifier of a user (a primary key rendered as text).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(pub String);

impl UserId {
    /// Wraps an identifier.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The identifier.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({})", self.0)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identifies one grant: the tokens descending from one authorization
/// code or one client-credentials issue. 32 hex digits: the creation time
/// in milliseconds (48 bits), then 80 random bits.
///
/// Not a credential (nothing is granted to whoever knows it), so it may be
/// time-ordered: a store's index on grant ids then grows at one end, and
/// a write touches the same few index pages as the writes around it
/// instead of a random page each.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GrantId(pub String);

impl GrantId {
    /// A fresh id: now, then randomness.
    pub fn generate() -> Self {
        let mut b = [0u8; 16];
        let millis = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
        b[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
        random_bytes(&mut b[6..]);
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(32);
        for x in b {
            s.push(char::from(HEX[usize::from(x >> 4)]));
            s.push(char::from(HEX[usize::from(x & 0xf)]));
        }
        Self(s)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for GrantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GrantId({})", self.0)
    }
}

/// A grant type a client may use at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrantType {
    /// `authorization_code` (RFC 6749 §4.1).
    AuthorizationCode,
    /// `refresh_token` (RFC 6749 §6).
    RefreshToken,
    /// `client_credentials` (RFC 6749 §4.4).
    ClientCredentials,
}

impl GrantType {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "authorization_code" => Some(Self::AuthorizationCode),
            "refresh_token" => Some(Self::RefreshToken),
            "client_credentials" => Some(Self::ClientCredentials),
            _ => None,
        }
    }
}

/// A registered client application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The public identifier.
    pub client_id: String,
    /// SHA-256 of the secret; `None` for a public client (PKCE required).
    pub secret_hash: Option<TokenHash>,
    /// Display name shown on the consent page.
    pub name: String,
    /// Free text from the developer.
    pub description: String,
    /// Registered redirect URIs, matched exactly (loopback: any port).
    pub redirect_uris: Vec<String>,
    /// Scopes the client may request.
    pub scope: Scopes,
    /// Grant types it may use.
    pub grant_types: Vec<GrantType>,
    /// Registered as trusted: `auto_authorize=true` may skip the consent
    /// page even before the user's first consent.
    pub trusted: bool,
    /// Per-client claim release: when set, only these claim names (beyond
    /// the always-released ones) appear in its userinfo answers.
    pub released_claims: Option<Vec<String>>,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

impl Client {
    /// A confidential client authenticates with a secret; a public one cannot.
    pub fn is_confidential(&self) -> bool {
        self.secret_hash.is_some()
    }

    /// Whether it may use `grant`.
    pub fn allows_grant(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }
}

/// An issued authorization code, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRecord {
    /// The code's key, [`TokenHash::of_token`](crate::TokenHash::of_token).
    pub hash: TokenHash,
    /// The grant its tokens will belong to; replay revokes it.
    pub grant_id: GrantId,
    /// The client it was issued to.
    pub client_id: String,
    /// The user who authorized it.
    pub user_id: UserId,
    /// The redirect URI the code was delivered to.
    pub redirect_uri: String,
    /// Whether the authorization request named `redirect_uri` explicitly;
    /// then the token request must repeat it (RFC 6749 §4.1.3).
    pub redirect_uri_explicit: bool,
    /// The scopes granted.
    pub scope: Scopes,
    /// PKCE `S256` challenge, if the request carried one.
    pub code_challenge: Option<String>,
    /// Issue time.
    pub issued_at: DateTime<Utc>,
    /// After this instant the code is refused.
    pub expires_at: DateTime<Utc>,
}

/// The outcome of [`CodeStore::take_code`](crate::store::CodeStore::take_code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeTake {
    /// This caller consumed the code: it alone may issue tokens for it.
    Taken(CodeRecord),
    /// The code was consumed before; its grant must be revoked.
    Replayed(GrantId),
    /// No such code (never issued, or purged).
    Missing,
}

/// One grant, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRecord {
    /// Its id.
    pub id: GrantId,
    /// The client.
    pub client_id: String,
    /// The user; `None` for client credentials.
    pub user_id: Option<UserId>,
    /// The scopes of the grant (its refresh tokens keep them).
    pub scope: Scopes,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// Access or refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// A bearer access token.
    Access,
    /// A refresh token.
    Refresh,
}

impl TokenKind {
    /// `access_token` or `refresh_token` (RFC 7009 token type hints).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access_token",
            Self::Refresh => "refresh_token",
        }
    }
}

/// An issued token, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// The token's key, [`TokenHash::of_token`](crate::TokenHash::of_token).
    pub hash: TokenHash,
    /// Access or refresh.
    pub kind: TokenKind,
    /// The grant it belongs to.
    pub grant_id: GrantId,
    /// The client it was issued to.
    pub client_id: String,
    /// The user; `None` for client credentials.
    pub user_id: Option<UserId>,
    /// Its scopes.
    pub scope: Scopes,
    /// Issue time.
    pub issued_at: DateTime<Utc>,
    /// Expiry; `None` never expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// For a refresh token: when it was rotated (used). A used refresh
    /// token is kept as a tombstone so that its replay is detected.
    pub consumed_at: Option<DateTime<Utc>>,
}

impl TokenRecord {
    /// Whether it is past its expiry at `now`.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }
}

/// The outcome of [`TokenStore::rotate_refresh`](crate::store::TokenStore::rotate_refresh).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The old refresh token was consumed and the new tokens stored.
    Rotated,
    /// The old refresh token had been used already: the store revoked the
    /// whole grant (RFC 9700 §4.14.2) and stored nothing.
    Reused,
    /// No such refresh token (revoked, purged or never issued).
    Missing,
}

/// What a user has approved for a client; scopes add up across consents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    /// The user.
    pub user_id: UserId,
    /// The client.
    pub client_id: String,
    /// Every scope the user approved for the client so far.
    pub scope: Scopes,
    /// First approval.
    pub granted_at: DateTime<Utc>,
    /// Latest approval.
    pub updated_at: DateTime<Utc>,
}

/// Counts of what [`Store::purge_expired`](crate::store::Store::purge_expired) removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Authorization codes (used or not) past expiry.
    pub codes: u64,
    /// Tokens past expiry, including used refresh tokens.
    pub tokens: u64,
    /// Grants left with no token and no code.
    pub grants: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_ids_are_hex_distinct_and_ordered_by_time() {
        let first = GrantId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let ids: Vec<GrantId> = (0..1000).map(|_| GrantId::generate()).collect();
        for id in &ids {
            assert_eq!(id.as_str().len(), 32, "{id:?}");
            assert!(
                id.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
            assert!(
                *id > first,
                "{id:?} sorts before an id made earlier, {first:?}"
            );
        }
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len(), "80 random bits repeated");
        // The time prefix is now's milliseconds.
        let millis = u64::from_str_radix(&ids[0].as_str()[..12], 16).expect("hex");
        let now = u64::try_from(chrono::Utc::now().timestamp_millis()).expect("after 1970");
        assert!(now - millis < 60_000, "{millis} vs {now}");
    }
}
