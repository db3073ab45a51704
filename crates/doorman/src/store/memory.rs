//! The in-memory store: sharded maps behind `std` locks.
//!
//! Every map is split into [`SHARDS`] shards, each behind its own
//! `RwLock`, so unrelated requests never wait for each other and bearer
//! validation ([`TokenStore::token`]) takes one shard's read lock only.
//!
//! Operations that touch several records hold several locks, always taken
//! in one global order so that they cannot deadlock:
//!
//! ```text
//! users → grants → tokens (ascending shard index)
//! ```
//!
//! Clients and codes are only ever locked alone, and no operation holds two
//! user or two grant shards at once. Every token of a grant is written
//! while that grant's shard is locked, which is what makes revocation,
//! rotation and creation of one grant mutually atomic.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{ClientStore, CodeStore, GrantStore, Store, TokenStore};
use crate::error::StoreError;
use crate::model::{
    Client, CodeRecord, CodeTake, Consent, GrantId, GrantRecord, Purged, Rotation, TokenKind,
    TokenRecord, UserId,
};
use crate::scope::Scopes;
use crate::secret::TokenHash;

/// Shards per map: enough that 2–64 cores rarely meet on one lock.
const SHARDS: usize = 64;

/// An in-memory [`Store`]: fast, safe under any concurrency, and gone when
/// the process ends. For tests, demos and single-process deployments that
/// accept losing sessions on restart.
///
/// ```
/// use std::sync::Arc;
/// use doorman::{MemoryStore, Store};
///
/// let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
/// # let _ = store;
/// ```
pub struct MemoryStore {
    clients: Shards<HashMap<String, Client>>,
    codes: Shards<HashMap<TokenHash, StoredCode, HashKeyed>>,
    grants: Shards<HashMap<GrantId, GrantEntry>>,
    tokens: Shards<TokenMap>,
    users: Shards<HashMap<UserId, UserEntry>>,
    /// Picks the shard of a string key; random per store.
    keys: RandomState,
}

type TokenMap = HashMap<TokenHash, TokenRecord, HashKeyed>;
type GrantMap = HashMap<GrantId, GrantEntry>;

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            clients: Shards::new(),
            codes: Shards::new(),
            grants: Shards::new(),
            tokens: Shards::new(),
            users: Shards::new(),
            keys: RandomState::new(),
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------
// Shards and locks

/// Keeps each shard's lock on its own cache lines, so that readers of one
/// shard do not slow down readers of its neighbours.
#[repr(align(128))]
struct Padded<T>(RwLock<T>);

struct Shards<T>(Box<[Padded<T>]>);

impl<T: Default> Shards<T> {
    fn new() -> Self {
        Self(
            (0..SHARDS)
                .map(|_| Padded(RwLock::new(T::default())))
                .collect(),
        )
    }
}

impl<T> Shards<T> {
    /// A poisoned lock only means another thread panicked while holding it;
    /// every write here leaves the maps consistent at each step that can
    /// panic (none should), so the data is still usable.
    fn read(&self, i: usize) -> RwLockReadGuard<'_, T> {
        self.0[i % SHARDS]
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self, i: usize) -> RwLockWriteGuard<'_, T> {
        self.0[i % SHARDS]
            .0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The shard of a credential hash. SHA-256 output is uniform, so one byte
/// will do; it is the last byte because [`KeyHasher`] leans on the first.
fn hash_shard(h: &TokenHash) -> usize {
    usize::from(h.0[31]) % SHARDS
}

impl MemoryStore {
    fn str_shard(&self, key: &str) -> usize {
        (self.keys.hash_one(key) % SHARDS as u64) as usize
    }

    fn grant_shard(&self, id: &GrantId) -> usize {
        self.str_shard(id.as_str())
    }

    fn user_shard(&self, user: &UserId) -> usize {
        self.str_shard(user.as_str())
    }

    /// Write-locks the token shards holding `hashes`, in ascending order.
    fn lock_tokens<'a>(&self, hashes: impl IntoIterator<Item = &'a TokenHash>) -> TokenLocks<'_> {
        let mut wanted = [false; SHARDS];
        for h in hashes {
            wanted[hash_shard(h)] = true;
        }
        let guards = (0..SHARDS)
            .filter(|&i| wanted[i])
            .map(|i| (i, self.tokens.write(i)))
            .collect();
        TokenLocks { guards }
    }
}

/// A set of write-locked token shards.
struct TokenLocks<'a> {
    guards: Vec<(usize, RwLockWriteGuard<'a, TokenMap>)>,
}

impl TokenLocks<'_> {
    /// The locked map holding `h`; `None` if its shard was not locked
    /// (a bug in the caller's lock set, answered as "not found").
    fn map(&mut self, h: &TokenHash) -> Option<&mut TokenMap> {
        let i = hash_shard(h);
        let at = self.guards.binary_search_by_key(&i, |(j, _)| *j).ok()?;
        self.guards.get_mut(at).map(|(_, g)| &mut **g)
    }

    fn get_mut(&mut self, h: &TokenHash) -> Option<&mut TokenRecord> {
        self.map(h)?.get_mut(h)
    }

    fn contains(&mut self, h: &TokenHash) -> bool {
        self.map(h).is_some_and(|m| m.contains_key(h))
    }

    fn remove(&mut self, h: &TokenHash) -> bool {
        self.map(h).is_some_and(|m| m.remove(h).is_some())
    }

    fn insert(&mut self, t: &TokenRecord) -> bool {
        match self.map(&t.hash) {
            Some(m) => {
                m.insert(t.hash, t.clone());
                true
            }
            None => false,
        }
    }
}

