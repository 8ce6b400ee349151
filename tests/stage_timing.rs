//! Stage timing end to end: after one delivered call, `/metrics` shows one observation in each
//! stage of `callpush_stage_seconds` (read, resolve, claim, push, finish), so an operator can
//! see where events spend their time. Runs on Redis and on the in-memory backend.

#[macro_use]
mod support;

on_both_backends!(a_delivered_call_is_timed_in_every_stage);

use std::time::{Duration, Instant};

use callpush::domain::Platform;
use support::fixtures::apns_token;
use support::scrape;
use support::world::{Backend, World};

const STAGES: [&str; 5] = ["read", "resolve", "claim", "push", "finish"];

async fn a_delivered_call_is_timed_in_every_stage(backend: Backend) {
    let mut w = World::on(backend, |_| {}).await;
    w.register("alice", Platform::Apns, &apns_token(1)).await;
    let daemon = w.start_daemon();
    let before = scrape::fetch(&daemon.admin_url()).await;
    for stage in STAGES {
        assert_eq!(
            before.value("callpush_stage_seconds_count", &[("stage", stage)]),
            Some(0.0),
            "stage {stage} is exported before the first event"
        );
    }

    w.call(&[("type", "incoming"), ("to", "alice"), ("call_sid", "CA1")])
        .await;
    let results = w.results(1).await;
    assert_eq!(results[0]["outcome"], "delivered");
    assert_eq!(w.apns.count(), 1);

    // The daemon laps `finish` once Redis answered, so the result can be seen just before.
    let until = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let s = scrape::fetch(&daemon.admin_url()).await;
        let finished = s.value("callpush_stage_seconds_count", &[("stage", "finish")]);
        if finished == Some(1.0) || Instant::now() > until {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for stage in STAGES {
        let labels = [("stage", stage)];
        assert_eq!(
            after.value("callpush_stage_seconds_count", &labels),
            Some(1.0),
            "one event timed in stage {stage}:\n{}",
            after.text
        );
        let seconds = after.value("callpush_stage_seconds_sum", &labels).unwrap();
        assert!(
            (0.0..60.0).contains(&seconds),
            "stage {stage} took {seconds} s"
        );
    }
    daemon.stop().await;
}
