//! What became of the calls a cluster test added: when the APNs double rang each one (accepted
//! its push) and which outcomes the shards' results streams hold for it, with the ring delays
//! summed up for failure messages and the test's report.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::apns_double::ApnsDouble;
use super::cluster_calls::Added;
use super::cluster_world::ClusterWorld;

/// How long [`Observed::wait`] waits for every call to ring and end.
pub const DRAIN: Duration = Duration::from_secs(45);

/// What the daemon did with the calls of a test.
pub struct Observed {
    /// When the APNs double accepted a push, per call_sid.
    pub rung: HashMap<String, Vec<Instant>>,
    /// The outcomes of every shard, per call_sid, in stream order.
    pub outcomes: HashMap<String, Vec<String>>,
}

impl Observed {
    /// Wait until every call of `added` rang and has an outcome (or [`DRAIN`] passed).
    pub async fn wait(w: &mut ClusterWorld, added: &[Added]) -> Observed {
        let sids: Vec<String> = added.iter().map(|a| a.call.call_sid.clone()).collect();
        let rung = wait_rings(&w.apns, &sids, DRAIN).await;
        let mut outcomes: HashMap<String, Vec<String>> = HashMap::new();
        for r in w
            .wait_results(sids.len(), DRAIN)
            .await
            .into_iter()
            .flatten()
        {
            let sid = r["call_sid"].clone();
            outcomes.entry(sid).or_default().push(r["outcome"].clone());
        }
        Observed { rung, outcomes }
    }

    /// How long after being added the call first rang; `None`: it never did.
    pub fn delay(&self, a: &Added) -> Option<Duration> {
        let first = self.rung.get(&a.call.call_sid)?.first()?;
        Some(first.saturating_duration_since(a.added_at))
    }

    /// [`describe`] of the ring delays of `calls` (those that rang).
    pub fn delays<'a>(&self, calls: impl Iterator<Item = &'a Added>) -> String {
        describe(&mut calls.filter_map(|a| self.delay(a)).collect::<Vec<_>>())
    }

    /// How many times the call rang.
    pub fn times_rung(&self, a: &Added) -> usize {
        self.rung.get(&a.call.call_sid).map_or(0, Vec::len)
    }

    /// The call's outcomes, in stream order.
    pub fn ends(&self, a: &Added) -> &[String] {
        self.outcomes
            .get(&a.call.call_sid)
            .map_or(&[], Vec::as_slice)
    }
}

/// When the APNs double accepted a push (200: the device rang) for each call_sid, in order.
pub fn rings(apns: &ApnsDouble) -> HashMap<String, Vec<Instant>> {
    let mut out: HashMap<String, Vec<Instant>> = HashMap::new();
    for r in apns.requests().into_iter().filter(|r| r.status == 200) {
        let sid = r.body["callpush"]["call_sid"].as_str().unwrap_or_default();
        out.entry(sid.to_string()).or_default().push(r.received_at);
    }
    for times in out.values_mut() {
        times.sort();
    }
    out
}

/// Wait until every call of `sids` rang (or `timeout` passed); then [`rings`].
pub async fn wait_rings(
    apns: &ApnsDouble,
    sids: &[String],
    timeout: Duration,
) -> HashMap<String, Vec<Instant>> {
    let start = Instant::now();
    loop {
        let rung = rings(apns);
        if sids.iter().all(|s| rung.contains_key(s)) || start.elapsed() > timeout {
            return rung;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `n=…, p50=…, max=…` of `waits` (sorted here), for failure messages and the test's report.
pub fn describe(waits: &mut [Duration]) -> String {
    waits.sort();
    match waits {
        [] => "n=0".to_string(),
        _ => format!(
            "n={}, p50={:.1?}, max={:.1?}",
            waits.len(),
            waits[waits.len() / 2],
            waits[waits.len() - 1]
        ),
    }
}