/// Hashes [`TokenHash`] keys by folding their bytes: they are SHA-256
/// outputs of server-generated secrets, already uniform, so SipHash's
/// flood resistance buys nothing on the bearer-validation path.
#[derive(Clone, Copy, Default)]
struct HashKeyed;

impl BuildHasher for HashKeyed {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(29) ^ u64::from_le_bytes(word);
        }
    }
}

// ---------------------------------------------------------------------------
// Records

/// An authorization code packed into one allocation (a few hundred bytes
/// per outstanding code instead of one allocation per field). The hash is
/// the map key and not repeated.
struct StoredCode {
    /// `grant_id`, `client_id`, `user_id`, `redirect_uri`, `code_challenge`
    /// (empty if none), then one field per scope token, separated by
    /// [`SEP`] — a byte that never occurs in UTF-8, so no escaping.
    text: Box<[u8]>,
    issued_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    flags: u8,
}

const SEP: u8 = 0xFF;
const EXPLICIT_REDIRECT: u8 = 1;
const HAS_CHALLENGE: u8 = 2;
const USED: u8 = 4;

impl StoredCode {
    fn encode(c: &CodeRecord) -> Self {
        let challenge = c.code_challenge.as_deref().unwrap_or("");
        let head = [
            c.grant_id.as_str(),
            &c.client_id,
            c.user_id.as_str(),
            &c.redirect_uri,
            challenge,
        ];
        let len = head.iter().map(|s| s.len() + 1).sum::<usize>()
            + c.scope.iter().map(|s| s.len() + 1).sum::<usize>();
        let mut text = Vec::with_capacity(len);
        for (i, field) in head.iter().enumerate() {
            if i > 0 {
                text.push(SEP);
            }
            text.extend_from_slice(field.as_bytes());
        }
        for s in c.scope.iter() {
            text.push(SEP);
            text.extend_from_slice(s.as_bytes());
        }
        let mut flags = 0;
        if c.redirect_uri_explicit {
            flags |= EXPLICIT_REDIRECT;
        }
        if c.code_challenge.is_some() {
            flags |= HAS_CHALLENGE;
        }
        Self {
            text: text.into_boxed_slice(),
            issued_at: c.issued_at,
            expires_at: c.expires_at,
            flags,
        }
    }

    fn fields(&self) -> impl Iterator<Item = &[u8]> {
        self.text.split(|&b| b == SEP)
    }

    fn is_used(&self) -> bool {
        self.flags & USED != 0
    }

    fn grant_bytes(&self) -> &[u8] {
        self.fields().next().unwrap_or_default()
    }

    fn grant_id(&self) -> Result<GrantId, StoreError> {
        Ok(GrantId(text(self.grant_bytes())?.to_owned()))
    }

    fn client_is(&self, client_id: &str) -> bool {
        self.fields().nth(1) == Some(client_id.as_bytes())
    }

    fn belongs_to(&self, user: &UserId, client_id: &str) -> bool {
        let mut f = self.fields().skip(1);
        f.next() == Some(client_id.as_bytes()) && f.next() == Some(user.as_str().as_bytes())
    }

    fn decode(&self, hash: TokenHash) -> Result<CodeRecord, StoreError> {
        let mut f = self.fields();
        let mut next = || text(f.next().ok_or_else(corrupt)?).map(str::to_owned);
        let grant_id = GrantId(next()?);
        let client_id = next()?;
        let user_id = UserId(next()?);
        let redirect_uri = next()?;
        let challenge = next()?;
        let scope = f
            .map(|s| text(s).map(str::to_owned))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CodeRecord {
            hash,
            grant_id,
            client_id,
            user_id,
            redirect_uri,
            redirect_uri_explicit: self.flags & EXPLICIT_REDIRECT != 0,
            scope: Scopes::from_tokens(scope),
            code_challenge: (self.flags & HAS_CHALLENGE != 0).then_some(challenge),
            issued_at: self.issued_at,
            expires_at: self.expires_at,
        })
    }
}

fn text(b: &[u8]) -> Result<&str, StoreError> {
    std::str::from_utf8(b).map_err(|_| corrupt())
}

fn corrupt() -> StoreError {
    StoreError::message("memory store: corrupt code record")
}

/// A grant, or the marker a revoked grant leaves.
enum GrantEntry {
    Live {
        record: GrantRecord,
        /// Hashes of its tokens: the cascade index for revocation.
        tokens: Vec<TokenHash>,
    },
    Revoked,
}

/// What the store knows per user: consents, and grants per client (the
/// index `revoke_consent` walks).
#[derive(Default)]
struct UserEntry {
    consents: Vec<Consent>,
    grants: HashMap<String, Vec<GrantId>>,
}

impl UserEntry {
    fn is_empty(&self) -> bool {
        self.consents.is_empty() && self.grants.is_empty()
    }
}

// ---------------------------------------------------------------------------
// Operations (synchronous: no lock is ever held across an await)

