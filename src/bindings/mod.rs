//! Bindings: identity → device (SPEC §4). The trait is what the dispatcher, the API and the CLI
//! use; `redis` is the production store (its module header documents the keys).

mod device;
pub mod feed;
pub mod redis;
mod token;
pub mod webhook;

pub use device::{Credentials, Device};
pub use token::{normalize_device_token, normalize_fid, FID_LEN};

use std::sync::Arc;

use crate::backend::BackendError;
use crate::domain::{mask_device_token, ApnsEnvironment, Platform, Target};

/// One device registered for one identity under one push credential.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Binding {
    /// Stable id of the binding (`BS` + 32 hex digits).
    pub binding_id: String,
    /// Who the device belongs to.
    pub identity: String,
    /// `apns` or `fcm`.
    pub platform: Platform,
    /// The push credential (app) the device token belongs to.
    pub credential: String,
    /// The device's address: the device token (APNs tokens lower-case), or the FCM
    /// registration token or Firebase Installation ID (see `target`).
    pub device_token: String,
    /// FCM: whether `device_token` is a registration token or an FID (stored only for FIDs).
    #[serde(default, skip_serializing_if = "Target::is_token")]
    pub target: Target,
    /// APNs: the environment the device's token belongs to, as registered or learned from
    /// Apple's answers; `None` until known (pushed to the credential's then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<ApnsEnvironment>,
    /// Whether `environment` was learned from Apple's answers rather than registered.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub environment_learned: bool,
    /// When the binding was first created, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// When the binding was last registered or refreshed, ms since the Unix epoch.
    pub updated_at_ms: u64,
    /// When the binding lapses unless refreshed, ms since the Unix epoch.
    pub expires_at_ms: u64,
}

/// What a registration asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBinding {
    /// Who the device belongs to.
    pub identity: String,
    /// `apns` or `fcm`.
    pub platform: Platform,
    /// The push credential SID.
    pub credential: String,
    /// The device token or FID, already validated and normalised.
    pub device_token: String,
    /// FCM: a registration token or an FID.
    pub target: Target,
    /// APNs: the environment the app registered (a debug build: `sandbox`); `None` keeps the
    /// one already stored for the device, if any.
    pub environment: Option<ApnsEnvironment>,
}

impl NewBinding {
    /// The binding this registration stores: its id, its environment (registered, or kept from
    /// the stored binding: `(environment, learned)`) and its times.
    pub(crate) fn into_binding(
        self,
        binding_id: String,
        (environment, environment_learned): (Option<ApnsEnvironment>, bool),
        created_at_ms: u64,
        updated_at_ms: u64,
        expires_at_ms: u64,
    ) -> Binding {
        Binding {
            binding_id,
            identity: self.identity,
            platform: self.platform,
            credential: self.credential,
            device_token: self.device_token,
            target: self.target,
            environment,
            environment_learned,
            created_at_ms,
            updated_at_ms,
            expires_at_ms,
        }
    }
}

/// What a registration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// The binding as stored now.
    pub binding: Binding,
    /// True when the binding is new (HTTP 201), false when it was refreshed (200).
    pub created: bool,
    /// The identity the device token was taken from, when it moved (phones change hands).
    pub moved_from: Option<String>,
    /// Bindings evicted because the identity was over `bindings.max_per_identity`.
    pub evicted: Vec<Binding>,
}

