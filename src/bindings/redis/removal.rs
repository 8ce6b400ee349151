//! How bindings leave the Redis store: expired ones a lookup found, one removed while it still
//! holds its token (a moved token, a prune), removal by id, by token or all, and the release
//! of the device keys of bindings that are gone — each change with its feed event.

use tracing::warn;

use super::{decode, owner_value, RedisBindingStore, Returned};
use crate::backend::BackendError;
use crate::bindings::Binding;

impl RedisBindingStore {
    /// Remove the expired bindings a lookup found, each with its `expired` event; best effort
    /// (the next lookup tries again).
    pub(super) async fn expire(&self, identity: &str, expired: &[String]) {
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

    /// Step 3, prune, and clean-up: remove a binding by id while it holds the token, with its
    /// feed event: `moved` (to the identity `to`) or `pruned` (for `reason`).
    pub(super) async fn remove_if_token(
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
    pub(super) async fn release_devices(&self, gone: &[Binding]) -> Result<(), BackendError> {
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
    pub(super) async fn remove_where(
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
            .filter_map(|json| decode(json.as_bytes()).ok())
            .collect();
        self.release_devices(&removed).await?;
        Ok(removed)
    }

    /// [`Self::remove_where`], true when a live binding went.
    pub(super) async fn remove_live(
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
