//! The APNs provider's connections to the double: TLS with the configured CA, GOAWAY and
//! dropped connections replaced once, a slow Apple timed out, and many pushes sharing few
//! connections up to the peer's stream limit.

use std::sync::Arc;
use std::time::Duration;

use callpush::apns::ApnsProvider;
use callpush::providers::{Outcome, Provider};

use super::{call, double_and_provider, push, retry_reason, WAIT};
use crate::support::apns_double::{Answer, ApnsDouble, DoubleOptions};
use crate::support::fixtures::numbered_apns_token as device;

#[tokio::test]
async fn tls_endpoint_needs_the_configured_ca() {
    let apns = ApnsDouble::start_tls(DoubleOptions::default()).await;
    let cred = apns.credential("CRapns");
    let provider = ApnsProvider::new(&cred).unwrap();
    assert_eq!(
        provider.send(&push(call("CA0011"), &device(11))).await,
        Outcome::Delivered
    );

    let mut untrusting = cred.clone();
    untrusting.ca_file = None;
    let provider = ApnsProvider::new(&untrusting).unwrap();
    let outcome = provider.send(&push(call("CA0011"), &device(11))).await;
    assert_eq!(retry_reason(&outcome).0, "connect");
    assert_eq!(apns.count(), 1);
}

#[tokio::test]
async fn push_after_goaway_uses_a_new_connection() {
    let (apns, provider) = double_and_provider().await;
    let p = push(call("CA0012"), &device(12));
    assert_eq!(provider.send(&p).await, Outcome::Delivered);
    let before = apns.connections_accepted();
    apns.goaway_all();
    // The client learns of the GOAWAY asynchronously; every push must succeed meanwhile.
    for _ in 0..5 {
        assert_eq!(provider.send(&p).await, Outcome::Delivered);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(apns.connections_accepted() > before);
}

#[tokio::test]
async fn push_after_dropped_connections_reconnects() {
    let (apns, provider) = double_and_provider().await;
    let p = push(call("CA0013"), &device(13));
    assert_eq!(provider.send(&p).await, Outcome::Delivered);
    apns.kill_connections();
    // A push racing the drop may fail as a connection error, which the dispatcher retries.
    let mut delivered = false;
    for _ in 0..3 {
        match provider.send(&p).await {
            Outcome::Delivered => {
                delivered = true;
                break;
            }
            other => assert_eq!(retry_reason(&other).0, "connection"),
        }
    }
    assert!(delivered);
}

#[tokio::test]
async fn slow_apple_is_a_timeout_to_retry() {
    let apns = ApnsDouble::start(DoubleOptions::default()).await;
    apns.set_default(Answer::ok().delayed(Duration::from_secs(3)));
    let mut cred = apns.credential("CRapns");
    cred.request_timeout_ms = 200;
    let provider = ApnsProvider::new(&cred).unwrap();
    let outcome = provider.send(&push(call("CA0014"), &device(14))).await;
    assert_eq!(retry_reason(&outcome), ("timeout", None));
    assert!(apns.wait_for(1, WAIT).await);
}

#[tokio::test]
async fn many_concurrent_pushes_share_two_connections() {
    let apns = ApnsDouble::start(DoubleOptions::default()).await;
    let mut cred = apns.credential("CRapns");
    cred.connections = 2;
    let provider = Arc::new(ApnsProvider::new(&cred).unwrap());
    let tasks: Vec<_> = (0..500)
        .map(|n| {
            let provider = provider.clone();
            tokio::spawn(async move { provider.send(&push(call("CA0015"), &device(n))).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), Outcome::Delivered);
    }
    assert!(apns.wait_for(500, WAIT).await);
    assert!(apns.connections_accepted() <= 2);
    assert!(provider.open_connections() <= 2);
}

/// A connection dropped under a hundred requests in flight: each fails, and the first to
/// notice opens a new connection that the others then share. Before the pool numbered its
/// connections, every failure threw away the connection the previous one had just opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_under_load_is_replaced_once() {
    let apns = ApnsDouble::start(DoubleOptions::default()).await;
    let mut cred = apns.credential("CRapns");
    cred.connections = 1;
    let provider = Arc::new(ApnsProvider::new(&cred).unwrap());
    assert_eq!(
        provider.send(&push(call("CA0017"), &device(1000))).await,
        Outcome::Delivered
    );
    apns.set_default(Answer::ok().delayed(Duration::from_millis(300)));
    // Each push is sent again as soon as it fails, as the dispatcher's retries do.
    let tasks: Vec<_> = (0..100)
        .map(|n| {
            let provider = provider.clone();
            tokio::spawn(async move {
                for _ in 0..5 {
                    match provider.send(&push(call("CA0017"), &device(n))).await {
                        Outcome::Delivered => return true,
                        other => assert_eq!(retry_reason(&other).0, "connection"),
                    }
                }
                false
            })
        })
        .collect();
    assert!(apns.wait_for(101, WAIT).await, "all 100 requests in flight");
    apns.kill_connections();
    for task in tasks {
        assert!(task.await.unwrap(), "delivered within 5 tries");
    }
    // The pool's first connection and the one that replaced it, however the failures interleave
    // (before connections were numbered, 3 to 5 here: each late failure dropped the new one).
    assert!(
        apns.connections_accepted() <= 2,
        "{} connections for one drop",
        apns.connections_accepted()
    );
    assert_eq!(
        provider.send(&push(call("CA0017"), &device(1001))).await,
        Outcome::Delivered
    );
}

/// A connection at the peer's `SETTINGS_MAX_CONCURRENT_STREAMS` is busy, not broken: requests
/// beyond the limit wait for a stream on it instead of opening more connections.
#[tokio::test]
async fn a_connection_at_its_stream_limit_is_shared_not_replaced() {
    let apns = ApnsDouble::start(DoubleOptions {
        max_concurrent_streams: 4,
        ..DoubleOptions::default()
    })
    .await;
    apns.set_default(Answer::ok().delayed(Duration::from_millis(50)));
    let mut cred = apns.credential("CRapns");
    cred.connections = 1;
    let provider = Arc::new(ApnsProvider::new(&cred).unwrap());
    let tasks: Vec<_> = (0..40)
        .map(|n| {
            let provider = provider.clone();
            tokio::spawn(async move { provider.send(&push(call("CA0018"), &device(n))).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), Outcome::Delivered);
    }
    assert_eq!(apns.count(), 40);
    assert_eq!(apns.connections_accepted(), 1);
}
