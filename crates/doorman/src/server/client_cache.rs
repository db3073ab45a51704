//! A short-lived cache of registered clients.
//!
//! Every token, introspection, revocation and userinfo request reads its
//! client (to authenticate it, or for its claim-release list), while
//! clients change rarely. The cache keeps each client read from the store
//! for [`Config::client_cache_ttl`](crate::Config::client_cache_ttl), in
//! shards so that readers of different clients never wait on one lock.
//! Unknown ids are not cached: a flood of made-up ids cannot fill it, and
//! a newly registered client is seen at once.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::hash::RandomState;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, TimeDelta, Utc};

use crate::model::Client;

const SHARDS: usize = 16;
/// Clients per shard before the shard is emptied (a bound, not an LRU:
/// hosts with more active clients than this still work, a little slower).
const SHARD_CAPACITY: usize = 1024;

type Shard = RwLock<HashMap<String, (Arc<Client>, DateTime<Utc>)>>;

pub(crate) struct ClientCache {
    ttl: TimeDelta,
    shards: Vec<Shard>,
    keys: RandomState,
    /// Bumped by every [`ClientCache::forget`]: a record read from the
    /// store while a change was being made is not cached (it may be the
    /// old one).
    generation: AtomicU64,
}

impl ClientCache {
    pub(crate) fn new(ttl: TimeDelta) -> Self {
        Self {
            ttl,
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            keys: RandomState::new(),
            generation: AtomicU64::new(0),
        }
    }

    /// Take this before reading the store; pass it to [`ClientCache::put`].
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub(crate) fn enabled(&self) -> bool {
        self.ttl > TimeDelta::zero()
    }

    fn shard(&self, client_id: &str) -> &Shard {
        // SHARDS is a power of two; the low bits of a SipHash are uniform.
        let i = (self.keys.hash_one(client_id) as usize) % SHARDS;
        &self.shards[i]
    }

    /// The cached client, if read less than the TTL before `now`.
    pub(crate) fn get(&self, client_id: &str, now: DateTime<Utc>) -> Option<Arc<Client>> {
        if !self.enabled() {
            return None;
        }
        let shard = self.shard(client_id).read().ok()?;
        let (client, read_at) = shard.get(client_id)?;
        (now >= *read_at && now - *read_at < self.ttl).then(|| client.clone())
    }

    /// Remembers a client read from the store at `now`, unless a client
    /// was forgotten since `generation` was taken (the read may have raced
    /// a change made through this server).
    pub(crate) fn put(&self, client: Arc<Client>, now: DateTime<Utc>, generation: u64) {
        if !self.enabled() {
            return;
        }
        if let Ok(mut shard) = self.shard(&client.client_id).write() {
            // Checked under the shard lock: `forget` bumps the generation
            // before it takes the lock, so a forget that ran after this
            // check removes the entry afterwards.
            if self.generation.load(Ordering::SeqCst) != generation {
                return;
            }
            if shard.len() >= SHARD_CAPACITY && !shard.contains_key(&client.client_id) {
                shard.retain(|_, (_, read_at)| now >= *read_at && now - *read_at < self.ttl);
                if shard.len() >= SHARD_CAPACITY {
                    shard.clear();
                }
            }
            shard.insert(client.client_id.clone(), (client, now));
        }
    }

    /// Drops a client (changed or deleted through this server).
    pub(crate) fn forget(&self, client_id: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut shard) = self.shard(client_id).write() {
            shard.remove(client_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::Scopes;

    fn client(id: &str, name: &str) -> Arc<Client> {
        Arc::new(Client {
            client_id: id.into(),
            secret_hash: None,
            name: name.into(),
            description: String::new(),
            redirect_uris: vec!["https://a.example/cb".into()],
            scope: Scopes::empty(),
            grant_types: Vec::new(),
            trusted: false,
            released_claims: None,
            created_at: DateTime::UNIX_EPOCH,
        })
    }

    #[test]
    fn entries_live_for_the_ttl_only() {
        let t0 = DateTime::UNIX_EPOCH + TimeDelta::days(1);
        let cache = ClientCache::new(TimeDelta::seconds(5));
        cache.put(client("a", "A"), t0, cache.generation());
        assert_eq!(cache.get("a", t0).map(|c| c.name.clone()), Some("A".into()));
        assert!(cache.get("a", t0 + TimeDelta::milliseconds(4999)).is_some());
        assert!(cache.get("a", t0 + TimeDelta::seconds(5)).is_none());
        // A clock that went backwards does not extend an entry's life.
        assert!(cache.get("a", t0 - TimeDelta::seconds(1)).is_none());
        assert!(cache.get("b", t0).is_none());
    }

    #[test]
    fn forget_and_disabled() {
        let t0 = DateTime::UNIX_EPOCH;
        let cache = ClientCache::new(TimeDelta::seconds(5));
        cache.put(client("a", "A"), t0, cache.generation());
        cache.forget("a");
        assert!(cache.get("a", t0).is_none());
        let off = ClientCache::new(TimeDelta::zero());
        off.put(client("a", "A"), t0, off.generation());
        assert!(off.get("a", t0).is_none());
    }

    #[test]
    fn a_read_that_raced_a_change_is_not_cached() {
        let t0 = DateTime::UNIX_EPOCH;
        let cache = ClientCache::new(TimeDelta::seconds(5));
        let before = cache.generation();
        // ... the store read happens here, while the client is changed:
        cache.forget("a");
        cache.put(client("a", "old"), t0, before);
        assert!(cache.get("a", t0).is_none());
        cache.put(client("a", "new"), t0, cache.generation());
        assert_eq!(
            cache.get("a", t0).map(|c| c.name.clone()),
            Some("new".into())
        );
    }

    #[test]
    fn stays_bounded() {
        let t0 = DateTime::UNIX_EPOCH;
        let cache = ClientCache::new(TimeDelta::hours(1));
        for i in 0..(SHARDS * SHARD_CAPACITY * 3) {
            cache.put(client(&format!("c{i}"), "x"), t0, cache.generation());
        }
        let total: usize = cache
            .shards
            .iter()
            .map(|s| s.read().map(|m| m.len()).unwrap_or(0))
            .sum();
        assert!(total <= SHARDS * SHARD_CAPACITY, "{total} entries");
        assert!(total > 0);
    }
}
