//! Quotas are per credential as well as per device (SPEC §6): FCM allows each project so many
//! messages a minute and answers `429` with Google's project-quota details when it is over.
//! Such an answer pauses the whole credential until its `Retry-After` instead of every push
//! retrying on its own; an answer about one device stays with that device. The tests assert
//! what a call server and an operator notice: outcomes, requests spent, and the metrics.

#[macro_use]
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use callpush::domain::Platform;
use support::daemon::TestDaemon;
use support::fcm_double::Answer;
use support::scrape;
use support::world::{World, WAIT};

/// Poll the daemon's `/metrics` until `name{credential="CRfcm"}` is `want` (or 10 s pass).
async fn wait_metric(daemon: &TestDaemon, name: &str, want: f64) -> f64 {
    let start = Instant::now();
    loop {
        let value = scrape::fetch(&daemon.admin_url())
            .await
            .value(name, &[("credential", "CRfcm")])
            .unwrap_or(-1.0);
        if value == want || start.elapsed() > Duration::from_secs(10) {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_project_over_quota_pauses_the_credential_then_every_call_rings() {
    let mut w = World::new().await;
    for n in 0..50 {
        w.register(
            &format!("user{n}"),
            Platform::Fcm,
            &format!("fcm-token-{n}"),
        )
        .await;
    }
    let daemon = w.start_daemon();
    w.fcm.exceed_project_quota(Duration::from_secs(2));

    // The first call meets the quota: 429 RESOURCE_EXHAUSTED, Retry-After: 2.
    w.ring("user0", "CA0").await;
    assert!(w.fcm.wait_for(1, WAIT).await);
    assert_eq!(w.fcm.requests()[0].status, 429);
    assert_eq!(
        wait_metric(&daemon, "callpush_credential_paused", 1.0).await,
        1.0
    );

    // A call whose deadline falls inside the pause ends at once; the rest wait it out.
    w.call(&[
        ("type", "incoming"),
        ("to", "user49"),
        ("call_sid", "CA-short"),
        ("ttl_ms", "1000"),
    ])
    .await;
    for n in 1..49 {
        let (to, sid) = (format!("user{n}"), format!("CA{n}"));
        w.ring(&to, &sid).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let results = w.results(50).await;
    let outcomes: HashMap<&str, &str> = results
        .iter()
        .map(|r| (r["call_sid"].as_str(), r["outcome"].as_str()))
        .collect();
    assert_eq!(outcomes["CA-short"], "expired");
    let delivered = outcomes.values().filter(|o| **o == "delivered").count();
    assert_eq!(
        delivered, 49,
        "every call whose deadline allows rings: {outcomes:?}"
    );

    let requests = w.fcm.requests();
    let refused = requests.iter().filter(|r| r.status == 429).count();
    assert!(
        refused <= 5,
        "{refused} requests spent on the exhausted quota (not 49 × retries)"
    );
    assert_eq!(
        requests.len(),
        refused + 49,
        "one accepted request per ringing call, none for the expired one"
    );
    let dead = w.dead(1).await;
    assert_eq!(dead[0]["call_sid"], "CA-short");
    assert_eq!(dead[0]["reason"], "expired");
    assert!(
        dead[0]["detail"].contains("RESOURCE_EXHAUSTED"),
        "{}",
        dead[0]["detail"]
    );

    assert_eq!(
        wait_metric(&daemon, "callpush_credential_paused", 0.0).await,
        0.0
    );
    let pauses = scrape::fetch(&daemon.admin_url())
        .await
        .value(
            "callpush_credential_pauses_total",
            &[("credential", "CRfcm")],
        )
        .unwrap_or(0.0);
    assert!(
        (1.0..=5.0).contains(&pauses),
        "{pauses} pauses begun or extended"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn a_quota_of_one_device_stays_with_that_device() {
    let mut w = World::new().await;
    w.register("dana", Platform::Fcm, "fcm-token-busy").await;
    w.register("eve", Platform::Fcm, "fcm-token-calm").await;
    // FCM's QUOTA_EXCEEDED without project details: this device's message rate.
    w.fcm.script(
        "fcm-token-busy",
        vec![Answer::quota_exceeded().retry_after(1), Answer::ok()],
    );
    let daemon = w.start_daemon();
    w.ring("dana", "CA1").await;
    assert!(w.fcm.wait_for(1, WAIT).await);
    w.ring("eve", "CA2").await;
    let results = w.results(2).await;
    assert!(
        results.iter().all(|r| r["outcome"] == "delivered"),
        "{results:?}"
    );
    assert_eq!(
        w.fcm.count(),
        3,
        "dana's push retried once, eve's sent once"
    );
    let metrics = scrape::fetch(&daemon.admin_url()).await;
    let of = |name: &str| metrics.value(name, &[("credential", "CRfcm")]);
    assert_eq!(of("callpush_credential_pauses_total"), Some(0.0));
    assert_eq!(of("callpush_credential_paused"), Some(0.0));
    daemon.stop().await;
}
