//! callpush on a local 3-master Redis Cluster with 4 stream shards and two daemons (the real
//! binary): every event gets exactly one outcome and rings its devices once, every shard is
//! consumed, bindings registered through the API are found on whichever master holds them,
//! `callpush dlq list` sees the dead letters of every shard, and the pending entries of a daemon
//! killed mid-run are reclaimed by the other.

mod support;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use callpush::api;
use callpush::redis_conn::slots::shard_of;
use callpush::redis_conn::Keys;
use http::{Method, StatusCode};
use serde_json::json;
use support::api::{call, token, ADMIN_TOKEN};
use support::cluster_world::{fields, ClusterWorld, SHARDS};
use support::fcm_double;
use support::fixtures::numbered_apns_token;
use support::process::Knobs;
use support::redis_cluster::RedisCluster;
use support::redis_server::{pause_clients, unique_prefix, SLOW_ANSWER};
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

/// The heartbeat on a cluster: while every master holds its commands for 4 s (as masters
/// swamped by a burst answer late), touching entries of every shard waits for them instead of
/// failing as a short command would after 3 s, and the entries stay this daemon's.
#[tokio::test]
async fn touches_wait_for_masters_that_answer_late() {
    let w = ClusterWorld::start().await;
    let mut settings = w.settings.clone();
    settings.stream.claim_idle_ms = 10_000;
    settings.stream.consumer = Some("busy".into());
    let (queue, _) = callpush::daemon::redis_backends(&settings).await.unwrap();
    queue.ensure_group().await.unwrap();
    w.add_calls("hb", 40).await;
    let read = queue
        .read_new(100, Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(read.len(), 40);
    let ids: Vec<String> = read.iter().map(|e| e.id.clone()).collect();
    for url in w.cluster.urls() {
        pause_clients(&url, SLOW_ANSWER).await;
    }
    let lost = queue
        .touch(&ids)
        .await
        .expect("the touch waits for the paused masters instead of failing");
    assert_eq!(lost, 0, "every entry is still this consumer's");
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let owners = queue.owners(&refs).await.unwrap();
    assert!(
        owners.iter().all(|o| o.as_deref() == Some("busy")),
        "{owners:?}"
    );
}

/// Identities whose braces would move or empty the hash tag (docs/security.md, rows I01–I05)
/// register, list and unregister on a real cluster: the binding scripts never meet CROSSSLOT.
#[tokio::test]
async fn identities_with_braces_keep_their_bindings_in_one_slot_on_a_cluster() {
    let w = ClusterWorld::start().await;
    for (i, who) in ["}alice", "}", "al}ice", "{bob", "{}", "a:b*c d"]
        .into_iter()
        .enumerate()
    {
        let body = json!({"platform": "fcm", "device_token": format!("brace-{i}")});
        let public = || api::public_router(w.ctx.clone());
        let reply = call(
            public(),
            Method::POST,
            "/v1/registrations",
            Some(&token(who)),
            Some(body.clone()),
        )
        .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{who}: {reply:?}");
        let segment =
            percent_encoding::utf8_percent_encode(who, percent_encoding::NON_ALPHANUMERIC);
        let path = format!("/v1/identities/{segment}/bindings");
        let listed = call(
            api::admin_router(w.ctx.clone()),
            Method::GET,
            &path,
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
        assert_eq!(
            listed.body.as_array().map(Vec::len),
            Some(1),
            "{who}: {listed:?}"
        );
        let reply = call(
            public(),
            Method::DELETE,
            "/v1/registrations",
            Some(&token(who)),
            Some(body),
        )
        .await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{who}: {reply:?}");
    }
}

#[tokio::test]
async fn the_ledger_claims_with_plain_commands_on_a_cluster() {
    // Each call's ledger hash is in its own slot: the claims of a batch go as one transaction
    // per call, to the masters that own them, and a second attempt sees the first one's claims.
    use callpush::dispatch::ledger::redis::RedisSentLedger;
    use callpush::dispatch::ledger::{Claim, ClaimCall, ClaimRequest, Holder, SentLedger};
    let cluster = RedisCluster::start().await;
    let conn = cluster.client().get_async_connection().await.unwrap();
    let ledger = RedisSentLedger::new(
        callpush::redis_conn::RedisConn::Cluster(conn),
        Keys::new(&unique_prefix()).unwrap(),
    );
    let holder = |entry: &str| Holder {
        consumer: "c1".into(),
        instance: "i-1".into(),
        entry: entry.into(),
        since_ms: 1,
    };
    let (first, second) = (holder("1-0"), holder("2-0"));
    let devices = [
        ClaimRequest {
            device: "x",
            take_over: None,
        },
        ClaimRequest {
            device: "y",
            take_over: None,
        },
    ];
    let far = callpush::domain::now_ms() + 3_600_000;
    let calls = ["CA1", "CA2", "CA3", "CA4", "CA5", "CA6"];
    let batch = |me| -> Vec<ClaimCall> {
        calls
            .iter()
            .map(|call_sid| ClaimCall {
                call_sid,
                me,
                requests: &devices,
                expire_at_ms: far,
            })
            .collect()
    };
    let claims = ledger
        .claim_many(&batch(&first))
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert!(claims
        .iter()
        .all(|c| *c == vec![Claim::Fresh, Claim::Fresh]));
    let again = ledger
        .claim_many(&batch(&second))
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert!(
        again
            .iter()
            .flatten()
            .all(|c| matches!(c, Claim::Held(Some(h)) if h.entry == "1-0")),
        "{again:?}"
    );
    let mut hsetnx = 0;
    let mut evalsha = 0;
    for port in cluster.ports() {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
        let mut node = client.get_multiplexed_async_connection().await.unwrap();
        let stats: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut node)
            .await
            .unwrap();
        let calls_of = |name: &str| {
            stats
                .lines()
                .find_map(|l| l.strip_prefix(&format!("cmdstat_{name}:calls=")))
                .and_then(|rest| rest.split(',').next()?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        hsetnx += calls_of("hsetnx");
        evalsha += calls_of("evalsha");
    }
    assert_eq!(hsetnx, 24, "two devices of six calls, twice");
    assert_eq!(evalsha, 0, "no script on Redis 7");
}