impl MemoryStore {
    fn take_code_sync(&self, hash: &TokenHash) -> Result<CodeTake, StoreError> {
        let mut codes = self.codes.write(hash_shard(hash));
        let Some(code) = codes.get_mut(hash) else {
            return Ok(CodeTake::Missing);
        };
        if code.is_used() {
            return Ok(CodeTake::Replayed(code.grant_id()?));
        }
        let record = code.decode(*hash)?;
        code.flags |= USED;
        Ok(CodeTake::Taken(record))
    }

    /// Marks `id` revoked and deletes its tokens; the caller holds the
    /// grant's shard. Answers the grant's record if it was live.
    fn revoke_locked(&self, grants: &mut GrantMap, id: &GrantId) -> Option<GrantRecord> {
        match grants.insert(id.clone(), GrantEntry::Revoked) {
            Some(GrantEntry::Live { record, tokens }) => {
                let mut locks = self.lock_tokens(&tokens);
                for h in &tokens {
                    locks.remove(h);
                }
                Some(record)
            }
            _ => None,
        }
    }

    /// Revokes one grant, taking its shard lock; answers whether it was live.
    fn revoke_one(&self, id: &GrantId) -> bool {
        let record = {
            let mut grants = self.grants.write(self.grant_shard(id));
            self.revoke_locked(&mut grants, id)
        };
        match record {
            Some(r) => {
                self.unindex_grant(&r);
                true
            }
            None => false,
        }
    }

    /// Drops a grant that is no longer live from its user's index. Called
    /// with no lock held; a revoked id never becomes live again, so doing
    /// it after the revocation itself is safe.
    fn unindex_grant(&self, grant: &GrantRecord) {
        let Some(user) = &grant.user_id else { return };
        let mut users = self.users.write(self.user_shard(user));
        let Some(entry) = users.get_mut(user) else {
            return;
        };
        if let Some(ids) = entry.grants.get_mut(&grant.client_id) {
            ids.retain(|g| g != &grant.id);
            if ids.is_empty() {
                entry.grants.remove(&grant.client_id);
            }
        }
        if entry.is_empty() {
            users.remove(user);
        }
    }

    fn create_grant_sync(
        &self,
        grant: &GrantRecord,
        tokens: &[TokenRecord],
    ) -> Result<bool, StoreError> {
        if tokens.iter().any(|t| t.grant_id != grant.id) {
            return Err(StoreError::Conflict(
                "a token names another grant than the one created",
            ));
        }
        let mut users = grant
            .user_id
            .as_ref()
            .map(|u| (u, self.users.write(self.user_shard(u))));
        let mut grants = self.grants.write(self.grant_shard(&grant.id));
        if grants.contains_key(&grant.id) {
            return Ok(false);
        }
        let mut locks = self.lock_tokens(tokens.iter().map(|t| &t.hash));
        let hashes: Vec<TokenHash> = tokens.iter().map(|t| t.hash).collect();
        if has_duplicates(&hashes) || hashes.iter().any(|h| locks.contains(h)) {
            return Err(StoreError::Conflict("a token with this hash exists"));
        }
        for t in tokens {
            locks.insert(t);
        }
        grants.insert(
            grant.id.clone(),
            GrantEntry::Live {
                record: grant.clone(),
                tokens: hashes,
            },
        );
        if let Some((user, users)) = &mut users {
            let entry = users.entry((*user).clone()).or_default();
            entry
                .grants
                .entry(grant.client_id.clone())
                .or_default()
                .push(grant.id.clone());
        }
        Ok(true)
    }

    fn rotate_refresh_sync(
        &self,
        old: &TokenHash,
        now: DateTime<Utc>,
        access_valid_until: DateTime<Utc>,
        new_tokens: &[TokenRecord],
    ) -> Result<Rotation, StoreError> {
        // Learn the grant, then lock grant → tokens in the global order and
        // look again: the token may have been rotated or revoked meanwhile.
        let grant_id = match self.tokens.read(hash_shard(old)).get(old) {
            Some(t) if t.kind == TokenKind::Refresh => t.grant_id.clone(),
            _ => return Ok(Rotation::Missing),
        };
        let mut grants = self.grants.write(self.grant_shard(&grant_id));
        let Some(GrantEntry::Live { tokens: owned, .. }) = grants.get_mut(&grant_id) else {
            return Ok(Rotation::Missing);
        };
        let mut locks = self.lock_tokens(
            owned
                .iter()
                .chain(std::iter::once(old))
                .chain(new_tokens.iter().map(|t| &t.hash)),
        );
        let consumed = match locks.get_mut(old) {
            Some(t) if t.grant_id == grant_id && t.kind == TokenKind::Refresh => {
                t.consumed_at.is_some()
            }
            _ => return Ok(Rotation::Missing),
        };
        if consumed {
            // RFC 9700 §4.14.2: the whole grant goes.
            for h in owned.iter() {
                locks.remove(h);
            }
            locks.remove(old);
            drop(locks);
            let record = match grants.insert(grant_id, GrantEntry::Revoked) {
                Some(GrantEntry::Live { record, .. }) => Some(record),
                _ => None,
            };
            drop(grants);
            if let Some(r) = record {
                self.unindex_grant(&r);
            }
            return Ok(Rotation::Reused);
        }
        if new_tokens.iter().any(|t| t.grant_id != grant_id) {
            return Err(StoreError::Conflict(
                "a new token names another grant than the rotated one",
            ));
        }
        let new_hashes: Vec<TokenHash> = new_tokens.iter().map(|t| t.hash).collect();
        if has_duplicates(&new_hashes) || new_hashes.iter().any(|h| locks.contains(h)) {
            return Err(StoreError::Conflict("a token with this hash exists"));
        }
        // Nothing below can fail: the rotation is all-or-nothing.
        if let Some(t) = locks.get_mut(old) {
            t.consumed_at = Some(now);
        }
        owned.retain(|h| {
            let expires = match locks.get_mut(h) {
                None => return false,
                Some(t) if t.kind != TokenKind::Access => return true,
                Some(t) => t.expires_at,
            };
            if access_valid_until <= now {
                locks.remove(h);
                return false;
            }
            let capped = expires.map_or(access_valid_until, |e| e.min(access_valid_until));
            if let Some(t) = locks.get_mut(h) {
                t.expires_at = Some(capped);
            }
            true
        });
        for t in new_tokens {
            locks.insert(t);
        }
        owned.extend(new_hashes);
        Ok(Rotation::Rotated)
    }

