//! The providers the pool pushes with, one per credential SID, replaced whole by a reload
//! (`crate::reload`). A push holds its provider (`Arc`) from its first attempt to its final
//! answer, so pushes in flight finish on the credential they started with while new pushes take
//! the new one. A credential a reload removed answers every new push with a rejection naming
//! it ([`Removed`]), so its bindings' calls are dead-lettered with a reason an operator can act
//! on instead of vanishing as `no_bindings`.
//!
//! What the pool keeps per credential beside its provider (its push slots, its quota gate) is
//! made by one function at start and at every reload, from the providers of the moment
//! ([`ProviderSet::on_replace`]), so a credential a reload added gets everything one
//! configured at start has. The metrics sampler reads each credential's connections and token
//! refreshes from the probes kept here ([`ProviderSet::probes`]), replaced with their providers.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use crate::domain::{Platform, Push};
use crate::metrics::ProviderProbe;
use crate::providers::{Failure, Outcome, Provider};

/// Providers by credential SID.
pub type ProviderMap = HashMap<String, Arc<dyn Provider>>;

/// What the sampler reads of each credential's provider, by SID.
pub type ProbeMap = HashMap<String, Arc<dyn ProviderProbe>>;

/// Called with the new providers whenever they are replaced.
type OnReplace = Box<dyn Fn(&ProviderMap) + Send + Sync>;

/// The current providers, and the credentials a reload removed.
#[derive(Default)]
pub struct ProviderSet {
    current: RwLock<(Arc<ProviderMap>, HashSet<String>)>,
    probes: RwLock<ProbeMap>,
    on_replace: Mutex<Vec<OnReplace>>,
}

impl ProviderSet {
    /// The providers of the start.
    pub fn new(providers: ProviderMap) -> ProviderSet {
        ProviderSet {
            current: RwLock::new((Arc::new(providers), HashSet::new())),
            ..ProviderSet::default()
        }
    }

    /// The providers of the start, with what the sampler reads of them.
    pub fn with_probes(providers: ProviderMap, probes: ProbeMap) -> ProviderSet {
        let set = ProviderSet::new(providers);
        *set.probes.write().expect("never poisoned") = probes;
        set
    }

    /// Call `adopt` with the current providers now, and with the new ones after every
    /// [`ProviderSet::replace`]: what is built per credential, built the same at start and on
    /// reload.
    pub fn on_replace(&self, adopt: impl Fn(&ProviderMap) + Send + Sync + 'static) {
        adopt(&self.snapshot());
        self.on_replace
            .lock()
            .expect("never poisoned")
            .push(Box::new(adopt));
    }

    /// What the sampler reads now: one probe per current credential.
    pub fn probes(&self) -> Vec<Arc<dyn ProviderProbe>> {
        self.probes
            .read()
            .expect("never poisoned")
            .values()
            .cloned()
            .collect()
    }

    /// The provider of `credential`: the current one, a [`Removed`] one for a credential a
    /// reload took away, `None` for one never configured.
    pub fn get(&self, credential: &str) -> Option<Arc<dyn Provider>> {
        let current = self.current.read().expect("never poisoned");
        if let Some(p) = current.0.get(credential) {
            return Some(p.clone());
        }
        current.1.contains(credential).then(|| {
            Arc::new(Removed {
                sid: credential.to_string(),
            }) as Arc<dyn Provider>
        })
    }

    /// Every current provider.
    pub fn snapshot(&self) -> Arc<ProviderMap> {
        self.current.read().expect("never poisoned").0.clone()
    }

    /// From now on, push with `providers`; the credentials of the previous set that are not in
    /// it count as removed (until a later reload adds them again).
    pub fn replace(&self, providers: ProviderMap) {
        self.replace_probed(providers, ProbeMap::new());
    }

    /// [`ProviderSet::replace`], with the probes of the providers built anew (the others keep
    /// theirs; a removed credential's goes).
    pub fn replace_probed(&self, providers: ProviderMap, built: ProbeMap) {
        let providers = Arc::new(providers);
        {
            let mut current = self.current.write().expect("never poisoned");
            let mut removed: HashSet<String> = current
                .0
                .keys()
                .chain(current.1.iter())
                .filter(|sid| !providers.contains_key(*sid))
                .cloned()
                .collect();
            removed.shrink_to_fit();
            *current = (providers.clone(), removed);
            let mut probes = self.probes.write().expect("never poisoned");
            probes.retain(|sid, _| providers.contains_key(sid));
            probes.extend(built);
        }
        for adopt in self.on_replace.lock().expect("never poisoned").iter() {
            adopt(&providers);
        }
    }

    /// Add or replace one provider (unit tests).
    #[cfg(test)]
    pub(crate) fn insert(&self, sid: &str, provider: Arc<dyn Provider>) {
        let mut current = self.current.write().expect("never poisoned");
        let mut map = (*current.0).clone();
        map.insert(sid.to_string(), provider);
        current.0 = Arc::new(map);
    }
}

/// The stand-in of a credential a reload removed: every push is rejected, naming it.
struct Removed {
    sid: String,
}

#[async_trait::async_trait]
impl Provider for Removed {
    fn platform(&self) -> Platform {
        // Not sent anywhere; the label of its rejections only.
        Platform::Fcm
    }

    fn credential(&self) -> &str {
        &self.sid
    }

    fn sends_cancel(&self) -> bool {
        false
    }

    async fn send(&self, _push: &Push) -> Outcome {
        Outcome::Rejected(Failure::new(
            "credential_removed",
            format!(
                "credential {} was removed from the configuration (reload); the binding stays \
                 until the app registers again or it is deleted",
                self.sid
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_removed_credential_rejects_naming_itself_and_an_unknown_one_is_absent() {
        let set = ProviderSet::new(ProviderMap::new());
        set.insert("CRa", Arc::new(Removed { sid: "CRa".into() }));
        set.replace(ProviderMap::new());
        let removed = set.get("CRa").expect("removed credentials still answer");
        let call = crate::domain::CallContent {
            kind: crate::domain::PushKind::Incoming,
            call_sid: "CA1".into(),
            caller: None,
            callee: "alice".into(),
            params: None,
            deadline_ms: crate::domain::now_ms() + 1_000,
            twilio: Vec::new(),
        };
        match removed.send(&Push::new(Arc::new(call), "t")).await {
            Outcome::Rejected(f) => assert!(f.detail.contains("CRa"), "{}", f.detail),
            other => panic!("{other:?}"),
        }
        assert!(set.get("CRnever").is_none());
    }
}
