//! The Redis binding store.
//!
//! Keys (`<p>` is `redis.key_prefix`, which holds no braces, so the `{…}` below is always the
//! cluster hash tag):
//! - `<p>id:{<identity>}:b` — hash: binding_id → the binding as JSON (`bindings::Binding`).
//! - `<p>id:{<identity>}:u` — sorted set: binding_id scored by `updated_at_ms`; picks whom the
//!   cap evicts. Same hash tag as the hash, so one identity is one slot.
//! - `<p>dev:{<credential>:<device_token>}` — string `<identity>\n<binding_id>`: which identity
//!   owns the device token under that credential. This key is the authority on ownership.
//! - `<p>binding-events` — stream, capped with `MAXLEN ~` ([`feed::FEED_MAX_LEN`]): the binding
//!   feed (SPEC §11). Every script that changes a binding adds its event in the same script, so
//!   a change and its event happen together or not at all. On a cluster the stream is in
//!   another slot than the identity's keys: there the script adds the events to the outbox in
//!   the identity's slot, `<p>binding-events:outbox:{<tag>}`, and the store forwards them to the
//!   feed right after, or a sweep does after a crash ([`outbox`]: at least once, with an
//!   `event_id` that repeats with the event).
//! - `<p>binding-events:webhook` — string: the id of the last feed event the webhook delivered;
//!   `<p>binding-events:lease` — string, with a PX expiry: the daemon delivering the webhook.
//!
//! An identity or token holding `}` only shortens the tag; both keys of one identity still share
//! it, so they still share a slot. An identity *starting* with `}` would leave the tag empty
//! (Redis Cluster then hashes each whole key, to different slots), so its keys are
//! `<p>id}:{=}<identity>:b` and `…:u` instead (`Keys::identity_bindings`). Device tokens never
//! hold braces (SPEC §3), and credential SIDs come from the configuration.
//!
//! The device key gets a PEXPIRE of `bindings.ttl_days` on every registration, the identity's
//! keys that plus [`EXPIRY_GRACE_MS`]; a binding also carries its own `expires_at_ms`. Expired
//! bindings are never listed; the next lookup (a call to the identity, a listing) or
//! registration of the identity removes them and adds their `expired` event to the feed. An
//! identity nobody looks up within the grace after its last binding expired loses its keys to
//! Redis without a feed event. Every script touches one slot, so the layout works on Redis
//! Cluster; a registration is therefore a short sequence of scripts:
//!
//! 1. claim the device key for the identity (keeping its binding id when it already owned it);
//! 2. upsert the binding on the identity's keys, dropping expired entries and evicting the least
//!    recently updated past `bindings.max_per_identity`;
//! 3. when the token moved from another identity, remove it there (only while that binding still
//!    holds this token);
//! 4. release the device keys of evicted bindings (only while they still name that binding).
//!
//! What a crash between steps leaves behind, and why it is harmless:
//! - after 1: the device key names a binding the identity's hash lacks. Nothing pushes to it;
//!   the app's next registration keeps that binding id and step 2 creates it.
//! - after 2 (token moved): the old identity still holds the token. [`RedisBindingStore::list`]
//!   checks each binding against its device key and skips (and removes) the ones whose device key
//!   names someone else, so the old owner's calls never reach the new owner's phone.
//! - after 3 (eviction): the evicted binding's device key outlives it. It expires with its TTL,
//!   and the next registration of that token by anyone simply overwrites or reuses it.
//!
//! Deletes (prune, delete, unregister) remove the binding first and release its device key
//! second; a crash between leaves a device key naming a binding that no longer exists, the case
//! of "after 3" above.

use std::sync::Arc;

use crate::redis_conn::RedisConn;
use redis::Script;

use super::feed::{self, FeedEvent};
use super::{Binding, BindingStore, Device, NewBinding, Registered};
use crate::backend::BackendError;
use crate::domain::ApnsEnvironment;
use crate::redis_conn::Keys;

mod feeding;
mod lookup;
pub mod outbox;
mod register;
mod removal;
mod undecodable;
pub use undecodable::Undecodable;

const DAY_MS: u64 = 86_400_000;

/// How long an identity's keys outlive the TTL of its newest binding, so a lookup in that time
/// still finds the expired bindings and reports them on the feed.
pub const EXPIRY_GRACE_MS: u64 = 30 * DAY_MS;

/// Feed events a script added to an outbox (on a cluster), for the store to forward.
type Returned = outbox::Added;

/// The store's scripts, loaded once per server (EVALSHA, with a load on NOSCRIPT).
struct Scripts {
    claim_device: Script,
    upsert: Script,
    remove_if_token: Script,
    remove: Script,
    release_device: Script,
    learn_environment: Script,
    expire: Script,
    lease: Script,
}

/// A script that changes bindings, with the feed prelude (`feed.lua`) in front.
fn feeding(body: &str) -> Script {
    Script::new(&format!("{}\n{body}", include_str!("feed.lua")))
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            claim_device: Script::new(include_str!("claim_device.lua")),
            upsert: feeding(include_str!("upsert.lua")),
            remove_if_token: feeding(include_str!("remove_if_token.lua")),
            remove: feeding(include_str!("remove.lua")),
            expire: feeding(include_str!("expire.lua")),
            lease: Script::new(include_str!("lease.lua")),
            release_device: Script::new(include_str!("release_device.lua")),
            learn_environment: Script::new(include_str!("learn_environment.lua")),
        }
    }
}

