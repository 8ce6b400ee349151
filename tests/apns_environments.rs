//! APNs environments belong to devices (SPEC §4, §6): a debug build's token is a sandbox token,
//! and each of Apple's hosts answers a token of the other with `400 BadDeviceToken` — the
//! answer a dead token gets too. With the production and sandbox doubles behind one credential,
//! each test asserts what a callee or an operator notices: which host rang, what was pruned
//! (nothing live), and what the binding says afterwards.

#[macro_use]
mod support;

on_both_backends!(
    a_sandbox_token_rings_through_the_sandbox_and_the_binding_learns_it,
    a_token_dead_in_both_environments_is_pruned_once,
    a_registered_environment_is_never_tried_elsewhere,
    a_key_scoped_to_production_never_reaches_the_sandbox,
    a_key_scoped_to_the_other_environment_is_tried_there,
);

use callpush::config::{ApnsCredential, CredentialSettings, Settings};
use callpush::domain::{now_ms, ApnsEnvironment, Platform, Target};
use callpush_sim::SANDBOX_PREFIX;
use http::{Method, StatusCode};
use serde_json::json;
use support::api::{call, token, ApiWorld};
use support::apns_double::{Answer, ApnsDouble, DoubleOptions};
use support::scrape;
use support::world::{Backend, World};

/// A sandbox (debug build) token: 64 hex digits starting with the simulators' sandbox prefix.
fn sandbox_token(n: u8) -> String {
    let tail = format!("{n:02x}").repeat(31);
    format!("{SANDBOX_PREFIX}{}", &tail[..64 - SANDBOX_PREFIX.len()])
}

/// A production token (TestFlight, App Store).
fn production_token(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

/// A world whose APNs credential has its production double and a sandbox double beside it
/// (`sandbox_endpoint`), changed further by `tweak`; and the sandbox double.
async fn with_sandbox(
    backend: Backend,
    tweak: impl FnOnce(&mut ApnsCredential),
) -> (ApnsDouble, ApiWorld) {
    let sandbox = ApnsDouble::start(DoubleOptions {
        environment: ApnsEnvironment::Sandbox,
        ..DoubleOptions::default()
    })
    .await;
    let url = sandbox.url();
    let api = ApiWorld::on(backend, |s| {
        let credential = apns_credential(s);
        credential.sandbox_endpoint = Some(url);
        tweak(credential);
    })
    .await;
    (sandbox, api)
}

fn apns_credential(settings: &mut Settings) -> &mut ApnsCredential {
    settings
        .credentials
        .iter_mut()
        .find_map(|c| match c {
            CredentialSettings::Apns(a) if a.sid == "CRapns" => Some(a),
            _ => None,
        })
        .expect("the world's APNs credential")
}

/// Register `token` for `identity` on `CRapns`, naming `environment` or not.
async fn register(w: &World, identity: &str, token: &str, environment: Option<ApnsEnvironment>) {
    w.store()
        .await
        .register(
            callpush::bindings::NewBinding {
                identity: identity.into(),
                platform: Platform::Apns,
                credential: "CRapns".into(),
                device_token: token.into(),
                target: Target::Token,
                environment,
            },
            now_ms(),
        )
        .await
        .unwrap();
}

async fn a_sandbox_token_rings_through_the_sandbox_and_the_binding_learns_it(backend: Backend) {
    let (sandbox, mut api) = with_sandbox(backend, |_| {}).await;
    let debug_build = sandbox_token(1);
    register(&api.world, "alice", &debug_build, None).await;
    let daemon = api.world.start_daemon();
    let w = &mut api.world;

    w.ring("alice", "CA1").await;
    let results = w.results(1).await;
    assert_eq!(results[0]["outcome"], "delivered", "{results:?}");
    let production: Vec<u16> = w.apns.requests().iter().map(|r| r.status).collect();
    assert_eq!(production, vec![400], "production refused it once");
    assert_eq!(
        sandbox
            .requests()
            .iter()
            .map(|r| r.status)
            .collect::<Vec<_>>(),
        vec![200],
        "the sandbox rang it"
    );
    let bindings = w.store().await.list("alice").await.unwrap();
    assert_eq!(bindings.len(), 1, "nothing pruned: {bindings:?}");
    assert_eq!(bindings[0].environment, Some(ApnsEnvironment::Sandbox));
    assert!(bindings[0].environment_learned);

    w.ring("alice", "CA2").await;
    let results = w.results(2).await;
    assert!(results.iter().all(|r| r["outcome"] == "delivered"));
    assert_eq!(w.apns.count(), 1, "the second call skips production");
    assert_eq!(sandbox.count(), 2, "one request for the second call");

    // The admin API shows where the device is, and that callpush learned it.
    let listed = api.admin_bindings("alice").await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body[0]["environment"], "sandbox", "{}", listed.body);
    assert_eq!(listed.body[0]["environment_source"], "learned");
    let metrics = scrape::fetch(&daemon.admin_url()).await;
    let pushes = |env: &str, outcome: &str| {
        metrics
            .value(
                "callpush_pushes_total",
                &[
                    ("credential", "CRapns"),
                    ("environment", env),
                    ("outcome", outcome),
                ],
            )
            .unwrap_or(0.0)
    };
    assert_eq!(pushes("sandbox", "delivered"), 2.0);
    assert_eq!(pushes("production", "invalid_token"), 1.0);
    let pruned = metrics.value(
        "callpush_tokens_pruned_total",
        &[("platform", "apns"), ("reason", "BadDeviceToken")],
    );
    assert_eq!(pruned, Some(0.0), "a live device is never pruned");
    daemon.stop().await;
}

