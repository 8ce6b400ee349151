//! Which token answers what, and the flaky token's second chance.

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
