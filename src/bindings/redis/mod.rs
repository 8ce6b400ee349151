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

use crate::redis_conn::RedisConn;
use redis::Script;
use tracing::warn;

use super::feed::{self, FeedEvent};
use super::{Binding, BindingStore, NewBinding, Registered};
use crate::backend::BackendError;
use crate::domain::{ApnsEnvironment, Target};
use crate::redis_conn::{query_each, Answers, Keys};

mod feeding;
pub mod outbox;
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

/// The stored JSON of a binding minus `created_at_ms`, which the upsert script prepends (it keeps
/// the stored one on a refresh) so Lua never re-encodes a number.
#[derive(serde::Serialize)]
struct StoredTail<'a> {
    binding_id: &'a str,
    identity: &'a str,
    platform: crate::domain::Platform,
    credential: &'a str,
    device_token: &'a str,
    #[serde(skip_serializing_if = "Target::is_token")]
    target: Target,
    #[serde(skip_serializing_if = "Option::is_none")]
    environment: Option<ApnsEnvironment>,
    updated_at_ms: u64,
    expires_at_ms: u64,
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

    /// The unexpired bindings of `identity`'s hash, most recently updated first, and the ids
    /// of the expired ones; a binding that does not decode is skipped and noted
    /// ([`Undecodable`]).
    fn live_bindings(
        &self,
        identity: &str,
        hash: &[(String, String)],
        now_ms: u64,
    ) -> (Vec<Binding>, Vec<String>) {
        let mut live = Vec::with_capacity(hash.len());
        let mut expired = Vec::new();
        for (binding_id, json) in hash {
            match decode(json) {
                Ok(b) if b.expires_at_ms > now_ms => live.push(b),
                Ok(_) => expired.push(binding_id.clone()),
                Err(e) => self.undecodable.note(identity, binding_id, &e),
            }
        }
        live.sort_by(newest_first);
        (live, expired)
    }

    /// Remove the expired bindings a lookup found, each with its `expired` event; best effort
    /// (the next lookup tries again).
    async fn expire(&self, identity: &str, expired: &[String]) {
        let now = crate::domain::now_ms();
        for binding_id in expired {
            let mut invocation = self.scripts.expire.prepare_invoke();
            invocation
                .key(self.identity_keys(identity))
                .arg(binding_id)
                .arg(now);
            let feed = self.feed_tail(&mut invocation, identity, now);
            let done = async {
                let (_, events): (i64, Returned) =
                    invocation.invoke_async(&mut self.conn.clone()).await?;
                self.publish(&feed, events).await;
                Ok::<_, BackendError>(())
            };
            if let Err(e) = done.await {
                warn!(error = %e, binding_id = %binding_id, "could not remove an expired binding");
            }
        }
    }

    fn identity_keys(&self, identity: &str) -> Vec<String> {
        vec![
            self.keys.identity_bindings(identity),
            self.keys.identity_updated(identity),
        ]
    }

    /// Step 3, prune, and clean-up: remove a binding by id while it holds the token, with its
    /// feed event: `moved` (to the identity `to`) or `pruned` (for `reason`).
    async fn remove_if_token(
        &self,
        identity: &str,
        binding_id: &str,
        device: (&str, &str),
        judged_at_ms: Option<u64>,
        event: (&str, &str, &str),
    ) -> Result<bool, BackendError> {
        let (credential, device_token) = device;
        let (event, reason, to) = event;
        let mut invocation = self.scripts.remove_if_token.prepare_invoke();
        invocation
            .key(self.identity_keys(identity))
            .arg(binding_id)
            .arg(credential)
            .arg(device_token)
            .arg(judged_at_ms.map(|t| t.to_string()).unwrap_or_default())
            .arg(event)
            .arg(reason)
            .arg(to);
        let feed = self.feed_tail(&mut invocation, identity, crate::domain::now_ms());
        let (removed, events): (i64, Returned) =
            invocation.invoke_async(&mut self.conn.clone()).await?;
        self.publish(&feed, events).await;
        Ok(removed == 1)
    }

    /// Release the device keys of bindings that are gone. One script call per key, sent
    /// together (the multiplexed connection pipelines them): device keys of different tokens
    /// live in different slots of a cluster, so they cannot share one pipeline.
    async fn release_devices(&self, gone: &[Binding]) -> Result<(), BackendError> {
        let calls = gone.iter().map(|b| {
            let mut invocation = self.scripts.release_device.prepare_invoke();
            invocation
                .key(self.keys.device(&b.credential, &b.device_token))
                .arg(owner_value(&b.identity, &b.binding_id));
            let mut conn = self.conn.clone();
            async move { invocation.invoke_async::<i64>(&mut conn).await }
        });
        futures::future::try_join_all(calls).await?;
        Ok(())
    }

    /// Remove by id, by token or all (`remove.lua`), each with an `unregistered` event for
    /// `reason`, then release the device keys; the bindings removed (undecodable ones have no
    /// device key to release and are left out).
    async fn remove_where(
        &self,
        identity: &str,
        by: [&str; 3],
        reason: &str,
    ) -> Result<Vec<Binding>, BackendError> {
        let now = crate::domain::now_ms();
        let mut invocation = self.scripts.remove.prepare_invoke();
        invocation
            .key(self.identity_keys(identity))
            .arg(&by[..])
            .arg(reason);
        let feed = self.feed_tail(&mut invocation, identity, now);
        let (removed, events): (Vec<String>, Returned) =
            invocation.invoke_async(&mut self.conn.clone()).await?;
        self.publish(&feed, events).await;
        let removed: Vec<Binding> = removed
            .iter()
            .filter_map(|json| decode(json).ok())
            .collect();
        self.release_devices(&removed).await?;
        Ok(removed)
    }

    /// [`Self::remove_where`], true when a live binding went.
    async fn remove_live(
        &self,
        identity: &str,
        by: [&str; 3],
        reason: &str,
    ) -> Result<bool, BackendError> {
        let now = crate::domain::now_ms();
        let removed = self.remove_where(identity, by, reason).await?;
        Ok(removed.iter().any(|b| b.expires_at_ms > now))
    }
}

