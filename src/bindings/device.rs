//! A binding as the event path reads it, for every event: [`Device`], whose strings are shared
//! rather than copied per event — the identity with the other bindings of its list, the
//! credential with the other bindings of the batch, the device token with the pushes to it.
//! The stored JSON is read in place ([`Stored`]) and only the binding id and the device token
//! are copied out of it.

use std::borrow::Cow;
use std::sync::Arc;

use super::Binding;
use crate::domain::{ApnsEnvironment, CallContent, Platform, Push, Target};

/// One live binding of an identity, as [`BindingStore::list_devices`] lists it.
///
/// [`BindingStore::list_devices`]: super::BindingStore::list_devices
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Stable id of the binding.
    pub binding_id: Arc<str>,
    /// Who the device belongs to.
    pub identity: Arc<str>,
    /// `apns` or `fcm`.
    pub platform: Platform,
    /// The push credential the device token belongs to.
    pub credential: Arc<str>,
    /// The device's address (see [`Binding::device_token`]).
    pub device_token: Arc<str>,
    /// FCM: a registration token or an FID.
    pub target: Target,
    /// APNs: the environment of the device's token, when known.
    pub environment: Option<ApnsEnvironment>,
    /// Whether `environment` was learned from Apple's answers.
    pub environment_learned: bool,
    /// When the binding was first created, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// When the binding was last registered or refreshed, ms since the Unix epoch.
    pub updated_at_ms: u64,
    /// When the binding lapses unless refreshed, ms since the Unix epoch.
    pub expires_at_ms: u64,
}

impl Device {
    /// A push of `call` to this device: its address, its target, and its environment when it
    /// knows one. It shares the device token.
    pub fn push(&self, call: Arc<CallContent>) -> Push {
        Push {
            call,
            device_token: self.device_token.clone(),
            target: self.target,
            environment: self.environment,
        }
    }

    /// The binding this device was listed from (to prune it, which is rare: copies).
    pub fn to_binding(&self) -> Binding {
        Binding {
            binding_id: self.binding_id.to_string(),
            identity: self.identity.to_string(),
            platform: self.platform,
            credential: self.credential.to_string(),
            device_token: self.device_token.to_string(),
            target: self.target,
            environment: self.environment,
            environment_learned: self.environment_learned,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
            expires_at_ms: self.expires_at_ms,
        }
    }

    /// `binding` as a device of `identity` (shared when the binding names it).
    pub fn of(binding: &Binding, identity: &Arc<str>, credentials: &mut Credentials) -> Device {
        Stored::of(binding).into_device(identity, credentials)
    }
}

/// The credentials of a batch of bindings, each kept once and shared by the bindings that
/// name it (a daemon has a handful).
#[derive(Debug, Default)]
pub struct Credentials(Vec<Arc<str>>);

impl Credentials {
    /// `credential`, shared.
    fn share(&mut self, credential: &str) -> Arc<str> {
        if let Some(known) = self.0.iter().find(|c| ***c == *credential) {
            return known.clone();
        }
        let credential: Arc<str> = credential.into();
        self.0.push(credential.clone());
        credential
    }
}

/// A stored binding read in place: [`Binding`]'s stored form, field for field (strings with
/// escapes are unescaped into their own copies).
#[derive(Debug, serde::Deserialize)]
#[serde(rename = "Binding")]
pub(crate) struct Stored<'a> {
    #[serde(borrow)]
    binding_id: Cow<'a, str>,
    #[serde(borrow)]
    identity: Cow<'a, str>,
    platform: Platform,
    #[serde(borrow)]
    credential: Cow<'a, str>,
    #[serde(borrow)]
    device_token: Cow<'a, str>,
    #[serde(default)]
    target: Target,
    #[serde(default)]
    environment: Option<ApnsEnvironment>,
    #[serde(default)]
    environment_learned: bool,
    created_at_ms: u64,
    updated_at_ms: u64,
    pub(crate) expires_at_ms: u64,
}

