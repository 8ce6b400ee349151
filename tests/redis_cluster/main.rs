//! callpush on a local 3-master Redis Cluster with 4 stream shards and two daemons (the real
//! binary): every event gets exactly one outcome and rings its devices once, every shard is
//! consumed, bindings registered through the API are found on whichever master holds them,
//! `callpush dlq list` sees the dead letters of every shard, and the pending entries of a daemon
//! killed mid-run are reclaimed by the other.

#[path = "../support/mod.rs"]
mod support;

mod commands;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use callpush::api;
use callpush::redis_conn::slots::shard_of;
use http::{Method, StatusCode};
use serde_json::json;
use support::api::{call, token, ADMIN_TOKEN};
use support::cluster_world::{fields, ClusterWorld, SHARDS};
use support::fcm_double;
use support::fixtures::numbered_apns_token;
use support::process::Knobs;
use support::tally::{assert_one_outcome_each, Tally};

const USERS: usize = 200;
/// Long enough for a few thousand events on a busy 2-core machine.
const RUN: Duration = Duration::from_secs(90);

impl ClusterWorld {
    /// `user<i>`, each with an APNs and an FCM device, registered through `POST
    /// /v1/registrations`.
    async fn register_users(&self) {
        for i in 0..USERS {
            let who = format!("user{i}");
            for (platform, device) in [
                ("apns", numbered_apns_token(i as u64)),
                ("fcm", format!("fcm-{i}")),
            ] {
                let body = json!({"platform": platform, "device_token": device});
                let reply = call(
                    api::public_router(self.ctx.clone()),
                    Method::POST,
                    "/v1/registrations",
                    Some(&token(&who)),
                    Some(body),
                )
                .await;
                assert!(reply.status.is_success(), "{who}: {reply:?}");
            }
        }
    }

    /// `n` incoming calls `CA<tag>-<k>` to `user<k % USERS>`: the first few through `POST
    /// /v1/calls`, the rest through the queue as `callpush enqueue` adds them.
    async fn add_calls(&self, tag: &str, n: usize) -> Vec<String> {
        let sids: Vec<String> = (0..n).map(|k| format!("CA{tag}-{k}")).collect();
        for (k, sid) in sids.iter().enumerate().take(20) {
            let body =
                json!({"type": "incoming", "to": format!("user{}", k % USERS), "call_sid": sid});
            let router = api::admin_router(self.ctx.clone());
            let reply = call(
                router,
                Method::POST,
                "/v1/calls",
                Some(ADMIN_TOKEN),
                Some(body),
            )
            .await;
            assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
        }
        for chunk in sids
            .iter()
            .enumerate()
            .skip(20)
            .collect::<Vec<_>>()
            .chunks(100)
        {
            let adds = chunk.iter().map(|(k, sid)| {
                let fields = fields(&[
                    ("type", "incoming"),
                    ("to", &format!("user{}", k % USERS)),
                    ("call_sid", sid),
                ]);
                async move { self.queue.enqueue(&fields).await.unwrap() }
            });
            futures::future::join_all(adds).await;
        }
        sids
    }

    /// One malformed event (an unknown `type`) in every shard: `CAbad-<shard>`.
    async fn add_malformed(&self) -> Vec<String> {
        let mut sids = Vec::new();
        for shard in 0..SHARDS as usize {
            let to = (0..)
                .map(|j| format!("nobody{j}"))
                .find(|to| shard_of(to, SHARDS) == shard)
                .unwrap();
            let sid = format!("CAbad-{shard}");
            let f = fields(&[("type", "bogus"), ("to", &to), ("call_sid", &sid)]);
            self.queue.enqueue(&f).await.unwrap();
            sids.push(sid);
        }
        sids
    }
}

