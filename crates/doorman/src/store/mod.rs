//! Storage traits and the in-memory store.
//!
//! A store is five small async traits with compare-and-set meaning. The
//! engine never reads-then-writes a credential: redeeming a code, rotating
//! a refresh token and revoking a grant are single calls that a store must
//! make atomic (one SQL statement or transaction, one lock, ...). The
//! testkit (`doorman::testkit`, feature `testkit`) checks any store against
//! these contracts.
//!
//! Stores receive credentials only as [`TokenHash`]es; nothing they are
//! given is secret in itself.

mod memory;

pub use memory::MemoryStore;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::{OAuthError, StoreError};
use crate::model::{
    Client, CodeRecord, CodeTake, Consent, GrantId, GrantRecord, Purged, Rotation, TokenRecord,
    UserId,
};
use crate::scope::Scopes;
use crate::secret::TokenHash;

/// A small number for the calling thread, the same on every call from it:
/// threads are numbered 0, 1, 2, … in the order they first ask. For
/// stores (and the server's client cache) that keep a resource per thread
/// — a connection, a replica — and pick it as `thread_index() % n`, so
/// that each thread keeps to its own without writing a shared counter on
/// every call.
///
/// ```
/// let here = doorman::store::thread_index();
/// assert_eq!(doorman::store::thread_index(), here);
/// let there = std::thread::spawn(doorman::store::thread_index).join().unwrap();
/// assert_ne!(there, here);
/// ```
pub fn thread_index() -> usize {
    static THREADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = THREADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    INDEX.with(|i| *i)
}

/// Registered clients.
#[async_trait]
pub trait ClientStore: Send + Sync {
    /// The client with this id, if registered.
    async fn client(&self, client_id: &str) -> Result<Option<Client>, StoreError>;

    /// Registers a client; `Ok(false)` if the id is taken (nothing written).
    async fn create_client(&self, client: &Client) -> Result<bool, StoreError>;

    /// Replaces a registered client (e.g. a reset secret); `Ok(false)` if unknown.
    async fn update_client(&self, client: &Client) -> Result<bool, StoreError>;

    /// Deletes a client with its codes, grants, tokens and consents;
    /// `Ok(false)` if unknown.
    async fn delete_client(&self, client_id: &str) -> Result<bool, StoreError>;
}

/// Authorization codes.
#[async_trait]
pub trait CodeStore: Send + Sync {
    /// Stores a freshly issued code.
    async fn put_code(&self, code: &CodeRecord) -> Result<(), StoreError>;

    /// Consumes a code, atomically: of any number of concurrent callers
    /// with the same hash exactly one gets [`CodeTake::Taken`]. The store
    /// keeps a used code (as a tombstone) until it expires, and answers
    /// [`CodeTake::Replayed`] with its grant id to every later caller.
    /// Expiry is the engine's decision (it compares `expires_at` with its
    /// clock); the store hands out an expired but unused code as `Taken`.
    async fn take_code(&self, hash: &TokenHash, now: DateTime<Utc>)
    -> Result<CodeTake, StoreError>;
}

/// Grants and the consents behind them.
#[async_trait]
pub trait GrantStore: Send + Sync {
    /// Creates a grant with its first tokens, atomically. Answers
    /// `Ok(false)`, writing nothing, if a grant with this id exists
    /// already or was revoked (a replayed code revokes its grant id before
    /// the tokens may exist; they must then never appear).
    async fn create_grant(
        &self,
        grant: &GrantRecord,
        tokens: &[TokenRecord],
    ) -> Result<bool, StoreError>;

    /// Revokes a grant: deletes every token of it and leaves a revoked
    /// marker so that [`GrantStore::create_grant`] with this id fails
    /// afterwards. Revoking an unknown id still leaves the marker.
    /// Must not race with [`TokenStore::rotate_refresh`]: no token of the
    /// grant may survive, whichever commits first.
    async fn revoke_grant(&self, grant_id: &GrantId) -> Result<(), StoreError>;

    /// What `user` has approved for `client_id`.
    async fn consent(&self, user: &UserId, client_id: &str) -> Result<Option<Consent>, StoreError>;