/// Where bindings live.
#[async_trait::async_trait]
pub trait BindingStore: Send + Sync + 'static {
    /// Create or refresh the binding of (credential, device token) for the identity, taking the
    /// token away from any other identity and evicting the least recently updated bindings past
    /// the cap. `now_ms` is the registration time.
    async fn register(&self, new: NewBinding, now_ms: u64) -> Result<Registered, BackendError>;

    /// The live (unexpired) bindings of an identity, most recently updated first.
    async fn list(&self, identity: &str) -> Result<Vec<Binding>, BackendError>;

    /// [`BindingStore::list`] for many identities at once (they may repeat): one answer per
    /// identity, in order, each its own (an identity whose bindings cannot be read fails
    /// alone). The default lists one after the other.
    async fn list_many(&self, identities: &[&str]) -> Vec<Result<Vec<Binding>, BackendError>> {
        let mut answers = Vec::with_capacity(identities.len());
        for identity in identities {
            answers.push(self.list(identity).await);
        }
        answers
    }

    /// [`BindingStore::list_many`] as the event path reads it, for every event: [`Device`]s,
    /// whose strings are shared rather than copied. The default converts what `list_many`
    /// lists.
    async fn list_devices(
        &self,
        identities: &[Arc<str>],
    ) -> Vec<Result<Vec<Device>, BackendError>> {
        let names: Vec<&str> = identities.iter().map(|i| &**i).collect();
        let mut credentials = Credentials::default();
        let lists = self.list_many(&names).await;
        lists
            .into_iter()
            .zip(identities)
            .map(|(listed, identity)| {
                let bindings = listed?;
                let devices = bindings
                    .iter()
                    .map(|b| Device::of(b, identity, &mut credentials));
                Ok(devices.collect())
            })
            .collect()
    }

    /// Stored bindings skipped since start because they did not decode (written by another
    /// version, or by hand): `callpush_bindings_undecodable_total`.
    fn undecodable_skipped(&self) -> u64 {
        0
    }

    /// Remove one binding of an identity by id. True when it existed.
    async fn delete(&self, identity: &str, binding_id: &str) -> Result<bool, BackendError>;

    /// Remove the binding of (credential, device token) if it belongs to `identity` (the
    /// unregister call of an app). True when it existed.
    async fn unregister(
        &self,
        identity: &str,
        credential: &str,
        device_token: &str,
    ) -> Result<bool, BackendError>;

    /// Race-safe pruning after a provider said the token is dead: remove the binding only if it
    /// still holds `device_token` and was not updated after `judged_at_ms`. True when removed;
    /// `reason` (the provider's) goes on the binding feed.
    async fn prune(
        &self,
        binding: &Binding,
        judged_at_ms: u64,
        reason: &str,
    ) -> Result<bool, BackendError>;

    /// Remove every binding of an identity at once (an account's erasure), one feed event
    /// each. The bindings removed.
    async fn erase(&self, identity: &str) -> Result<Vec<Binding>, BackendError>;

    /// Up to `count` events of the binding feed after the id `after` (`None`: the oldest kept),
    /// oldest first (SPEC §11).
    async fn feed(
        &self,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<feed::FeedEvent>, BackendError>;

    /// The feed webhook's place: the id of the last event it delivered (`None`: none yet).
    async fn feed_cursor(&self) -> Result<Option<String>, BackendError> {
        Ok(None)
    }

    /// Move the feed webhook's place to `id` (delivered).
    async fn set_feed_cursor(&self, _id: &str) -> Result<(), BackendError> {
        Ok(())
    }

    /// Take or keep the lease on delivering the feed webhook for `ttl_ms` from now, so of
    /// several daemons one delivers (in order); true when `holder` holds it. `ttl_ms` 0 gives
    /// it up (a daemon stopping), so another need not wait for it to lapse.
    async fn feed_lease(&self, _holder: &str, _ttl_ms: u64) -> Result<bool, BackendError> {
        Ok(true)
    }

    /// Forward to the feed what a crash left in the feed's outboxes (a Redis Cluster only,
    /// see `redis::outbox`): entries older than `older_than`, when this daemon holds the sweep
    /// lease. How many were forwarded.
    async fn sweep_feed(&self, _older_than: std::time::Duration) -> Result<usize, BackendError> {
        Ok(0)
    }

    /// APNs accepted a push to (credential, device token) of `identity` in `environment`: store
    /// it as learned on the binding, unless the binding already names one (registered, or
    /// learned before). True when stored.
    async fn learn_environment(
        &self,
        identity: &str,
        credential: &str,
        device_token: &str,
        environment: ApnsEnvironment,
    ) -> Result<bool, BackendError>;
}