async fn a_token_dead_in_both_environments_is_pruned_once(backend: Backend) {
    let (sandbox, api) = with_sandbox(backend, |_| {}).await;
    let mut w = api.world;
    let malformed = sandbox_token(2);
    let uninstalled = sandbox_token(3);
    register(&w, "bob", &malformed, None).await;
    register(&w, "carol", &uninstalled, None).await;
    // Not a token of either environment; and a sandbox token whose app is gone.
    sandbox.script(&malformed, vec![Answer::error(400, "BadDeviceToken")]);
    sandbox.set_unregistered(&uninstalled, now_ms());
    let daemon = w.start_daemon();
    w.ring("bob", "CA1").await;
    w.ring("carol", "CA2").await;
    let results = w.results(2).await;
    assert!(
        results.iter().all(|r| r["outcome"] == "no_bindings"),
        "every device was dead: {results:?}"
    );
    assert_eq!(w.apns.count(), 2, "production refused each once");
    assert_eq!(sandbox.count(), 2, "the sandbox refused each once");
    let store = w.store().await;
    assert!(store.list("bob").await.unwrap().is_empty());
    assert!(store.list("carol").await.unwrap().is_empty());
    let metrics = scrape::fetch(&daemon.admin_url()).await;
    let pruned: f64 = ["BadDeviceToken", "Unregistered"]
        .iter()
        .filter_map(|reason| {
            metrics.value(
                "callpush_tokens_pruned_total",
                &[("platform", "apns"), ("reason", reason)],
            )
        })
        .sum();
    assert_eq!(pruned, 2.0, "each pruned once");

    w.ring("bob", "CA3").await;
    assert_eq!(w.results(3).await[2]["outcome"], "no_bindings");
    assert_eq!(
        (w.apns.count(), sandbox.count()),
        (2, 2),
        "nothing more sent"
    );
    daemon.stop().await;
}

async fn a_registered_environment_is_never_tried_elsewhere(backend: Backend) {
    let (sandbox, api) = with_sandbox(backend, |_| {}).await;
    let mut w = api.world;
    let debug_build = sandbox_token(4);
    // An app that says the wrong thing: a production token registered as sandbox.
    let mislabelled = production_token(5);
    register(&w, "dave", &debug_build, Some(ApnsEnvironment::Sandbox)).await;
    register(&w, "erin", &mislabelled, Some(ApnsEnvironment::Sandbox)).await;
    let daemon = w.start_daemon();
    w.ring("dave", "CA1").await;
    w.ring("erin", "CA2").await;
    let results = w.results(2).await;
    let outcome = |sid: &str| {
        results
            .iter()
            .find(|r| r["call_sid"] == sid)
            .map(|r| r["outcome"].clone())
            .unwrap()
    };
    assert_eq!(outcome("CA1"), "delivered");
    assert_eq!(
        outcome("CA2"),
        "no_bindings",
        "the sandbox refused it as a dead token"
    );
    assert_eq!(w.apns.count(), 0, "production is never tried");
    assert_eq!(sandbox.count(), 2);
    let dave = w.store().await.list("dave").await.unwrap();
    assert_eq!(dave[0].environment, Some(ApnsEnvironment::Sandbox));
    assert!(!dave[0].environment_learned);
    daemon.stop().await;
}

async fn a_key_scoped_to_production_never_reaches_the_sandbox(backend: Backend) {
    let (sandbox, api) = with_sandbox(backend, |apns| {
        apns.environments = Some(vec![ApnsEnvironment::Production]);
    })
    .await;
    // A debug build that says what it is gets a clear answer instead of a binding that can
    // never ring.
    let reply = call(
        api.public(),
        Method::POST,
        "/v1/registrations",
        Some(&token("frank")),
        Some(
            json!({"platform": "apns", "device_token": sandbox_token(6), "environment": "sandbox"}),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{:?}", reply.body);
    assert_eq!(reply.code(), "invalid_request");
    assert!(
        reply.message().contains("`environment`"),
        "{}",
        reply.message()
    );
    // One that does not say is pushed to production only, and its token is dead there.
    let reply = call(
        api.public(),
        Method::POST,
        "/v1/registrations",
        Some(&token("frank")),
        Some(json!({"platform": "apns", "device_token": sandbox_token(6)})),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert_eq!(reply.body["environment"], "production");
    assert_eq!(reply.body["environment_source"], "credential");
    let mut w = api.world;
    let daemon = w.start_daemon();
    w.ring("frank", "CA1").await;
    assert_eq!(w.results(1).await[0]["outcome"], "no_bindings");
    assert_eq!(w.apns.count(), 1);
    assert_eq!(
        sandbox.count(),
        0,
        "the scoped key never reaches the sandbox"
    );
    daemon.stop().await;
}

async fn a_key_scoped_to_the_other_environment_is_tried_there(backend: Backend) {
    let (sandbox, api) = with_sandbox(backend, |apns| {
        apns.environment = ApnsEnvironment::Sandbox;
    })
    .await;
    let mut w = api.world;
    // The credential thinks its key serves the sandbox; Apple says it is production's.
    sandbox.scope_key_elsewhere(true);
    let release = production_token(7);
    register(&w, "gina", &release, None).await;
    let daemon = w.start_daemon();
    w.ring("gina", "CA1").await;
    assert_eq!(w.results(1).await[0]["outcome"], "delivered");
    assert_eq!(
        sandbox.requests()[0].status,
        403,
        "BadEnvironmentKeyInToken from the sandbox"
    );
    assert_eq!(w.apns.count(), 1, "production rang it");
    let gina = w.store().await.list("gina").await.unwrap();
    assert_eq!(gina[0].environment, Some(ApnsEnvironment::Production));
    daemon.stop().await;
}