    fn delete_token_sync(&self, hash: &TokenHash) -> bool {
        let grant_id = match self.tokens.read(hash_shard(hash)).get(hash) {
            Some(t) => t.grant_id.clone(),
            None => return false,
        };
        let mut grants = self.grants.write(self.grant_shard(&grant_id));
        let mut tokens = self.tokens.write(hash_shard(hash));
        match tokens.get(hash) {
            Some(t) if t.grant_id == grant_id => {}
            // Deleted meanwhile (or, impossibly, re-issued under another grant).
            _ => return false,
        }
        tokens.remove(hash);
        if let Some(GrantEntry::Live { tokens: owned, .. }) = grants.get_mut(&grant_id) {
            owned.retain(|h| h != hash);
        }
        true
    }

    fn add_consent_sync(&self, user: &UserId, client_id: &str, scope: &Scopes, now: DateTime<Utc>) {
        let mut users = self.users.write(self.user_shard(user));
        let entry = users.entry(user.clone()).or_default();
        match entry.consents.iter_mut().find(|c| c.client_id == client_id) {
            Some(c) => {
                c.scope = c.scope.union(scope);
                c.updated_at = now;
            }
            None => entry.consents.push(Consent {
                user_id: user.clone(),
                client_id: client_id.to_owned(),
                scope: scope.clone(),
                granted_at: now,
                updated_at: now,
            }),
        }
    }

    fn revoke_consent_sync(&self, user: &UserId, client_id: &str) -> bool {
        let mut existed = false;
        {
            // Holding the user's shard keeps create_grant from adding a
            // grant of this user to the index while we revoke it.
            let mut users = self.users.write(self.user_shard(user));
            if let Some(entry) = users.get_mut(user) {
                if let Some(at) = entry.consents.iter().position(|c| c.client_id == client_id) {
                    entry.consents.remove(at);
                    existed = true;
                }
                for id in entry.grants.remove(client_id).unwrap_or_default() {
                    let mut grants = self.grants.write(self.grant_shard(&id));
                    existed |= self.revoke_locked(&mut grants, &id).is_some();
                }
                if entry.is_empty() {
                    users.remove(user);
                }
            }
        }
        // Unused codes go. A used code's grant may not exist yet (its token
        // request is in flight): revoking its id makes that create_grant fail.
        let mut in_flight = Vec::new();
        for i in 0..SHARDS {
            let mut codes = self.codes.write(i);
            codes.retain(|_, c| {
                if !c.belongs_to(user, client_id) {
                    return true;
                }
                if c.is_used() {
                    in_flight.extend(c.grant_id().ok());
                }
                c.is_used()
            });
        }
        for id in in_flight {
            existed |= self.revoke_one(&id);
        }
        existed
    }

    fn delete_client_sync(&self, client_id: &str) -> bool {
        if self
            .clients
            .write(self.str_shard(client_id))
            .remove(client_id)
            .is_none()
        {
            return false;
        }
        let mut doomed = Vec::new();
        for i in 0..SHARDS {
            let mut users = self.users.write(i);
            users.retain(|_, e| {
                e.consents.retain(|c| c.client_id != client_id);
                doomed.extend(e.grants.remove(client_id).unwrap_or_default());
                !e.is_empty()
            });
        }
        for i in 0..SHARDS {
            let mut codes = self.codes.write(i);
            codes.retain(|_, c| {
                if !c.client_is(client_id) {
                    return true;
                }
                if c.is_used() {
                    doomed.extend(c.grant_id().ok());
                }
                false
            });
        }
        for id in &doomed {
            let mut grants = self.grants.write(self.grant_shard(id));
            self.revoke_locked(&mut grants, id);
        }
        // Last, the client's grants without a user (client credentials) and
        // any created while the scans above ran.
        for i in 0..SHARDS {
            let mut grants = self.grants.write(i);
            let ids: Vec<GrantId> = grants
                .iter()
                .filter(|(_, e)| matches!(e, GrantEntry::Live { record, .. } if record.client_id == client_id))
                .map(|(id, _)| id.clone())
                .collect();
            for id in ids {
                self.revoke_locked(&mut grants, &id);
            }
        }
        true
    }