/// The binding id for a fresh binding: `BS` and 32 random hex digits.
pub fn new_binding_id() -> String {
    let bytes: [u8; 16] = rand::random();
    format!("BS{}", hex::encode(bytes))
}

impl Binding {
    /// The binding as the API and the CLI show it (SPEC §4): RFC 3339 times, device token masked,
    /// for FCM its `target` (`token` or `fid`), and for APNs its `environment` — registered,
    /// else learned, else `default_environment` (the credential's) — and where that came from
    /// (`environment_source`: `registered`, `learned` or `credential`).
    pub fn view(&self, default_environment: Option<ApnsEnvironment>) -> serde_json::Value {
        let mut view = serde_json::json!({
            "binding_id": self.binding_id,
            "identity": self.identity,
            "platform": self.platform,
            "credential": self.credential,
            "device_token": mask_device_token(&self.device_token),
            "created_at": crate::domain::rfc3339_ms(self.created_at_ms),
            "updated_at": crate::domain::rfc3339_ms(self.updated_at_ms),
            "expires_at": crate::domain::rfc3339_ms(self.expires_at_ms),
        });
        match self.platform {
            Platform::Fcm => view["target"] = self.target.as_str().into(),
            Platform::Apns => {
                let (environment, source) = match (self.environment, default_environment) {
                    (Some(e), _) if self.environment_learned => (Some(e), "learned"),
                    (Some(e), _) => (Some(e), "registered"),
                    (None, default) => (default, "credential"),
                };
                if let Some(environment) = environment {
                    view["environment"] = environment.as_str().into();
                    view["environment_source"] = source.into();
                }
            }
        }
        view
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(platform: Platform) -> Binding {
        Binding {
            binding_id: new_binding_id(),
            identity: "alice".into(),
            platform,
            credential: "CR1".into(),
            device_token: "0123456789abcdef".into(),
            target: Target::Token,
            environment: None,
            environment_learned: false,
            created_at_ms: 0,
            updated_at_ms: 1_000,
            expires_at_ms: 2_000,
        }
    }

    #[test]
    fn view_masks_the_token() {
        let v = binding(Platform::Fcm).view(None);
        assert_eq!(v["device_token"], "01234567…");
        assert_eq!(v["updated_at"], "1970-01-01T00:00:01.000Z");
        assert!(v["binding_id"].as_str().unwrap().starts_with("BS"));
        assert_eq!(v["target"], "token");
        assert!(v.get("environment").is_none());
    }

    #[test]
    fn view_shows_the_environment_and_where_it_came_from() {
        let mut b = binding(Platform::Apns);
        let v = b.view(Some(ApnsEnvironment::Production));
        assert_eq!(v["environment"], "production");
        assert_eq!(v["environment_source"], "credential");
        assert!(v.get("target").is_none());
        b.environment = Some(ApnsEnvironment::Sandbox);
        let v = b.view(Some(ApnsEnvironment::Production));
        assert_eq!(v["environment"], "sandbox");
        assert_eq!(v["environment_source"], "registered");
        b.environment_learned = true;
        assert_eq!(b.view(None)["environment_source"], "learned");
    }

    #[test]
    fn stored_bindings_of_earlier_versions_still_decode() {
        let old = r#"{"binding_id":"BS1","identity":"a","platform":"fcm","credential":"CR1",
            "device_token":"t","created_at_ms":1,"updated_at_ms":2,"expires_at_ms":3}"#;
        let b: Binding = serde_json::from_str(old).unwrap();
        assert_eq!(
            (b.target, b.environment, b.environment_learned),
            (Target::Token, None, false)
        );
        let json = serde_json::to_string(&b).unwrap();
        assert!(
            !json.contains("target") && !json.contains("environment"),
            "{json}"
        );
    }
}
