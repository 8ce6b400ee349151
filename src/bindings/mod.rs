//! Bindings: identity → device (SPEC §4). The trait is what the dispatcher, the API and the CLI
//! use; `redis` is the production store (its module header documents the keys).

pub mod redis;

use crate::backend::BackendError;
use crate::domain::{mask_device_token, Platform};

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
    /// still holds `device_token` and was not updated after `judged_at_ms`. True when removed.
    async fn prune(&self, binding: &Binding, judged_at_ms: u64) -> Result<bool, BackendError>;
}

/// The binding id for a fresh binding: `BS` and 32 random hex digits.
pub fn new_binding_id() -> String {
    let bytes: [u8; 16] = rand::random();
    format!("BS{}", hex::encode(bytes))
}

/// Check a device token against SPEC §3 and normalise it: APNs tokens are 64 to 200 hex digits,
/// an even number of them (stored lower-case); FCM tokens are 1 to 4096 characters of `[A-Za-z0-9_:.-]`.
pub fn normalize_device_token(platform: Platform, token: &str) -> Result<String, String> {
    match platform {
        Platform::Apns => {
            if !(64..=200).contains(&token.len()) {
                return Err(format!(
                    "an APNs device token is 64 to 200 hex digits; this one has {} characters",
                    token.len()
                ));
            }
            if !token.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err("an APNs device token has only hex digits (0-9, a-f)".into());
            }
            // Two hex digits per byte: an odd count is no token APNs ever handed out.
            if token.len() % 2 != 0 {
                return Err(format!(
                    "an APNs device token has an even number of hex digits; this one has {}",
                    token.len()
                ));
            }
            Ok(token.to_ascii_lowercase())
        }
        Platform::Fcm => {
            if token.is_empty() || token.len() > 4096 {
                return Err(format!(
                    "an FCM registration token is 1 to 4096 characters; this one has {}",
                    token.len()
                ));
            }
            if !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'.' | b'-'))
            {
                return Err(
                    "an FCM registration token has only letters, digits and `_ : . -`".into(),
                );
            }
            Ok(token.to_string())
        }
    }
}

impl Binding {
    /// The binding as the API and the CLI show it (SPEC §4): RFC 3339 times, device token masked.
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "binding_id": self.binding_id,
            "identity": self.identity,
            "platform": self.platform,
            "credential": self.credential,
            "device_token": mask_device_token(&self.device_token),
            "created_at": crate::domain::rfc3339_ms(self.created_at_ms),
            "updated_at": crate::domain::rfc3339_ms(self.updated_at_ms),
            "expires_at": crate::domain::rfc3339_ms(self.expires_at_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apns_tokens_are_hex_and_lower_cased() {
        let upper = "AB".repeat(32);
        assert_eq!(
            normalize_device_token(Platform::Apns, &upper).unwrap(),
            "ab".repeat(32)
        );
        assert!(normalize_device_token(Platform::Apns, &"a".repeat(63)).is_err());
        assert!(normalize_device_token(Platform::Apns, &"a".repeat(65)).is_err());
        assert!(normalize_device_token(Platform::Apns, &"a".repeat(201)).is_err());
        assert!(normalize_device_token(Platform::Apns, &"g".repeat(64)).is_err());
    }

    #[test]
    fn fcm_tokens_have_a_restricted_alphabet() {
        assert!(normalize_device_token(Platform::Fcm, "abc:DEF_1.2-3").is_ok());
        assert!(normalize_device_token(Platform::Fcm, "").is_err());
        assert!(normalize_device_token(Platform::Fcm, "a b").is_err());
        assert!(normalize_device_token(Platform::Fcm, &"a".repeat(4097)).is_err());
    }

    #[test]
    fn view_masks_the_token() {
        let b = Binding {
            binding_id: new_binding_id(),
            identity: "alice".into(),
            platform: Platform::Fcm,
            credential: "CR1".into(),
            device_token: "0123456789abcdef".into(),
            created_at_ms: 0,
            updated_at_ms: 1_000,
            expires_at_ms: 2_000,
        };
        let v = b.view();
        assert_eq!(v["device_token"], "01234567…");
        assert_eq!(v["updated_at"], "1970-01-01T00:00:01.000Z");
        assert!(v["binding_id"].as_str().unwrap().starts_with("BS"));
    }
}
