//! Bindings in memory: the same rules as the Redis store — one owner per (credential, device
//! token), a device moving between identities, a TTL per binding, the per-identity cap evicting
//! the least recently updated, and pruning only while the binding still holds the token and was
//! not updated after the provider's verdict — under one lock, so every operation is atomic,
//! and so is each change with its event on the binding feed (kept in memory, SPEC §11).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::backend::BackendError;
use crate::bindings::feed::{FeedEvent, MemoryFeed};
use crate::bindings::{new_binding_id, Binding, BindingStore, NewBinding, Registered};
use crate::domain::{now_ms, ApnsEnvironment};

const DAY_MS: u64 = 86_400_000;

#[derive(Debug, Default)]
struct Tables {
    /// identity → binding id → binding.
    identities: HashMap<String, HashMap<String, Binding>>,
    /// (credential, device token) → (identity, binding id): who owns a device.
    devices: HashMap<(String, String), (String, String)>,
    /// The binding feed.
    feed: MemoryFeed,
    /// The feed webhook's place.
    cursor: Option<String>,
}

impl Tables {
    /// Remove one binding and release its device, if the device still names it.
    fn remove(&mut self, identity: &str, binding_id: &str) -> Option<Binding> {
        let bindings = self.identities.get_mut(identity)?;
        let removed = bindings.remove(binding_id)?;
        if bindings.is_empty() {
            self.identities.remove(identity);
        }
        let device = (removed.credential.clone(), removed.device_token.clone());
        if self.devices.get(&device) == Some(&(identity.to_string(), binding_id.to_string())) {
            self.devices.remove(&device);
        }
        Some(removed)
    }

    /// Remove one binding (as [`Tables::remove`]) and add `event` for it to the feed.
    fn remove_noting(
        &mut self,
        identity: &str,
        binding_id: &str,
        event: &str,
        reason: &str,
    ) -> Option<Binding> {
        let removed = self.remove(identity, binding_id)?;
        self.note(FeedEvent::of(event, &removed, reason, now_ms()));
        Some(removed)
    }

    fn note(&mut self, event: FeedEvent) {
        self.feed.add(event, now_ms());
    }

    /// Drop the identity's expired bindings.
    fn expire(&mut self, identity: &str, now: u64) {
        let expired: Vec<String> = match self.identities.get(identity) {
            Some(b) => b
                .values()
                .filter(|b| b.expires_at_ms <= now)
                .map(|b| b.binding_id.clone())
                .collect(),
            None => return,
        };
        for id in expired {
            self.remove_noting(identity, &id, "expired", "ttl");
        }
    }
}

/// Bindings in this process's memory (see the module docs). Not durable.
#[derive(Debug)]
pub struct MemoryBindingStore {
    tables: Mutex<Tables>,
    ttl_ms: u64,
    max_per_identity: usize,
}

impl MemoryBindingStore {
    /// An empty store keeping bindings `ttl_days`, at most `max_per_identity` per identity.
    pub fn new(ttl_days: u32, max_per_identity: usize) -> MemoryBindingStore {
        MemoryBindingStore {
            tables: Mutex::new(Tables::default()),
            ttl_ms: u64::from(ttl_days) * DAY_MS,
            max_per_identity: max_per_identity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().expect("memory bindings lock")
    }
}

#[async_trait::async_trait]
impl BindingStore for MemoryBindingStore {
    async fn register(&self, new: NewBinding, now_ms: u64) -> Result<Registered, BackendError> {
        let mut t = self.lock();
        t.expire(&new.identity, now_ms);
        let device = (new.credential.clone(), new.device_token.clone());
        let mut moved_from = None;
        // Noted after the new owner's event, in the order the Redis store adds them.
        let mut moved = None;
        let mut existing = None;
        if let Some((owner, bid)) = t.devices.get(&device).cloned() {
            if owner == new.identity {
                existing = t
                    .identities
                    .get(&owner)
                    .and_then(|b| b.get(&bid))
                    .filter(|b| b.device_token == new.device_token)
                    .cloned();
            } else {
                t.expire(&owner, now_ms);
                if let Some(gone) = t.remove(&owner, &bid) {
                    let mut event = FeedEvent::of("moved", &gone, "", now_ms);
                    event.to = Some(new.identity.clone());
                    moved = Some(event);
                    moved_from = Some(owner);
                }
            }
        }
        let created = existing.is_none();
        // A refresh that names no environment keeps the one stored (registered or learned).
        let (environment, environment_learned) = match (new.environment, &existing) {
            (Some(registered), _) => (Some(registered), false),
            (None, Some(b)) => (b.environment, b.environment_learned),
            (None, None) => (None, false),
        };
        let binding_id = existing
            .as_ref()
            .map_or_else(new_binding_id, |b| b.binding_id.clone());
        let created_at_ms = existing.as_ref().map_or(now_ms, |b| b.created_at_ms);
        let identity = new.identity.clone();
        let binding = new.into_binding(
            binding_id,
            (environment, environment_learned),
            created_at_ms,
            now_ms,
            now_ms.saturating_add(self.ttl_ms),
        );
        t.devices
            .insert(device, (identity.clone(), binding.binding_id.clone()));
        t.identities
            .entry(identity.clone())
            .or_default()
            .insert(binding.binding_id.clone(), binding.clone());
        let event = if created { "registered" } else { "refreshed" };
        t.note(FeedEvent::of(event, &binding, "", now_ms));
        if let Some(moved) = moved {
            t.note(moved);
        }
        // Evict the least recently updated past the cap; never the binding just registered.
        let mut others: Vec<(u64, String)> = t.identities[&identity]
            .values()
            .filter(|b| b.binding_id != binding.binding_id)
            .map(|b| (b.updated_at_ms, b.binding_id.clone()))
            .collect();
        others.sort();
        let excess = (others.len() + 1).saturating_sub(self.max_per_identity);
        let evicted = others
            .into_iter()
            .take(excess)
            .filter_map(|(_, id)| t.remove_noting(&identity, &id, "evicted", "max_per_identity"))
            .collect();
        Ok(Registered {
            binding,
            created,
            moved_from,
            evicted,
        })
    }

