//! A short-lived cache of registered clients.
//!
//! Every token, introspection, revocation and userinfo request reads its
//! client (to authenticate it, or for its claim-release list), while
//! clients change rarely. The cache keeps each client read from the store
//! for [`Config::client_cache_ttl`](crate::Config::client_cache_ttl).
//! It keeps one replica per thread (threads beyond the replicas share
//! them): a request reads only its own thread's replica, so threads
//! serving one client write no lock or reference count they share, and
//! each replica fills itself from the store once per client per TTL.
//! Unknown ids are not cached: a flood of made-up ids cannot fill it, and
//! a newly registered client is seen at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, TimeDelta, Utc};

use crate::model::Client;
use crate::store::thread_index;

/// The most replicas: one per thread on boxes with up to this many cores.
const MAX_REPLICAS: usize = 16;
/// Clients in all replicas together before a replica is emptied (a bound,
/// not an LRU: hosts with more active clients than this still work, a
/// little slower).
const CAPACITY: usize = 16 * 1024;

type Replica = RwLock<HashMap<String, (Arc<Client>, DateTime<Utc>)>>;

pub(crate) struct ClientCache {
    ttl: TimeDelta,
    replicas: Box<[Replica]>,
    /// Bumped by every [`ClientCache::forget`]: a record read from the
    /// store while a change was being made is not cached (it may be the
    /// old one).
    generation: AtomicU64,
}

impl ClientCache {
    pub(crate) fn new(ttl: TimeDelta) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self::with_replicas(ttl, cores.min(MAX_REPLICAS))
    }

    fn with_replicas(ttl: TimeDelta, n: usize) -> Self {
        Self {
            ttl,
            replicas: (0..n).map(|_| RwLock::new(HashMap::new())).collect(),
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

    /// This thread's replica.
    fn replica(&self) -> &Replica {
        &self.replicas[thread_index() % self.replicas.len()]
    }

    /// The cached client, if read less than the TTL before `now`.
    pub(crate) fn get(&self, client_id: &str, now: DateTime<Utc>) -> Option<Arc<Client>> {
        if !self.enabled() {
            return None;
        }
        let replica = self.replica().read().ok()?;
        let (client, read_at) = replica.get(client_id)?;
        (now >= *read_at && now - *read_at < self.ttl).then(|| client.clone())
    }

    /// Remembers a client read from the store at `now`, unless a client
    /// was forgotten since `generation` was taken (the read may have raced
    /// a change made through this server).
    pub(crate) fn put(&self, client: Arc<Client>, now: DateTime<Utc>, generation: u64) {
        if !self.enabled() {
            return;
        }
        if let Ok(mut replica) = self.replica().write() {
            // Checked under the replica's lock: `forget` bumps the
            // generation before it takes the replicas' locks, so a forget
            // that ran after this check removes the entry afterwards.
            if self.generation.load(Ordering::SeqCst) != generation {
                return;
            }
            // Each replica holds its share of the bound.
            let capacity = CAPACITY / self.replicas.len();
            if replica.len() >= capacity && !replica.contains_key(&client.client_id) {
                replica.retain(|_, (_, read_at)| now >= *read_at && now - *read_at < self.ttl);
                if replica.len() >= capacity {
                    replica.clear();
                }
            }
            replica.insert(client.client_id.clone(), (client, now));
        }
    }

    /// Drops a client (changed or deleted through this server) from every
    /// replica.
    pub(crate) fn forget(&self, client_id: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        for replica in &*self.replicas {
            if let Ok(mut replica) = replica.write() {
                replica.remove(client_id);
            }
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
        let cache = ClientCache::with_replicas(TimeDelta::hours(1), 4);
        for i in 0..(CAPACITY * 3) {
            cache.put(client(&format!("c{i}"), "x"), t0, cache.generation());
        }
        let total: usize = cache
            .replicas
            .iter()
            .map(|s| s.read().map(|m| m.len()).unwrap_or(0))
            .sum();
        assert!(
            total <= CAPACITY / 4,
            "{total} entries in this thread's replica"
        );
        assert!(total > 0);
    }

    #[test]
    fn threads_read_their_own_replica_and_forget_reaches_every_one() {
        let t0 = DateTime::UNIX_EPOCH;
        let cache = ClientCache::with_replicas(TimeDelta::seconds(5), 2);
        let first = std::thread::scope(|s| {
            s.spawn(|| {
                cache.put(client("a", "A1"), t0, cache.generation());
                assert!(cache.get("a", t0).is_some());
                thread_index() % 2
            })
            .join()
            .expect("the first thread")
        });
        // Threads are numbered in turn: one of the next few uses the other
        // replica, which has not read the client yet (other tests' threads
        // may take numbers in between, hence more than one try).
        let other = (0..64).find_map(|_| {
            std::thread::scope(|s| {
                s.spawn(|| {
                    if thread_index() % 2 == first {
                        return None;
                    }
                    let seen = cache.get("a", t0).map(|c| c.name.clone());
                    cache.put(client("a", "A2"), t0, cache.generation());
                    Some(seen)
                })
                .join()
                .expect("a later thread")
            })
        });
        assert_eq!(other, Some(None), "the other replica had the client");
        let names: Vec<String> = cache
            .replicas
            .iter()
            .map(|r| r.read().expect("replica lock")["a"].0.name.clone())
            .collect();
        assert_eq!(names.len(), 2);
        assert!(names.contains(&"A1".to_owned()) && names.contains(&"A2".to_owned()));
        cache.forget("a");
        assert!(
            cache
                .replicas
                .iter()
                .all(|r| r.read().is_ok_and(|m| m.is_empty()))
        );
    }
}