    fn purge_expired_sync(&self, now: DateTime<Utc>) -> Purged {
        let mut purged = Purged::default();
        // Grants (and revoked markers) some code still refers to stay. A
        // 64-bit digest of the id is enough: a collision only keeps a grant
        // until the next purge.
        let mut referenced: HashSet<u64> = HashSet::new();
        for i in 0..SHARDS {
            let mut codes = self.codes.write(i);
            let before = codes.len();
            codes.retain(|_, c| c.expires_at > now);
            purged.codes += (before - codes.len()) as u64;
            referenced.extend(codes.values().map(|c| self.keys.hash_one(c.grant_bytes())));
        }
        let mut dropped: HashMap<GrantId, Vec<TokenHash>> = HashMap::new();
        for i in 0..SHARDS {
            let mut tokens = self.tokens.write(i);
            tokens.retain(|h, t| {
                if t.is_expired(now) {
                    dropped.entry(t.grant_id.clone()).or_default().push(*h);
                    false
                } else {
                    true
                }
            });
        }
        purged.tokens = dropped.values().map(|v| v.len() as u64).sum();
        let mut emptied = Vec::new();
        for i in 0..SHARDS {
            let mut grants = self.grants.write(i);
            grants.retain(|id, e| {
                let in_use = referenced.contains(&self.keys.hash_one(id.as_str().as_bytes()));
                match e {
                    GrantEntry::Revoked => in_use,
                    GrantEntry::Live { record, tokens } => {
                        if let Some(gone) = dropped.get(id) {
                            tokens.retain(|h| !gone.contains(h));
                        }
                        if tokens.is_empty() && !in_use {
                            emptied.push(record.clone());
                            false
                        } else {
                            true
                        }
                    }
                }
            });
        }
        purged.grants = emptied.len() as u64;
        for g in &emptied {
            self.unindex_grant(g);
        }
        purged
    }
}

fn has_duplicates(hashes: &[TokenHash]) -> bool {
    hashes
        .iter()
        .enumerate()
        .any(|(i, h)| hashes[..i].contains(h))
}

// ---------------------------------------------------------------------------
// The traits