/// Bindings in Redis (see the module docs for the keys).
pub struct RedisBindingStore {
    conn: RedisConn,
    keys: Keys,
    ttl_ms: u64,
    max_per_identity: usize,
    scripts: Scripts,
    undecodable: Undecodable,
    /// `<p>binding-events`.
    feed_key: String,
    /// The outboxes the scripts add the feed events to on a cluster (`None`: the scripts add
    /// them to the feed itself).
    outbox: Option<outbox::Outbox>,
    /// Whether the events of an outbox are forwarded right after their script (false only in
    /// tests that play a crash right after the script).
    forward: bool,
}

impl RedisBindingStore {
    /// A store on `conn` with the given key names, `bindings.ttl_days` and
    /// `bindings.max_per_identity`.
    pub fn new(
        conn: impl Into<RedisConn>,
        keys: Keys,
        ttl_days: u32,
        max_per_identity: usize,
    ) -> RedisBindingStore {
        let conn = conn.into();
        let feed_key = keys.named("binding-events");
        RedisBindingStore {
            outbox: matches!(conn, RedisConn::Cluster(_)).then(|| outbox::Outbox::new(&feed_key)),
            forward: true,
            feed_key,
            conn,
            keys,
            ttl_ms: u64::from(ttl_days) * DAY_MS,
            max_per_identity: max_per_identity.max(1),
            scripts: Scripts::new(),
            undecodable: Undecodable::default(),
        }
    }

    /// The key names this store uses.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    fn identity_keys(&self, identity: &str) -> Vec<String> {
        vec![
            self.keys.identity_bindings(identity),
            self.keys.identity_updated(identity),
        ]
    }
}

/// The device key's value: `<identity>\n<binding_id>` (identities hold no control characters).
fn owner_value(identity: &str, binding_id: &str) -> String {
    format!("{identity}\n{binding_id}")
}

/// Whether a device key's value (`owner`) names `identity`'s binding `binding_id`
/// ([`owner_value`]).
fn owner_is(owner: &str, identity: &str, binding_id: &str) -> bool {
    owner.split_once('\n') == Some((identity, binding_id))
}

fn decode(json: &[u8]) -> Result<Binding, BackendError> {
    serde_json::from_slice(json).map_err(|e| BackendError::Corrupt(e.to_string()))
}

#[async_trait::async_trait]
impl BindingStore for RedisBindingStore {
    async fn register(&self, new: NewBinding, now_ms: u64) -> Result<Registered, BackendError> {
        self.register_steps(new, now_ms).await
    }

    async fn list(&self, identity: &str) -> Result<Vec<Binding>, BackendError> {
        self.list_many(&[identity])
            .await
            .pop()
            .unwrap_or(Ok(Vec::new()))
    }

    fn undecodable_skipped(&self) -> u64 {
        self.undecodable.count()
    }

    async fn list_many(&self, identities: &[&str]) -> Vec<Result<Vec<Binding>, BackendError>> {
        let identities: Vec<Arc<str>> = identities.iter().map(|i| Arc::from(*i)).collect();
        let lists = self.lookup_many(&identities).await;
        lists
            .into_iter()
            .map(|listed| Ok(listed?.iter().map(Device::to_binding).collect()))
            .collect()
    }

    async fn list_devices(
        &self,
        identities: &[Arc<str>],
    ) -> Vec<Result<Vec<Device>, BackendError>> {
        self.lookup_many(identities).await
    }

    async fn delete(&self, identity: &str, binding_id: &str) -> Result<bool, BackendError> {
        self.remove_live(identity, ["id", binding_id, ""], "admin")
            .await
    }

    async fn unregister(
        &self,
        identity: &str,
        credential: &str,
        device_token: &str,
    ) -> Result<bool, BackendError> {
        self.remove_live(identity, ["token", credential, device_token], "app")
            .await
    }

    async fn learn_environment(
        &self,
        identity: &str,
        credential: &str,
        device_token: &str,
        environment: ApnsEnvironment,
    ) -> Result<bool, BackendError> {
        let learned: i64 = self
            .scripts
            .learn_environment
            .key(self.identity_keys(identity))
            .arg(credential)
            .arg(device_token)
            .arg(environment.as_str())
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(learned == 1)
    }

    async fn prune(
        &self,
        binding: &Binding,
        judged_at_ms: u64,
        reason: &str,
    ) -> Result<bool, BackendError> {
        let removed = self
            .remove_if_token(
                &binding.identity,
                &binding.binding_id,
                (&binding.credential, &binding.device_token),
                Some(judged_at_ms),
                ("pruned", reason, ""),
            )
            .await?;
        if removed {
            self.release_devices(std::slice::from_ref(binding)).await?;
        }
        Ok(removed)
    }

    async fn erase(&self, identity: &str) -> Result<Vec<Binding>, BackendError> {
        self.remove_where(identity, ["all", "", ""], "erased").await
    }

    async fn feed(
        &self,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<FeedEvent>, BackendError> {
        feed::read(&mut self.conn.clone(), &self.feed_key, after, count).await
    }

    async fn sweep_feed(&self, older_than: std::time::Duration) -> Result<usize, BackendError> {
        self.sweep_outboxes(older_than).await
    }

    async fn feed_cursor(&self) -> Result<Option<String>, BackendError> {
        let cursor: Option<String> = redis::cmd("GET")
            .arg(format!("{}:webhook", self.feed_key))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(cursor)
    }

    async fn set_feed_cursor(&self, id: &str) -> Result<(), BackendError> {
        redis::cmd("SET")
            .arg(format!("{}:webhook", self.feed_key))
            .arg(id)
            .query_async::<()>(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    async fn feed_lease(&self, holder: &str, ttl_ms: u64) -> Result<bool, BackendError> {
        let held: i64 = self
            .scripts
            .lease
            .key(format!("{}:lease", self.feed_key))
            .arg(holder)
            .arg(ttl_ms)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(held == 1)
    }
}