    /// Records an approval: the stored scopes become the union of the old
    /// ones and `scope`; `granted_at` is set on first approval, `updated_at`
    /// every time.
    async fn add_consent(
        &self,
        user: &UserId,
        client_id: &str,
        scope: &Scopes,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Every client `user` has approved, oldest first.
    async fn list_consents(&self, user: &UserId) -> Result<Vec<Consent>, StoreError>;

    /// The user takes an app's access away: atomically deletes the consent
    /// and revokes every grant of `user` to `client_id` with all their
    /// tokens (and unused codes). Answers whether a consent or grant existed.
    async fn revoke_consent(&self, user: &UserId, client_id: &str) -> Result<bool, StoreError>;
}

/// Access and refresh tokens.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// The token with this hash, whatever its state (expired, or a used
    /// refresh token). Revoked tokens are gone. One round trip: this is the
    /// bearer-validation hot path.
    async fn token(&self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError>;

    /// Rotates a refresh token, atomically:
    /// - unused: mark it used at `now`, cap every access token of its grant
    ///   at `access_valid_until` (they may be deleted if that is `<= now`),
    ///   store `new_tokens` → [`Rotation::Rotated`];
    /// - used before: revoke the whole grant as [`GrantStore::revoke_grant`]
    ///   does, store nothing → [`Rotation::Reused`];
    /// - unknown → [`Rotation::Missing`].
    ///
    /// Of concurrent rotations of one token exactly one is `Rotated`.
    async fn rotate_refresh(
        &self,
        old: &TokenHash,
        now: DateTime<Utc>,
        access_valid_until: DateTime<Utc>,
        new_tokens: &[TokenRecord],
    ) -> Result<Rotation, StoreError>;

    /// Deletes one token; answers whether it existed.
    async fn delete_token(&self, hash: &TokenHash) -> Result<bool, StoreError>;
}

/// What the engine makes of a taken code: the grant with its first tokens,
/// or the refusal to answer (the code stays consumed either way).
///
/// It owns what it needs (no borrowed lifetime), so a store may run it
/// wherever its transaction runs, e.g. on a writer thread of its own.
pub type CodeIssuer =
    dyn Fn(&CodeRecord) -> Result<(GrantRecord, Vec<TokenRecord>), OAuthError> + Send + Sync;

/// The outcome of [`Store::redeem_code`].
#[derive(Debug)]
pub enum Redemption {
    /// The code was taken and its grant and tokens stored.
    Issued,
    /// The code was taken, but the issuer refused it (wrong client,
    /// redirect URI or PKCE verifier, expired): nothing was stored.
    Refused(OAuthError),
    /// The code was taken, but its grant id had been revoked (a concurrent
    /// replay): nothing was stored.
    Revoked,
    /// The code was consumed before; its grant must be revoked.
    Replayed(GrantId),
    /// No such code.
    Missing,
}

/// A complete store: the four traits plus housekeeping.
#[async_trait]
pub trait Store: ClientStore + CodeStore + GrantStore + TokenStore {
    /// Redeems a code and stores the grant it leads to, in one step where
    /// the store can (one SQL transaction: the code exchange's only write).
    ///
    /// Takes the code exactly as [`CodeStore::take_code`] does; for the
    /// one caller that takes it, calls `issue` with the record (inside the
    /// transaction: `issue` is synchronous and cheap — binding checks and
    /// token generation) and stores its grant and tokens as
    /// [`GrantStore::create_grant`] does. If `issue` refuses, the code stays
    /// consumed and nothing else is written. A store that runs the
    /// transaction again (a database deadlock victim) calls `issue` again;
    /// what its last call answered is what must be stored.
    ///
    /// The provided implementation calls `take_code` and then
    /// `create_grant`: correct for any store that meets those two contracts,
    /// at the price of two round trips.
    async fn redeem_code(
        &self,
        hash: &TokenHash,
        now: DateTime<Utc>,
        issue: Arc<CodeIssuer>,
    ) -> Result<Redemption, StoreError> {
        let record = match self.take_code(hash, now).await? {
            CodeTake::Taken(r) => r,
            CodeTake::Replayed(grant) => return Ok(Redemption::Replayed(grant)),
            CodeTake::Missing => return Ok(Redemption::Missing),
        };
        let (grant, tokens) = match issue(&record) {
            Ok(issued) => issued,
            Err(e) => return Ok(Redemption::Refused(e)),
        };
        Ok(if self.create_grant(&grant, &tokens).await? {
            Redemption::Issued
        } else {
            Redemption::Revoked
        })
    }

    /// Deletes what expired before `now`: codes (used or not), tokens
    /// (including used refresh tokens), and grants left with no token and
    /// no code. Revoked-grant markers go once no code refers to them.
    async fn purge_expired(&self, now: DateTime<Utc>) -> Result<Purged, StoreError>;
}
