//! Which token answers what, the flaky token's second chance, and what starting a simulator
//! can fail with. The simulators driven by callpush's real provider clients are tested on
//! callpush's side (`src/dev/sim_tests.rs`).

use super::*;

#[test]
fn prefixes_choose_the_behaviour() {
    assert_eq!(Behaviour::of("dead0000"), Behaviour::Gone);
    assert_eq!(Behaviour::of("DEAD0000"), Behaviour::Gone);
    assert_eq!(Behaviour::of("0bad-phone"), Behaviour::Reject);
    assert_eq!(Behaviour::of("503abc"), Behaviour::Flaky);
    assert_eq!(Behaviour::of("alice-phone"), Behaviour::Accept);
}

#[test]
fn a_flaky_token_fails_once_per_call_and_type() {
    let flakes = Flakes::default();
    assert_eq!(flakes.answer("503a", "incoming", "CA1"), Behaviour::Flaky);
    assert_eq!(flakes.answer("503a", "incoming", "CA1"), Behaviour::Accept);
    assert_eq!(flakes.answer("503a", "cancel", "CA1"), Behaviour::Flaky);
    assert_eq!(flakes.answer("503a", "incoming", "CA2"), Behaviour::Flaky);
    assert_eq!(flakes.answer("dead", "incoming", "CA1"), Behaviour::Gone);
}

#[tokio::test]
async fn simulators_listen_on_loopback() {
    let sims = Simulators::start().await.unwrap();
    assert!(sims.apns_endpoint().starts_with("http://127.0.0.1:"));
    assert!(sims.token_uri().ends_with("/token"));
    assert!(sims.fcm_base_url().starts_with("http://127.0.0.1:"));
}

#[tokio::test]
async fn a_certificate_rustls_refuses_is_an_error_not_a_panic() {
    let tls = TlsIdentity {
        cert_pem: "not a certificate".into(),
        key_pem: "not a key".into(),
    };
    let started = ApnsSim::start(ApnsOptions {
        serve: Serving {
            tls: Some(tls),
            ..Serving::default()
        },
        ..ApnsOptions::default()
    })
    .await;
    assert!(
        matches!(started, Err(SimError::Tls(_))),
        "{:?}",
        started.err()
    );
}
