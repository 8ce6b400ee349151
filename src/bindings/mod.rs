//! Bindings: identity → device (SPEC §4). The trait is what the dispatcher, the API and the CLI
//! use; `redis` is the production store (its module header documents the keys).

pub mod redis;

use crate::providers::Platform;

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
    /// The device token (APNs tokens lower-case).
    pub device_token: String,
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
    /// The device token, already validated and normalised.
    pub device_token: String,
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

/// Errors of a binding store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis failed or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// A stored binding could not be decoded.
    #[error("corrupt binding record: {0}")]
    Corrupt(String),
}

/// Where bindings live.
#[async_trait::async_trait]
pub trait BindingStore: Send + Sync + 'static {
    /// Create or refresh the binding of (credential, device token) for the identity, taking the
    /// token away from any other identity and evicting the least recently updated bindings past
    /// the cap. `now_ms` is the registration time.
    async fn register(&self, new: NewBinding, now_ms: u64) -> Result<Registered, StoreError>;

    /// The live (unexpired) bindings of an identity, most recently updated first.
    async fn list(&self, identity: &str) -> Result<Vec<Binding>, StoreError>;

    /// Remove one binding of an identity by id. True when it existed.
    async fn delete(&self, identity: &str, binding_id: &str) -> Result<bool, StoreError>;

    /// Remove the binding of (credential, device token) if it belongs to `identity` (the
    /// unregister call of an app). True when it existed.
    async fn unregister(
        &self,
        identity: &str,
        credential: &str,
        device_token: &str,
    ) -> Result<bool, StoreError>;

    /// Race-safe pruning after a provider said the token is dead: remove the binding only if it
    /// still holds `device_token` and was not updated after `judged_at_ms`. True when removed.
    async fn prune(&self, binding: &Binding, judged_at_ms: u64) -> Result<bool, StoreError>;
}

/// The binding id for a fresh binding: `BS` and 32 random hex digits.
pub fn new_binding_id() -> String {
    let bytes: [u8; 16] = rand::random();
    format!("BS{}", hex::encode(bytes))
}