/// The call_sids of `callpush dlq list --json` with the daemon's config.
fn dlq_list(config: &std::path::Path) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_callpush"))
        .args(["dlq", "list", "--json", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .expect("run callpush dlq list");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    lines.pop().expect("a summary line");
    lines
        .iter()
        .map(|l| l["event"]["call_sid"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn two_daemons_on_a_cluster_give_every_event_of_every_shard_one_outcome() {
    let mut w = ClusterWorld::start().await;
    w.register_users().await;
    let calls = w.add_calls("c", 2_000).await;
    let bad = w.add_malformed().await;
    let knobs = Knobs::default();
    let d1 = w.daemon("d1", &knobs);
    let d2 = w.daemon("d2", &knobs);

    let all: Vec<String> = calls.iter().chain(&bad).cloned().collect();
    let per_shard = w.wait_results(all.len(), RUN).await;
    let results: Vec<_> = per_shard.iter().flatten().cloned().collect();
    let outcomes = assert_one_outcome_each(&results, &all);
    for sid in &calls {
        assert_eq!(
            outcomes[sid],
            "delivered",
            "{sid}: {:?}",
            results.iter().find(|r| &r["call_sid"] == sid)
        );
    }
    for sid in &bad {
        assert_eq!(outcomes[sid], "malformed", "{sid}");
    }
    // Every shard was consumed, each event in the shard of its `to`, nothing left pending.
    for (shard, results) in per_shard.iter().enumerate() {
        assert!(!results.is_empty(), "shard {shard} was never consumed");
        for r in results {
            assert_eq!(shard_of(&r["to"], SHARDS), shard, "{r:?}");
        }
        let keys = w.layout.shards()[shard].clone();
        let pending: i64 = w.pending(&keys).await.values().sum();
        assert_eq!(pending, 0, "shard {shard}");
    }
    // The shards and the bindings spread over all three masters.
    for port in w.cluster.ports() {
        let keys = w.cluster.keys_on(port);
        let prefix = &w.settings.redis.key_prefix;
        assert!(
            keys.iter()
                .any(|k| k.starts_with(prefix) && k.ends_with("calls")),
            "no calls stream on {port}: {keys:?}"
        );
        assert!(
            keys.iter().any(|k| k.contains("id:{user")),
            "no bindings on {port}"
        );
    }
    // Every call rang both devices of its callee, once.
    let tally = Tally::of_doubles(&w.apns, &w.fcm);
    tally.assert_no_double_ring();
    assert_eq!(tally.pushes.len(), 2 * calls.len());

    let listed = dlq_list(&w.dir.path().join("d1.toml"));
    assert_eq!(
        listed,
        bad.iter().cloned().collect(),
        "dlq list sees every shard"
    );
    drop((d1, d2));
}

#[tokio::test]
async fn a_daemon_killed_mid_run_leaves_its_entries_to_the_other() {
    let mut w = ClusterWorld::start().await;
    w.register_users().await;
    // Google holds every answer for a while: pushes are in flight when the kill comes.
    w.fcm
        .set_default(fcm_double::Answer::ok().delayed(Duration::from_secs(1)));
    let calls = w.add_calls("k", 800).await;
    let knobs = Knobs {
        claim_idle_ms: 3_000,
        max_in_flight: 128,
        batch_size: 32,
        ..Knobs::default()
    };
    let doomed = w.daemon("doomed", &knobs);
    let survivor = w.daemon("survivor", &knobs);
    assert!(
        w.fcm.wait_for_received(300, RUN).await,
        "only {} FCM pushes",
        w.fcm.received()
    );
    // More pushes waiting at Google than one daemon's FCM slots hold (half its pool: there are
    // two credentials): the doomed one has some on the wire (on a loaded machine it can start
    // late and have none yet at the 300th).
    let one_daemon = knobs.max_in_flight / 2;
    let waiting = || w.fcm.received() - w.fcm.count();
    let since = std::time::Instant::now();
    while waiting() <= one_daemon && since.elapsed() < RUN {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        waiting() > one_daemon,
        "both daemons never had pushes waiting at Google at once ({} waiting)",
        waiting()
    );
    doomed.kill9();
    let mut left = 0;
    for keys in w.layout.shards().to_vec() {
        left += w.pending(&keys).await.get("doomed").copied().unwrap_or(0);
    }
    assert!(left > 0, "the killed daemon had entries in flight");

    let per_shard = w.wait_results(calls.len(), RUN).await;
    let results: Vec<_> = per_shard.iter().flatten().cloned().collect();
    let outcomes = assert_one_outcome_each(&results, &calls);
    // `duplicate`: every device was pushed by the killed daemon before the other took over.
    let others: Vec<_> = outcomes
        .iter()
        .filter(|(_, o)| *o != "delivered" && *o != "duplicate")
        .collect();
    assert!(others.is_empty(), "{others:?}");
    for keys in w.layout.shards().to_vec() {
        let pending = w.pending(&keys).await;
        assert!(pending.is_empty(), "{}: {pending:?}", keys.calls);
    }
    // A device rings twice only for a push the killed daemon had on the wire (its in-flight
    // window): at most its max_in_flight, and never more than twice.
    let tally = Tally::of_doubles(&w.apns, &w.fcm);
    assert_eq!(tally.pushes.len(), 2 * calls.len(), "every device rang");
    let twice = tally.pushes.values().filter(|n| **n > 1).count();
    assert!(tally.pushes.values().all(|n| *n <= 2));
    assert!(twice <= knobs.max_in_flight, "{twice} devices rang twice");
    // Pushes that reached Google but were never answered: the killed daemon's, cut on the wire.
    // Every device still rang (counted on answers above), so the survivor pushed those again.
    let cut = w.fcm.received() - w.fcm.count();
    assert!(cut > 0, "the kill cut no push in flight");
    eprintln!(
        "{left} entries pending with the killed daemon; {cut} pushes cut in flight and sent \
         again; {twice} devices rang twice"
    );
    drop(survivor);
}