#[async_trait]
impl ClientStore for MemoryStore {
    async fn client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        Ok(self
            .clients
            .read(self.str_shard(client_id))
            .get(client_id)
            .cloned())
    }

    async fn create_client(&self, client: &Client) -> Result<bool, StoreError> {
        let mut clients = self.clients.write(self.str_shard(&client.client_id));
        if clients.contains_key(&client.client_id) {
            return Ok(false);
        }
        clients.insert(client.client_id.clone(), client.clone());
        Ok(true)
    }

    async fn update_client(&self, client: &Client) -> Result<bool, StoreError> {
        let mut clients = self.clients.write(self.str_shard(&client.client_id));
        match clients.get_mut(&client.client_id) {
            Some(c) => {
                *c = client.clone();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn delete_client(&self, client_id: &str) -> Result<bool, StoreError> {
        Ok(self.delete_client_sync(client_id))
    }
}

#[async_trait]
impl CodeStore for MemoryStore {
    /// Refuses (with [`StoreError::Conflict`]) a hash that is stored
    /// already: overwriting a used code's tombstone would allow a replay.
    async fn put_code(&self, code: &CodeRecord) -> Result<(), StoreError> {
        let stored = StoredCode::encode(code);
        let mut codes = self.codes.write(hash_shard(&code.hash));
        if codes.contains_key(&code.hash) {
            return Err(StoreError::Conflict("a code with this hash exists"));
        }
        codes.insert(code.hash, stored);
        Ok(())
    }

    /// A used code answers [`CodeTake::Replayed`] until
    /// [`Store::purge_expired`] removes it, whatever `now` says.
    async fn take_code(
        &self,
        hash: &TokenHash,
        _now: DateTime<Utc>,
    ) -> Result<CodeTake, StoreError> {
        self.take_code_sync(hash)
    }
}

#[async_trait]
impl GrantStore for MemoryStore {
    async fn create_grant(
        &self,
        grant: &GrantRecord,
        tokens: &[TokenRecord],
    ) -> Result<bool, StoreError> {
        self.create_grant_sync(grant, tokens)
    }

    async fn revoke_grant(&self, grant_id: &GrantId) -> Result<(), StoreError> {
        self.revoke_one(grant_id);
        Ok(())
    }

    async fn consent(&self, user: &UserId, client_id: &str) -> Result<Option<Consent>, StoreError> {
        let users = self.users.read(self.user_shard(user));
        Ok(users
            .get(user)
            .and_then(|e| e.consents.iter().find(|c| c.client_id == client_id))
            .cloned())
    }

    async fn add_consent(
        &self,
        user: &UserId,
        client_id: &str,
        scope: &Scopes,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.add_consent_sync(user, client_id, scope, now);
        Ok(())
    }

    async fn list_consents(&self, user: &UserId) -> Result<Vec<Consent>, StoreError> {
        let mut out = self
            .users
            .read(self.user_shard(user))
            .get(user)
            .map(|e| e.consents.clone())
            .unwrap_or_default();
        out.sort_by_key(|c| c.granted_at);
        Ok(out)
    }

    async fn revoke_consent(&self, user: &UserId, client_id: &str) -> Result<bool, StoreError> {
        Ok(self.revoke_consent_sync(user, client_id))
    }
}

#[async_trait]
impl TokenStore for MemoryStore {
    async fn token(&self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        Ok(self.tokens.read(hash_shard(hash)).get(hash).cloned())
    }

    async fn rotate_refresh(
        &self,
        old: &TokenHash,
        now: DateTime<Utc>,
        access_valid_until: DateTime<Utc>,
        new_tokens: &[TokenRecord],
    ) -> Result<Rotation, StoreError> {
        self.rotate_refresh_sync(old, now, access_valid_until, new_tokens)
    }

    async fn delete_token(&self, hash: &TokenHash) -> Result<bool, StoreError> {
        Ok(self.delete_token_sync(hash))
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn purge_expired(&self, now: DateTime<Utc>) -> Result<Purged, StoreError> {
        Ok(self.purge_expired_sync(now))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use chrono::TimeDelta;

    use super::*;
    use crate::secret::random_token;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default()
    }

    fn hash() -> TokenHash {
        TokenHash::of(&random_token())
    }

    fn code(client: &str, user: &str) -> CodeRecord {
        CodeRecord {
            hash: hash(),
            grant_id: GrantId::generate(),
            client_id: client.into(),
            user_id: UserId::new(user),
            redirect_uri: "https://app.example/cb".into(),
            redirect_uri_explicit: true,
            scope: Scopes::from_tokens(["profile", "balance"]),
            code_challenge: Some(random_token()),
            issued_at: t0(),
            expires_at: t0() + TimeDelta::minutes(10),
        }
    }

    fn grant(client: &str, user: Option<&str>) -> GrantRecord {
        GrantRecord {
            id: GrantId::generate(),
            client_id: client.into(),
            user_id: user.map(UserId::new),
            scope: Scopes::from_tokens(["profile"]),
            created_at: t0(),
        }
    }

    fn token(g: &GrantRecord, kind: TokenKind) -> TokenRecord {
        TokenRecord {
            hash: hash(),
            kind,
            grant_id: g.id.clone(),
            client_id: g.client_id.clone(),
            user_id: g.user_id.clone(),
            scope: g.scope.clone(),
            issued_at: t0(),
            expires_at: Some(t0() + TimeDelta::hours(1)),
            consumed_at: None,
        }
    }

    /// A grant with an access and a refresh token, stored.
    async fn live_grant(
        store: &MemoryStore,
        client: &str,
        user: Option<&str>,
    ) -> (GrantRecord, [TokenRecord; 2]) {
        let g = grant(client, user);
        let tokens = [token(&g, TokenKind::Access), token(&g, TokenKind::Refresh)];
        assert_eq!(store.create_grant(&g, &tokens).await.ok(), Some(true));
        (g, tokens)
    }

    /// Fails instead of hanging if a lock order bug deadlocks.
    async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
        match tokio::time::timeout(Duration::from_secs(60), f).await {
            Ok(v) => v,
            Err(_) => panic!("timed out: deadlock?"),
        }
    }

    #[test]
    fn code_packing_round_trips_awkward_fields() {
        let mut c = code("client", "user with spaces");
        c.scope = Scopes::from_tokens(["", "a b", "é", "z"]);
        c.redirect_uri = String::new();
        assert_eq!(StoredCode::encode(&c).decode(c.hash).ok(), Some(c.clone()));
        c.code_challenge = None;
        c.redirect_uri_explicit = false;
        c.scope = Scopes::empty();
        let stored = StoredCode::encode(&c);
        assert_eq!(stored.decode(c.hash).ok(), Some(c.clone()));
        assert_eq!(stored.grant_id().ok(), Some(c.grant_id.clone()));
        assert!(stored.belongs_to(&c.user_id, "client"));
        assert!(!stored.belongs_to(&c.user_id, "clien"));
        assert!(stored.client_is("client"));
        // Some(String::new()) is a challenge too, distinct from None.
        c.code_challenge = Some(String::new());
        assert_eq!(StoredCode::encode(&c).decode(c.hash).ok(), Some(c));
    }

    #[test]
    fn a_stored_code_is_compact() {
        // Map slot: 32-byte key + this; the rest is one heap allocation
        // about as long as the code's strings.
        assert!(
            std::mem::size_of::<StoredCode>() <= 48,
            "{}",
            std::mem::size_of::<StoredCode>()
        );
        let c = code("client-0123456789abcdef", "user-42");
        let stored = StoredCode::encode(&c);
        let strings = c.grant_id.as_str().len()
            + c.client_id.len()
            + c.user_id.as_str().len()
            + c.redirect_uri.len()
            + c.code_challenge.as_deref().map_or(0, str::len)
            + c.scope.iter().map(str::len).sum::<usize>();
        assert!(stored.text.len() <= strings + 8);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn thirty_two_threads_take_one_code_once() {
        for _ in 0..20 {
            let store = Arc::new(MemoryStore::new());
            let c = code("c", "u");
            assert!(store.put_code(&c).await.is_ok());
            let barrier = Arc::new(tokio::sync::Barrier::new(32));
            let tasks: Vec<_> = (0..32)
                .map(|_| {
                    let (store, barrier, h) = (store.clone(), barrier.clone(), c.hash);
                    tokio::spawn(async move {
                        barrier.wait().await;
                        store.take_code(&h, t0()).await
                    })
                })
                .collect();
            let mut taken = 0;
            for t in tasks {
                match within(t).await {
                    Ok(Ok(CodeTake::Taken(r))) => {
                        assert_eq!(r, c);
                        taken += 1;
                    }
                    Ok(Ok(CodeTake::Replayed(g))) => assert_eq!(g, c.grant_id),
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert_eq!(taken, 1);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn thirty_two_threads_rotate_one_token_once_then_the_grant_dies() {
        for _ in 0..20 {
            let store = Arc::new(MemoryStore::new());
            let (g, [access, refresh]) = live_grant(&store, "c", Some("u")).await;
            let barrier = Arc::new(tokio::sync::Barrier::new(32));
            let tasks: Vec<_> = (0..32)
                .map(|_| {
                    let (store, barrier, old) = (store.clone(), barrier.clone(), refresh.hash);
                    let new = vec![token(&g, TokenKind::Access), token(&g, TokenKind::Refresh)];
                    tokio::spawn(async move {
                        barrier.wait().await;
                        let r = store
                            .rotate_refresh(&old, t0(), t0() + TimeDelta::seconds(30), &new)
                            .await;
                        (r, new)
                    })
                })
                .collect();
            let (mut rotated, mut reused) = (0, 0);
            let mut all = vec![access, refresh];
            for t in tasks {
                let Ok((r, new)) = within(t).await else {
                    panic!("task failed")
                };
                match r {
                    Ok(Rotation::Rotated) => rotated += 1,
                    Ok(Rotation::Reused) => reused += 1,
                    Ok(Rotation::Missing) => {}
                    Err(e) => panic!("{e}"),
                }
                all.extend(new);
            }
            assert_eq!(rotated, 1);
            assert!(reused >= 1);
            for t in &all {
                assert_eq!(store.token(&t.hash).await.ok(), Some(None));
            }
            assert_eq!(store.create_grant(&g, &[]).await.ok(), Some(false));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn revocation_never_loses_a_race() {
        let store = Arc::new(MemoryStore::new());
        for _ in 0..300 {
            // revoke_grant against rotate_refresh
            let (g, [access, refresh]) = live_grant(&store, "c", Some("u")).await;
            let new = vec![token(&g, TokenKind::Access), token(&g, TokenKind::Refresh)];
            let rotate = {
                let (store, new) = (store.clone(), new.clone());
                tokio::spawn(async move {
                    store
                        .rotate_refresh(&refresh.hash, t0(), t0(), &new)
                        .await
                        .is_ok()
                })
            };
            let revoke = {
                let (store, id) = (store.clone(), g.id.clone());
                tokio::spawn(async move { store.revoke_grant(&id).await.is_ok() })
            };
            assert!(matches!(within(rotate).await, Ok(true)));
            assert!(matches!(within(revoke).await, Ok(true)));
            for t in new.iter().chain([&access, &refresh]) {
                assert_eq!(store.token(&t.hash).await.ok(), Some(None));
            }

            // revoke_grant against create_grant, and revoke_consent against both
            let g = grant("c", Some("v"));
            let tokens = vec![token(&g, TokenKind::Access), token(&g, TokenKind::Refresh)];
            let create = {
                let (store, g, tokens) = (store.clone(), g.clone(), tokens.clone());
                tokio::spawn(async move { store.create_grant(&g, &tokens).await.is_ok() })
            };
            let revoke = {
                let (store, id) = (store.clone(), g.id.clone());
                tokio::spawn(async move { store.revoke_grant(&id).await.is_ok() })
            };
            let consent = {
                let store = store.clone();
                tokio::spawn(
                    async move { store.revoke_consent(&UserId::new("v"), "c").await.is_ok() },
                )
            };
            for task in [create, revoke, consent] {
                assert!(matches!(within(task).await, Ok(true)));
            }
            for t in &tokens {
                assert_eq!(store.token(&t.hash).await.ok(), Some(None));
            }
        }
    }

    /// Many threads working on many grants at once, each touching several
    /// shards in every lock class: nothing deadlocks, nothing is lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn mixed_load_does_not_deadlock() {
        let store = Arc::new(MemoryStore::new());
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let user = format!("user{}", i % 3);
                    for round in 0..200 {
                        let (g, [access, mut refresh]) = live_grant(&store, "c", Some(&user)).await;
                        for _ in 0..3 {
                            let new = [token(&g, TokenKind::Access), token(&g, TokenKind::Refresh)];
                            let r = store
                                .rotate_refresh(
                                    &refresh.hash,
                                    t0(),
                                    t0() + TimeDelta::minutes(1),
                                    &new,
                                )
                                .await;
                            assert!(matches!(r, Ok(Rotation::Rotated | Rotation::Missing)));
                            let [_, r2] = new;
                            refresh = r2;
                        }
                        assert!(store.token(&access.hash).await.is_ok());
                        match round % 4 {
                            0 => assert!(store.revoke_grant(&g.id).await.is_ok()),
                            1 => assert!(
                                store
                                    .revoke_consent(&UserId::new(user.clone()), "c")
                                    .await
                                    .is_ok()
                            ),
                            2 => assert!(store.delete_token(&access.hash).await.is_ok()),
                            _ => assert!(
                                store
                                    .purge_expired(t0() + TimeDelta::hours(2))
                                    .await
                                    .is_ok()
                            ),
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            assert!(within(t).await.is_ok());
        }
    }

    #[tokio::test]
    async fn revoke_consent_blocks_a_grant_whose_code_was_taken_before() {
        let store = MemoryStore::new();
        let c = code("c", "u");
        assert!(store.put_code(&c).await.is_ok());
        assert!(matches!(
            store.take_code(&c.hash, t0()).await,
            Ok(CodeTake::Taken(_))
        ));
        // The user revokes the app while the token request is in flight.
        assert_eq!(
            store.revoke_consent(&c.user_id, "c").await.ok(),
            Some(false)
        );
        let g = GrantRecord {
            id: c.grant_id.clone(),
            ..grant("c", Some("u"))
        };
        let tokens = [token(&g, TokenKind::Access)];
        assert_eq!(store.create_grant(&g, &tokens).await.ok(), Some(false));
        assert_eq!(store.token(&tokens[0].hash).await.ok(), Some(None));
    }

    #[tokio::test]
    async fn purge_drops_revoked_markers_no_code_refers_to() {
        let store = MemoryStore::new();
        let c = code("c", "u");
        assert!(store.put_code(&c).await.is_ok());
        let referenced = GrantRecord {
            id: c.grant_id.clone(),
            ..grant("c", Some("u"))
        };
        let lonely = grant("c", Some("u"));
        for id in [&referenced.id, &lonely.id] {
            assert!(store.revoke_grant(id).await.is_ok());
        }
        let purged = store.purge_expired(t0() + TimeDelta::minutes(5)).await.ok();
        assert_eq!(purged, Some(Purged::default()));
        assert_eq!(store.create_grant(&referenced, &[]).await.ok(), Some(false));
        assert_eq!(store.create_grant(&lonely, &[]).await.ok(), Some(true));
        // Once the code expires its marker goes too.
        let purged = store.purge_expired(t0() + TimeDelta::hours(1)).await.ok();
        assert_eq!(
            purged,
            Some(Purged {
                codes: 1,
                tokens: 0,
                grants: 1
            })
        );
        assert_eq!(store.create_grant(&referenced, &[]).await.ok(), Some(true));
    }

    #[tokio::test]
    async fn indexes_shrink_back_when_grants_go() {
        let store = MemoryStore::new();
        let (g1, _) = live_grant(&store, "c", Some("u")).await;
        let (_, [_, refresh]) = live_grant(&store, "c", Some("u")).await;
        let (_, [access, _]) = live_grant(&store, "c", Some("u")).await;
        assert!(store.revoke_grant(&g1.id).await.is_ok());
        // Reuse revokes the second grant.
        for _ in 0..2 {
            assert!(
                store
                    .rotate_refresh(&refresh.hash, t0(), t0(), &[])
                    .await
                    .is_ok()
            );
        }
        let purged = store.purge_expired(t0() + TimeDelta::days(1)).await.ok();
        assert_eq!(
            purged,
            Some(Purged {
                codes: 0,
                tokens: 2,
                grants: 1
            })
        );
        assert_eq!(store.token(&access.hash).await.ok(), Some(None));
        let user = UserId::new("u");
        assert!(
            store
                .users
                .read(store.user_shard(&user))
                .get(&user)
                .is_none()
        );
        let live: usize = (0..SHARDS).map(|i| store.grants.read(i).len()).sum();
        assert_eq!(live, 0, "markers with no code refer to nothing and go");
    }

    #[tokio::test]
    async fn refuses_inconsistent_writes_without_writing() {
        let store = MemoryStore::new();
        let c = code("c", "u");
        assert!(store.put_code(&c).await.is_ok());
        assert!(matches!(
            store.take_code(&c.hash, t0()).await,
            Ok(CodeTake::Taken(_))
        ));
        // Re-putting a used code must not revive it.
        assert!(store.put_code(&c).await.is_err());
        assert_eq!(
            store.take_code(&c.hash, t0()).await.ok(),
            Some(CodeTake::Replayed(c.grant_id.clone()))
        );

        let (g, [access, refresh]) = live_grant(&store, "c", None).await;
        let other = grant("c", None);
        let dup = [token(&other, TokenKind::Access), access.clone()];
        assert!(store.create_grant(&other, &dup).await.is_err());
        assert_eq!(store.token(&dup[0].hash).await.ok(), Some(None));
        let foreign = [token(&other, TokenKind::Access)];
        assert!(
            store
                .rotate_refresh(&refresh.hash, t0(), t0(), &foreign)
                .await
                .is_err()
        );
        assert_eq!(
            store.token(&refresh.hash).await.ok(),
            Some(Some(refresh.clone()))
        );
        // An access token cannot be rotated.
        assert_eq!(
            store
                .rotate_refresh(&access.hash, t0(), t0(), &[])
                .await
                .ok(),
            Some(Rotation::Missing)
        );
        assert_eq!(
            store
                .token(&access.hash)
                .await
                .ok()
                .flatten()
                .map(|t| t.grant_id),
            Some(g.id)
        );
    }
}
