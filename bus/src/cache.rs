//! A per-replica cache of snapshots owned by one id (a course, say), kept fresh by events: every
//! replica drops what it holds about an id when an event about that id arrives, and everything
//! after a TTL at the latest.
//!
//! A read that missed loads the value (from a store or another service) and then fills the cache;
//! an invalidation that lands while it loads bumps the generation and the fill is dropped, so a
//! value older than an invalidation never gets cached.
//!
//! Invalidations are applied in the order the replica's NATS connection received them, before
//! any read ([`SnapshotCache::follow`]): every read first applies the messages already sitting in
//! the subscriptions. A writer that publishes its notice before it replies (the catalog) is
//! therefore never overtaken on one NATS server: a request sent after the writer's reply reaches
//! this replica after the notice, so the read it causes misses and loads the new state.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::BusError;

struct Entry<T> {
    at: Instant,
    owner: Uuid,
    value: Arc<T>,
}

/// Values by key (several keys may name one value: an id and a slug), each owned by an id.
pub struct SnapshotCache<T> {
    entries: RwLock<HashMap<String, Entry<T>>>,
    generation: AtomicU64,
    ttl: Duration,
    max_entries: usize,
    /// The subscriptions whose messages invalidate ([`SnapshotCache::follow`]).
    feeds: std::sync::Mutex<Vec<Feed>>,
}

/// Invalidation messages on one subject, and how to find their owner.
struct Feed {
    subscriber: async_nats::Subscriber,
    owner_of: fn(&[u8]) -> Option<Uuid>,
}

impl<T> std::fmt::Debug for SnapshotCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotCache").field("ttl", &self.ttl).field("max_entries", &self.max_entries).finish()
    }
}

impl<T: Send + Sync + 'static> SnapshotCache<T> {
    /// `ttl` bounds staleness should an invalidation be missed (e.g. during a reconnect).
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            ttl,
            max_entries,
            feeds: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The value under `key`, after applying every invalidation already received.
    pub async fn get(&self, key: &str) -> Option<Arc<T>> {
        self.catch_up().await;
        let entries = self.entries.read().await;
        entries.get(key).filter(|e| e.at.elapsed() < self.ttl).map(|e| e.value.clone())
    }

    /// Take before loading a value; pass to [`SnapshotCache::put`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Cache `value` under `keys`, unless something was invalidated since `loaded_at`.
    pub async fn put(&self, keys: &[String], owner: Uuid, value: Arc<T>, loaded_at: u64) {
        let mut entries = self.entries.write().await;
        if self.generation.load(Ordering::Acquire) != loaded_at {
            return;
        }
        if entries.len() + keys.len() > self.max_entries {
            entries.clear();
        }
        let at = Instant::now();
        for key in keys {
            entries.insert(key.clone(), Entry { at, owner, value: value.clone() });
        }
    }

    /// Forget everything owned by `owner`.
    pub async fn invalidate(&self, owner: Uuid) {
        let mut entries = self.entries.write().await;
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.retain(|_, e| e.owner != owner);
    }

    pub async fn clear(&self) {
        let mut entries = self.entries.write().await;
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }

    /// How often invalidations are applied while nobody reads.
    pub const CATCH_UP_EVERY: Duration = Duration::from_millis(50);

    /// Subscribe (core NATS, every replica) to each of `subjects` and invalidate the owner
    /// `owner_of` finds in each message (or everything, when it finds none): before every read,
    /// and every [`SnapshotCache::CATCH_UP_EVERY`] until `shutdown`.
    pub async fn follow(
        self: &Arc<Self>,
        client: &async_nats::Client,
        subjects: &[&str],
        owner_of: fn(&[u8]) -> Option<Uuid>,
        shutdown: CancellationToken,
    ) -> Result<tokio::task::JoinHandle<()>, BusError> {
        for subject in subjects {
            let subscriber =
                client.subscribe((*subject).to_owned()).await.map_err(|e| BusError::Service(e.to_string()))?;
            self.feeds.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(Feed { subscriber, owner_of });
        }
        let cache = self.clone();
        Ok(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Self::CATCH_UP_EVERY) => cache.catch_up().await,
                }
            }
        }))
    }

    /// Apply the invalidation messages the subscriptions already hold. They are taken without
    /// waiting (and outside tokio's cooperative budget, which could otherwise report a waiting
    /// message as absent).
    async fn catch_up(&self) {
        let owners = tokio::task::unconstrained(std::future::poll_fn(|_| {
            let mut owners = Vec::new();
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            let mut feeds = self.feeds.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for feed in feeds.iter_mut() {
                while let std::task::Poll::Ready(Some(message)) = feed.subscriber.poll_next_unpin(&mut cx) {
                    owners.push((feed.owner_of)(&message.payload));
                }
            }
            std::task::Poll::Ready(owners)
        }))
        .await;
        for owner in owners {
            match owner {
                Some(owner) => self.invalidate(owner).await,
                None => self.clear().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fill_that_raced_an_invalidation_is_dropped() {
        let cache = SnapshotCache::new(Duration::from_secs(60), 100);
        let owner = Uuid::now_v7();
        let keys = vec!["id:a".to_owned(), "slug:a".to_owned()];
        let loaded_at = cache.generation();
        cache.invalidate(owner).await;
        cache.put(&keys, owner, Arc::new(1), loaded_at).await;
        assert!(cache.get("id:a").await.is_none(), "stale fill dropped");
        let loaded_at = cache.generation();
        cache.put(&keys, owner, Arc::new(2), loaded_at).await;
        assert_eq!(cache.get("slug:a").await.as_deref(), Some(&2));
        cache.invalidate(owner).await;
        assert!(cache.get("id:a").await.is_none() && cache.get("slug:a").await.is_none());
    }

    #[tokio::test]
    async fn entries_expire_after_the_ttl() {
        let cache = SnapshotCache::new(Duration::ZERO, 100);
        let owner = Uuid::now_v7();
        cache.put(&["k".to_owned()], owner, Arc::new(1), cache.generation()).await;
        assert!(cache.get("k").await.is_none());
    }
}