    async fn list(&self, identity: &str) -> Result<Vec<Binding>, BackendError> {
        let now = now_ms();
        let mut t = self.lock();
        t.expire(identity, now);
        let mut live: Vec<Binding> = t
            .identities
            .get(identity)
            .map(|b| {
                b.values()
                    .filter(|b| b.expires_at_ms > now)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        live.sort_by_key(|b| std::cmp::Reverse(b.updated_at_ms));
        Ok(live)
    }

    async fn delete(&self, identity: &str, binding_id: &str) -> Result<bool, BackendError> {
        let mut t = self.lock();
        t.expire(identity, now_ms());
        Ok(
            t.remove_noting(identity, binding_id, "unregistered", "admin")
                .is_some(),
        )
    }

    async fn unregister(
        &self,
        identity: &str,
        credential: &str,
        device_token: &str,
    ) -> Result<bool, BackendError> {
        let mut t = self.lock();
        t.expire(identity, now_ms());
        let device = (credential.to_string(), device_token.to_string());
        match t.devices.get(&device).cloned() {
            Some((owner, bid)) if owner == identity => Ok(t
                .remove_noting(&owner, &bid, "unregistered", "app")
                .is_some()),
            _ => Ok(false),
        }
    }

    async fn learn_environment(
        &self,
        identity: &str,
        credential: &str,
        device_token: &str,
        environment: ApnsEnvironment,
    ) -> Result<bool, BackendError> {
        let mut t = self.lock();
        let binding = t.identities.get_mut(identity).and_then(|bindings| {
            bindings
                .values_mut()
                .find(|b| b.credential == credential && b.device_token == device_token)
        });
        match binding {
            Some(b) if b.environment.is_none() => {
                b.environment = Some(environment);
                b.environment_learned = true;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn prune(
        &self,
        binding: &Binding,
        judged_at_ms: u64,
        reason: &str,
    ) -> Result<bool, BackendError> {
        let mut t = self.lock();
        let current = t
            .identities
            .get(&binding.identity)
            .and_then(|b| b.get(&binding.binding_id));
        let prunable = current.is_some_and(|c| {
            c.credential == binding.credential
                && c.device_token == binding.device_token
                && c.updated_at_ms <= judged_at_ms
        });
        if prunable {
            t.remove_noting(&binding.identity, &binding.binding_id, "pruned", reason);
        }
        Ok(prunable)
    }

    async fn erase(&self, identity: &str) -> Result<Vec<Binding>, BackendError> {
        let mut t = self.lock();
        t.expire(identity, now_ms());
        let ids: Vec<String> = t
            .identities
            .get(identity)
            .map(|b| b.keys().cloned().collect())
            .unwrap_or_default();
        Ok(ids
            .iter()
            .filter_map(|id| t.remove_noting(identity, id, "unregistered", "erased"))
            .collect())
    }

    async fn feed(
        &self,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<FeedEvent>, BackendError> {
        Ok(self.lock().feed.read(after, count))
    }

    async fn feed_cursor(&self) -> Result<Option<String>, BackendError> {
        Ok(self.lock().cursor.clone())
    }

    async fn set_feed_cursor(&self, id: &str) -> Result<(), BackendError> {
        self.lock().cursor = Some(id.to_string());
        Ok(())
    }
}
