//! Counting what the test doubles received per (call_sid, device token) and what the results
//! stream says per call, to assert the two delivery promises: every event has exactly one
//! outcome, and no device was pushed twice for one call.

use std::collections::HashMap;

use super::apns_double::ApnsDouble;
use super::fcm_double::FcmDouble;
use super::fixtures::numbered_apns_token;
use super::world::World;

/// Pushes the doubles accepted (answered 200: the device rings), per (push kind and call_sid,
/// device token), APNs and FCM together. Refused attempts (503, 429, …) ring nothing.
pub struct Tally {
    pub pushes: HashMap<(String, String), usize>,
}

impl Tally {
    /// Count the accepted pushes of both doubles of `world` so far.
    pub fn of(world: &World) -> Tally {
        Tally::of_doubles(&world.apns, &world.fcm)
    }

    /// Count the accepted pushes of both doubles so far.
    pub fn of_doubles(apns: &ApnsDouble, fcm: &FcmDouble) -> Tally {
        let mut pushes = HashMap::new();
        for r in apns.requests().into_iter().filter(|r| r.status == 200) {
            let sid = r.body["callpush"]["call_sid"].as_str().unwrap_or_default();
            let kind = r.body["callpush"]["type"].as_str().unwrap_or_default();
            *pushes
                .entry((format!("{kind}:{sid}"), r.token.clone()))
                .or_default() += 1;
        }
        for r in fcm.requests().into_iter().filter(|r| r.status == 200) {
            let data = &r.body["message"]["data"];
            let sid = data["call_sid"].as_str().unwrap_or_default();
            let kind = data["type"].as_str().unwrap_or_default();
            let token = r.token.clone();
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

/// Register `users` identities `user<i>`, each with one APNs and one FCM device.
pub async fn register_users(world: &World, users: usize) {
    use callpush::domain::Platform;
    for i in 0..users {
        let who = format!("user{i}");
        world
            .register(&who, Platform::Apns, &numbered_apns_token(i as u64))
            .await;
        world
            .register(&who, Platform::Fcm, &format!("fcm-{i}"))
            .await;
    }
}

/// Add `n` incoming calls `CA<tag>-<k>` to `user<k % users>` in one pipeline; returns the sids.
pub async fn add_calls(world: &mut World, tag: &str, n: usize, users: usize) -> Vec<String> {
    add_calls_to(world, tag, n, |k| format!("user{}", k % users)).await
}

/// Add `n` incoming calls `CA<tag>-<k>` to `callee(k)` in one pipeline; returns the sids.
pub async fn add_calls_to(
    world: &mut World,
    tag: &str,
    n: usize,
    callee: impl Fn(usize) -> String,
) -> Vec<String> {
    let key = world.keys.calls.clone();
    let mut pipe = redis::pipe();
    let mut sids = Vec::with_capacity(n);
    for k in 0..n {
        let sid = format!("CA{tag}-{k}");
        pipe.cmd("XADD")
            .arg(&key)
            .arg("*")
            .arg("type")
            .arg("incoming")
            .arg("to")
            .arg(callee(k))
            .arg("call_sid")
            .arg(&sid)
            .ignore();
        sids.push(sid);
    }
    let _: () = pipe.query_async(&mut world.conn).await.unwrap();
    sids
}

/// Wait until the results stream holds at least `n` entries (polling its length), then give
/// every result; fewer when `timeout` passed first.
pub async fn wait_results(
    world: &mut World,
    n: usize,
    timeout: std::time::Duration,
) -> Vec<HashMap<String, String>> {
    world
        .result_entries(n, timeout)
        .await
        .into_iter()
        .map(|(_, f)| f)
        .collect()
}