/// What the upsert script kept of the stored binding's environment: `""` (none),
/// `"sandbox"`, or `"sandbox learned"`.
fn kept_environment(kept: &str) -> (Option<ApnsEnvironment>, bool) {
    let (name, learned) = match kept.split_once(' ') {
        Some((name, how)) => (name, how == "learned"),
        None => (kept, false),
    };
    match name.parse() {
        Ok(environment) => (Some(environment), learned),
        Err(_) => (None, false),
    }
}

/// The device key's value: `<identity>\n<binding_id>` (identities hold no control characters).
fn owner_value(identity: &str, binding_id: &str) -> String {
    format!("{identity}\n{binding_id}")
}

/// The order bindings are listed in: most recently updated first, ties by binding id.
fn newest_first(a: &Binding, b: &Binding) -> std::cmp::Ordering {
    b.updated_at_ms
        .cmp(&a.updated_at_ms)
        .then_with(|| a.binding_id.cmp(&b.binding_id))
}

fn decode(json: &str) -> Result<Binding, BackendError> {
    serde_json::from_str(json).map_err(|e| BackendError::Corrupt(e.to_string()))
}

#[async_trait::async_trait]
impl BindingStore for RedisBindingStore {
    async fn register(&self, new: NewBinding, now_ms: u64) -> Result<Registered, BackendError> {
        let mut conn = self.conn.clone();
        let device_key = self.keys.device(&new.credential, &new.device_token);

        // Step 1: the device key says who owns the token from now on.
        let (binding_id, prev_owner, prev_binding): (String, String, String) = self
            .scripts
            .claim_device
            .key(&device_key)
            .arg(&new.identity)
            .arg(super::new_binding_id())
            .arg(self.ttl_ms)
            .invoke_async(&mut conn)
            .await?;

        // Step 2: upsert on the identity's keys.
        let expires_at_ms = now_ms + self.ttl_ms;
        let tail = serde_json::to_string(&StoredTail {
            binding_id: &binding_id,
            identity: &new.identity,
            platform: new.platform,
            credential: &new.credential,
            device_token: &new.device_token,
            target: new.target,
            environment: new.environment,
            updated_at_ms: now_ms,
            expires_at_ms,
        })
        .map_err(|e| BackendError::Corrupt(e.to_string()))?;
        // A refresh that names no environment keeps the one stored (registered or learned).
        let keep_environment = if new.environment.is_none() { "1" } else { "" };
        let mut upsert = self.scripts.upsert.prepare_invoke();
        upsert
            .key(self.identity_keys(&new.identity))
            .arg(&binding_id)
            .arg(&new.credential)
            .arg(&new.device_token)
            .arg(now_ms)
            .arg(self.ttl_ms + EXPIRY_GRACE_MS)
            .arg(self.max_per_identity)
            .arg(format!(",{}", &tail[1..]))
            .arg(keep_environment);
        let feed = self.feed_tail(&mut upsert, &new.identity, now_ms);
        let (created, created_at, evicted, kept, events): (
            i64,
            String,
            Vec<String>,
            String,
            Returned,
        ) = upsert.invoke_async(&mut conn).await?;
        self.publish(&feed, events).await;
        let (environment, environment_learned) = match new.environment {
            Some(registered) => (Some(registered), false),
            None => kept_environment(&kept),
        };
        // An evicted binding that does not decode has no device key this store could name.
        let evicted = evicted
            .iter()
            .filter_map(|json| decode(json).ok())
            .collect::<Vec<_>>();

        // Step 3: the token left its previous owner.
        let moved_from =
            (!prev_owner.is_empty() && prev_owner != new.identity).then_some(prev_owner);
        if let Some(old) = &moved_from {
            self.remove_if_token(
                old,
                &prev_binding,
                (&new.credential, &new.device_token),
                None,
                ("moved", "", &new.identity),
            )
            .await?;
        }

        // Step 4: evicted bindings give up their device keys.
        self.release_devices(&evicted).await?;

        let binding = Binding {
            binding_id,
            identity: new.identity,
            platform: new.platform,
            credential: new.credential,
            device_token: new.device_token,
            target: new.target,
            environment,
            environment_learned,
            created_at_ms: created_at
                .parse()
                .map_err(|_| BackendError::Corrupt(format!("created_at_ms {created_at:?}")))?,
            updated_at_ms: now_ms,
            expires_at_ms,
        };
        Ok(Registered {
            binding,
            created: created == 1,
            moved_from,
            evicted,
        })
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

    /// Two round trips for the whole lot: every identity's `HGETALL`, then every live binding's
    /// device key. Each identity's answer is its own: a hash that cannot be read (`WRONGTYPE`)
    /// or a device key whose node does not answer fails that identity alone, and a binding
    /// that does not decode is skipped ([`Undecodable`]) while the identity's others are listed.
    async fn list_many(&self, identities: &[&str]) -> Vec<Result<Vec<Binding>, BackendError>> {
        let hashes = identities
            .iter()
            .map(|identity| {
                let mut cmd = redis::cmd("HGETALL");
                cmd.arg(self.keys.identity_bindings(identity));
                cmd
            })
            .collect();
        let stored: Answers<Vec<(String, String)>> = query_each(&self.conn, hashes).await;
        let now = crate::domain::now_ms();
        let mut expired = Vec::new();
        let mut lives: Vec<Result<Vec<Binding>, BackendError>> = identities
            .iter()
            .zip(stored)
            .map(|(identity, hash)| {
                let (live, gone) = self.live_bindings(identity, &hash?, now);
                if !gone.is_empty() {
                    expired.push((*identity, gone));
                }
                Ok(live)
            })
            .collect();
        for (identity, gone) in expired {
            self.expire(identity, &gone).await;
        }

        // The device keys are the authority on ownership: skip bindings whose token moved on
        // (left behind by an interrupted registration, see the module docs).
        let gets = lives
            .iter()
            .flatten()
            .flatten()
            .map(|b| {
                let mut cmd = redis::cmd("GET");
                cmd.arg(self.keys.device(&b.credential, &b.device_token));
                cmd
            })
            .collect();
        let mut owners = query_each::<Option<String>>(&self.conn, gets)
            .await
            .into_iter();
        for (identity, live) in identities.iter().zip(&mut lives) {
            let Ok(bindings) = live else {
                continue;
            };
            let mut kept = Vec::with_capacity(bindings.len());
            let mut failed = None;
            for b in std::mem::take(bindings) {
                let owner = match owners.next() {
                    Some(Ok(owner)) => owner,
                    Some(Err(e)) => {
                        failed = Some(e);
                        continue;
                    }
                    None => None,
                };
                let owner = owner.unwrap_or_default();
                if owner.is_empty() || owner == owner_value(&b.identity, &b.binding_id) {
                    kept.push(b);
                } else if let Err(e) = self
                    .remove_if_token(
                        identity,
                        &b.binding_id,
                        (&b.credential, &b.device_token),
                        None,
                        ("moved", "", owner.split('\n').next().unwrap_or_default()),
                    )
                    .await
                {
                    warn!(error = %e, binding_id = %b.binding_id, "could not remove a binding whose token moved on");
                }
            }
            *live = match failed {
                Some(e) => Err(e.into()),
                None => Ok(kept),
            };
        }
        lives
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
