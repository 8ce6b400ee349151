//! Push slots of each credential, taken before a pool slot: all of the pool with one
//! credential, else half of it (at least one), so one stuck credential leaves at least half the
//! pool to the others. Sized again whenever the credentials change (a reload): a credential
//! added gets its cap at once; when the cap changes (one credential became several), every
//! credential gets a fresh cap, and pushes in flight finish on the slots they hold.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tokio::sync::Semaphore;

use crate::providers::Provider;

/// Push slots by credential SID.
pub(crate) struct CredentialSlots {
    max_in_flight: usize,
    /// Each credential's slots, with the cap they were made with.
    slots: RwLock<HashMap<String, (usize, Arc<Semaphore>)>>,
}

/// The cap of each of `credentials` credentials.
fn cap(credentials: usize, max_in_flight: usize) -> usize {
    if credentials > 1 {
        max_in_flight.div_ceil(2).max(1)
    } else {
        max_in_flight.max(1)
    }
}

impl CredentialSlots {
    /// The slots of `providers`' credentials, of a pool of `max_in_flight`.
    pub(crate) fn new(
        providers: &HashMap<String, Arc<dyn Provider>>,
        max_in_flight: usize,
    ) -> CredentialSlots {
        let slots = CredentialSlots {
            max_in_flight,
            slots: RwLock::default(),
        };
        slots.adopt(providers);
        slots
    }

    /// Size the slots for `providers` (at start and after every reload).
    pub(crate) fn adopt(&self, providers: &HashMap<String, Arc<dyn Provider>>) {
        let cap = cap(providers.len(), self.max_in_flight);
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        let old = std::mem::take(&mut *slots);
        for sid in providers.keys() {
            let slot = match old.get(sid) {
                Some((made, kept)) if *made == cap => kept.clone(),
                _ => Arc::new(Semaphore::new(cap)),
            };
            slots.insert(sid.clone(), (cap, slot));
        }
    }

    /// The slots of `credential`, if it has any.
    pub(crate) fn get(&self, credential: &str) -> Option<Arc<Semaphore>> {
        self.slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(credential)
            .map(|(_, slot)| slot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::fixtures::Scripted;
    use crate::domain::Platform;

    fn providers(sids: &[&str]) -> HashMap<String, Arc<dyn Provider>> {
        sids.iter()
            .map(|sid| {
                let p: Arc<dyn Provider> = Arc::new(Scripted::new(Platform::Fcm, sid, false));
                (sid.to_string(), p)
            })
            .collect()
    }

    #[test]
    fn a_credential_added_later_gets_the_cap_of_those_of_the_start() {
        let slots = CredentialSlots::new(&providers(&["CR1"]), 8);
        assert_eq!(slots.get("CR1").unwrap().available_permits(), 8);
        assert!(slots.get("CR2").is_none());
        slots.adopt(&providers(&["CR1", "CR2"]));
        assert_eq!(slots.get("CR1").unwrap().available_permits(), 4);
        assert_eq!(slots.get("CR2").unwrap().available_permits(), 4);
        let kept = slots.get("CR2").unwrap();
        slots.adopt(&providers(&["CR1", "CR2"]));
        assert!(
            Arc::ptr_eq(&kept, &slots.get("CR2").unwrap()),
            "unchanged caps are kept"
        );
        slots.adopt(&providers(&["CR1"]));
        assert!(slots.get("CR2").is_none());
    }
}
