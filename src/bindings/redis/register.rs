//! A registration in the Redis store: claim the device key, upsert the binding on the
//! identity's keys, take the token from its previous owner, release what the cap evicted (the
//! steps, and what a crash between them leaves, are in the module docs of [`super`]).

use super::{decode, RedisBindingStore, Returned, EXPIRY_GRACE_MS};
use crate::backend::BackendError;
use crate::bindings::{NewBinding, Registered};
use crate::domain::{ApnsEnvironment, Target};

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

impl RedisBindingStore {
    /// [`BindingStore::register`](crate::bindings::BindingStore::register): the four steps of
    /// the module docs, each one script.
    pub(super) async fn register_steps(
        &self,
        new: NewBinding,
        now_ms: u64,
    ) -> Result<Registered, BackendError> {
        let mut conn = self.conn.clone();
        let device_key = self.keys.device(&new.credential, &new.device_token);

        // Step 1: the device key says who owns the token from now on.
        let (binding_id, prev_owner, prev_binding): (String, String, String) = self
            .scripts
            .claim_device
            .key(&device_key)
            .arg(&new.identity)
            .arg(crate::bindings::new_binding_id())
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
            .filter_map(|json| decode(json.as_bytes()).ok())
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

        let created_at_ms = created_at
            .parse()
            .map_err(|_| BackendError::Corrupt(format!("created_at_ms {created_at:?}")))?;
        let binding = new.into_binding(
            binding_id,
            (environment, environment_learned),
            created_at_ms,
            now_ms,
            expires_at_ms,
        );
        Ok(Registered {
            binding,
            created: created == 1,
            moved_from,
            evicted,
        })
    }
}