impl<'a> Stored<'a> {
    fn of(binding: &'a Binding) -> Stored<'a> {
        Stored {
            binding_id: Cow::Borrowed(&binding.binding_id),
            identity: Cow::Borrowed(&binding.identity),
            platform: binding.platform,
            credential: Cow::Borrowed(&binding.credential),
            device_token: Cow::Borrowed(&binding.device_token),
            target: binding.target,
            environment: binding.environment,
            environment_learned: binding.environment_learned,
            created_at_ms: binding.created_at_ms,
            updated_at_ms: binding.updated_at_ms,
            expires_at_ms: binding.expires_at_ms,
        }
    }

    /// The device, sharing `identity` when the binding names it (it always does: it was read
    /// from that identity's hash) and the credential with the batch's other bindings.
    pub(crate) fn into_device(self, identity: &Arc<str>, credentials: &mut Credentials) -> Device {
        Device {
            binding_id: self.binding_id.into(),
            identity: if *self.identity == **identity {
                identity.clone()
            } else {
                self.identity.into()
            },
            platform: self.platform,
            credential: credentials.share(&self.credential),
            device_token: self.device_token.into(),
            target: self.target,
            environment: self.environment,
            environment_learned: self.environment_learned,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
            expires_at_ms: self.expires_at_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored_forms() -> Vec<String> {
        let fcm = Binding {
            binding_id: "BS0123456789abcdef0123456789abcdef".into(),
            identity: "alice".into(),
            platform: Platform::Fcm,
            credential: "CRfcm".into(),
            device_token: "fid-token".into(),
            target: Target::Fid,
            environment: None,
            environment_learned: false,
            created_at_ms: 1,
            updated_at_ms: 2,
            expires_at_ms: 3,
        };
        let apns = Binding {
            identity: "bob \"the\" builder\n".into(),
            platform: Platform::Apns,
            credential: "CRapns".into(),
            device_token: "0123456789abcdef".into(),
            target: Target::Token,
            environment: Some(ApnsEnvironment::Sandbox),
            environment_learned: true,
            ..fcm.clone()
        };
        vec![
            serde_json::to_string(&fcm).unwrap(),
            serde_json::to_string(&apns).unwrap(),
            // An earlier version's, without the fields added since.
            r#"{"binding_id":"BS1","identity":"a","platform":"fcm","credential":"CR1",
                "device_token":"t","created_at_ms":1,"updated_at_ms":2,"expires_at_ms":3}"#
                .into(),
            // A field this version does not know.
            r#"{"binding_id":"BS1","identity":"a","platform":"apns","credential":"CR1",
                "device_token":"t","created_at_ms":1,"updated_at_ms":2,"expires_at_ms":3,
                "later":true}"#
                .into(),
        ]
    }

    #[test]
    fn a_stored_binding_read_in_place_is_the_binding_decoded() {
        for json in stored_forms() {
            let binding: Binding = serde_json::from_str(&json).unwrap();
            let stored: Stored = serde_json::from_str(&json).unwrap();
            let identity: Arc<str> = binding.identity.as_str().into();
            let device = stored.into_device(&identity, &mut Credentials::default());
            assert_eq!(device.to_binding(), binding, "{json}");
            assert!(Arc::ptr_eq(&device.identity, &identity));
        }
    }

    #[test]
    fn what_does_not_decode_as_a_binding_does_not_read_in_place() {
        let broken = [
            r#"{"binding_id":"BS1","identity":"a","platform":"fcm"}"#,
            r#"{"binding_id":"BS1","identity":"a","platform":"web","credential":"CR1",
                "device_token":"t","created_at_ms":1,"updated_at_ms":2,"expires_at_ms":3}"#,
            "not json",
        ];
        for json in broken {
            assert!(serde_json::from_str::<Binding>(json).is_err());
            assert!(serde_json::from_str::<Stored>(json).is_err(), "{json}");
        }
    }

    #[test]
    fn devices_share_credentials_and_their_pushes_share_the_token() {
        let mut credentials = Credentials::default();
        let bindings: Vec<Binding> = stored_forms()
            .iter()
            .map(|json| serde_json::from_str(json).unwrap())
            .collect();
        let identity: Arc<str> = "a".into();
        let devices: Vec<Device> = bindings
            .iter()
            .map(|b| Device::of(b, &identity, &mut credentials))
            .collect();
        assert!(Arc::ptr_eq(&devices[2].credential, &devices[3].credential));
        assert!(!Arc::ptr_eq(&devices[0].credential, &devices[2].credential));
        let call = Arc::new(CallContent {
            kind: crate::domain::PushKind::Incoming,
            call_sid: "CA1".into(),
            caller: None,
            callee: "a".into(),
            params: None,
            deadline_ms: 0,
            twilio: Vec::new(),
        });
        let push = devices[1].push(call.clone());
        assert!(Arc::ptr_eq(&push.device_token, &devices[1].device_token));
        assert_eq!(
            (push.target, push.environment, &*push.device_token),
            (
                bindings[1].target,
                bindings[1].environment,
                bindings[1].device_token.as_str()
            )
        );
    }
}
