//! Counting what the test doubles received per (call_sid, device token) and what the results
//! stream says per call, to assert the two delivery promises: every event has exactly one
//! outcome, and no device was pushed twice for one call.

use std::collections::HashMap;

use super::world::World;

/// Pushes the doubles received, per (call_sid, device token), APNs and FCM together.
pub struct Tally {
    pub pushes: HashMap<(String, String), usize>,
}

impl Tally {
    /// Count every push both doubles of `world` received so far.
    pub fn of(world: &World) -> Tally {
        let mut pushes = HashMap::new();
        for r in world.apns.requests() {
            let sid = r.body["callpush"]["call_sid"].as_str().unwrap_or_default();
            let kind = r.body["callpush"]["type"].as_str().unwrap_or_default();
            *pushes
                .entry((format!("{kind}:{sid}"), r.token.clone()))
                .or_default() += 1;
        }
        for r in world.fcm.requests() {
            let data = &r.body["message"]["data"];
            let sid = data["call_sid"].as_str().unwrap_or_default();
            let kind = data["type"].as_str().unwrap_or_default();
            let token = r.token.clone().unwrap_or_default();
            *pushes.entry((format!("{kind}:{sid}"), token)).or_default() += 1;
        }
        Tally { pushes }
    }

    /// Panic when a device was pushed twice for one call (and one push kind).
    pub fn assert_no_double_ring(&self) {
        let twice: Vec<_> = self.pushes.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "devices pushed twice for one call: {twice:?}"
        );
    }

    /// How many distinct calls (of any kind) reached at least one device.
    pub fn calls_rung(&self) -> usize {
        let calls: std::collections::HashSet<_> = self.pushes.keys().map(|(c, _)| c).collect();
        calls.len()
    }
}

/// Panic unless every call in `sids` has exactly one outcome in `results` (and nothing else
/// has one); returns the outcomes by call_sid.
pub fn assert_one_outcome_each(
    results: &[HashMap<String, String>],
    sids: &[String],
) -> HashMap<String, String> {
    let mut by_sid: HashMap<String, Vec<String>> = HashMap::new();
    for r in results {
        by_sid
            .entry(r["call_sid"].clone())
            .or_default()
            .push(r["outcome"].clone());
    }
    let repeated: Vec<_> = by_sid.iter().filter(|(_, o)| o.len() > 1).collect();
    assert!(
        repeated.is_empty(),
        "calls with several outcomes: {repeated:?}"
    );
    let missing: Vec<_> = sids.iter().filter(|s| !by_sid.contains_key(*s)).collect();
    assert!(
        missing.is_empty(),
        "{} calls without an outcome, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(by_sid.len(), sids.len(), "outcomes of calls never added");
    by_sid
        .into_iter()
        .map(|(k, mut v)| (k, v.remove(0)))
        .collect()
}
