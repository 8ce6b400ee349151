//! The binding feed's webhook (SPEC §11, `[bindings.feed]`): an app backend gets every binding
//! event POSTed, signed, in order, exactly once when it answers — through its own failures and
//! outages — without polling.

#[macro_use]
mod support;

on_both_backends!(a_backend_that_fails_twice_gets_every_event_once_in_order_and_signed,);

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use callpush::domain::{now_ms, Platform};
use support::fixtures::numbered_apns_token as apns_token;
use support::scrape;
use support::world::{Backend, World};

const SECRET: &str = "feed-secret-0123456789abcdef";

/// What the backend double took: each accepted POST's headers and body.
#[derive(Default)]
struct Double {
    /// Answer this many POSTs with 503 first.
    fail_first: usize,
    seen: usize,
    accepted: Vec<(HeaderMap, String)>,
}

type Shared = Arc<Mutex<Double>>;

async fn hook(State(state): State<Shared>, headers: HeaderMap, body: String) -> StatusCode {
    let mut s = state.lock().unwrap();
    s.seen += 1;
    if s.seen <= s.fail_first {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    s.accepted.push((headers, body));
    StatusCode::OK
}

fn app(state: Shared) -> Router {
    Router::new()
        .route("/callpush/bindings", post(hook))
        .with_state(state)
}

/// Serve the double on `listener` (HTTP/1.1, as most app backends speak).
fn serve(listener: std::net::TcpListener, state: Shared) {
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    tokio::spawn(async move { axum::serve(listener, app(state)).await });
}

/// Serve the double over TLS on `listener` (HTTP/1.1, the fixtures' `localhost` certificate,
/// signed by the test CA); the number of TLS handshakes that failed (the client refused the
/// certificate).
fn serve_tls(listener: std::net::TcpListener, state: Shared) -> Arc<AtomicUsize> {
    use support::fixtures::fixture;
    let acceptor =
        callpush::api::tls::ServedCert::load(&fixture("localhost.pem"), &fixture("localhost.key"))
            .unwrap()
            .acceptor();
    let refused = Arc::new(AtomicUsize::new(0));
    let counted = refused.clone();
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, app, refused) = (acceptor.clone(), app(state.clone()), counted.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    refused.fetch_add(1, Ordering::SeqCst);
                    return;
                };
                let service = hyper::service::service_fn(move |request| {
                    tower::ServiceExt::oneshot(app.clone(), request)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    refused
}

/// What a backend checks: the signature over `<timestamp>.<body>` with the shared secret, and a
/// timestamp close to its clock.
fn verify(headers: &HeaderMap, body: &str) {
    let header = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_string();
    let timestamp = header("x-callpush-timestamp");
    let age = (now_ms() / 1000).abs_diff(timestamp.parse::<u64>().unwrap());
    assert!(age < 300, "a timestamp within 5 minutes: {timestamp}");
    let signature = header("x-callpush-signature");
    let tag = hex::decode(signature.strip_prefix("v1=").unwrap()).unwrap();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let signed = format!("{timestamp}.{body}");
    ring::hmac::verify(&key, signed.as_bytes(), &tag).expect("the signature verifies");
}

/// A world whose daemon POSTs the feed to `addr`.
async fn world(backend: Backend, addr: SocketAddr, dir: &std::path::Path) -> World {
    World::on(backend, |s| webhook_to(s, &format!("http://{addr}"), dir)).await
}

/// Settings that POST the feed to `origin`'s `/callpush/bindings`, signed with [`SECRET`].
fn webhook_to(s: &mut callpush::config::Settings, origin: &str, dir: &std::path::Path) {
    let secret_file = dir.join("feed-secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    s.bindings.feed.webhook_url = Some(format!("{origin}/callpush/bindings"));
    s.bindings.feed.secret_file = Some(secret_file);
    s.bindings.feed.max_backoff_ms = 300;
}

/// Wait until the double accepted `n` events (or 20 s passed); their bodies as JSON.
async fn accepted(state: &Shared, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = state.lock().unwrap().accepted.len();
        if got >= n || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = state.lock().unwrap();
    for (headers, body) in &s.accepted {
        verify(headers, body);
    }
    s.accepted
        .iter()
        .map(|(_, body)| serde_json::from_str(body).unwrap())
        .collect()
}

/// The changes the tests make: alice's two phones, one moving to bob, bob's refresh.
async fn changes(w: &World) {
    w.register("alice", Platform::Apns, &apns_token(1)).await;
    w.register("alice", Platform::Fcm, "fcm-alice").await;
    w.register("bob", Platform::Apns, &apns_token(1)).await;
    w.register("bob", Platform::Apns, &apns_token(1)).await;
}

/// The feed as the backend should have received it: (id, event, identity), in feed order.
async fn feed(w: &World) -> Vec<(String, String, String)> {
    let events = w.store().await.feed(None, 100).await.unwrap();
    events
        .into_iter()
        .map(|e| (e.id, e.event, e.identity))
        .collect()
}

fn received(bodies: &[serde_json::Value]) -> Vec<(String, String, String)> {
    bodies
        .iter()
        .map(|b| {
            let s = |k: &str| b[k].as_str().unwrap().to_string();
            (s("id"), s("event"), s("identity"))
        })
        .collect()
}

async fn a_backend_that_fails_twice_gets_every_event_once_in_order_and_signed(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let state: Shared = Arc::new(Mutex::new(Double {
        fail_first: 2,
        ..Default::default()
    }));
    serve(listener, state.clone());
    let w = world(backend, addr, dir.path()).await;
    changes(&w).await;
    let daemon = w.start_daemon();
    let want = feed(&w).await;
    assert_eq!(want.len(), 5, "{want:?}");
    let got = received(&accepted(&state, want.len()).await);
    assert_eq!(got, want, "every event once, in feed order");
    assert_eq!(
        state.lock().unwrap().seen,
        want.len() + 2,
        "two refusals, retried"
    );
    // The dashboard sees the same: every event delivered, two refusals on the way.
    let posts = |result: &'static str| {
        let admin = daemon.admin_url();
        async move {
            scrape::fetch(&admin).await.value(
                "callpush_binding_feed_webhook_posts_total",
                &[("result", result)],
            )
        }
    };
    assert_eq!(posts("delivered").await, Some(want.len() as f64));
    assert_eq!(posts("refused").await, Some(2.0));
    assert_eq!(posts("unreachable").await, Some(0.0));
    // A change made while the daemon runs is POSTed too.
    w.register("carol", Platform::Fcm, "fcm-carol").await;
    let got = received(&accepted(&state, want.len() + 1).await);
    assert_eq!(got.last().unwrap().2, "carol");
    assert_eq!(got.len(), want.len() + 1);
    daemon.stop().await;
}

/// The backend is down (nothing listens) while changes happen; when it is back it gets all of
/// them, once, in order. The daemon never gives up on an event (its waits stop growing at
/// `max_backoff_ms`), so the length of the outage changes nothing but the wait.
#[tokio::test]
async fn a_backend_down_for_a_while_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let w = world(Backend::Redis, addr, dir.path()).await;
    let daemon = w.start_daemon();
    changes(&w).await;
    // Several attempts fail on a refused connection meanwhile.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let state: Shared = Arc::default();
    serve(std::net::TcpListener::bind(addr).unwrap(), state.clone());
    let want = feed(&w).await;
    let got = received(&accepted(&state, want.len()).await);
    assert_eq!(got, want);
    daemon.stop().await;

    // A restarted daemon starts where the last one stopped: nothing is sent twice.
    let daemon = w.start_daemon();
    w.register("dave", Platform::Fcm, "fcm-dave").await;
    let got = received(&accepted(&state, want.len() + 1).await);
    assert_eq!(got.len(), want.len() + 1, "{got:?}");
    assert_eq!(got.last().unwrap().2, "dave");
    daemon.stop().await;
}

/// An `https://` backend: with its CA in `bindings.feed.ca_file` the daemon verifies its
/// certificate and delivers every event; without it (the certificate is untrusted) nothing is
/// delivered, every attempt fails the handshake, and the events wait in the feed until the
/// operator trusts the CA.
#[tokio::test]
async fn an_https_backend_gets_events_only_over_a_certificate_the_daemon_trusts() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let state: Shared = Arc::default();
    let refused = serve_tls(listener, state.clone());
    // The certificate names `localhost`; the test CA is no system root.
    let origin = format!("https://localhost:{port}");
    let mut w = World::on(Backend::Redis, |s| webhook_to(s, &origin, dir.path())).await;
    changes(&w).await;
    let want = feed(&w).await;

    let daemon = w.start_daemon();
    let deadline = Instant::now() + Duration::from_secs(20);
    while refused.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What an operator sees: POSTs that never reached the backend, none delivered.
    let metrics = scrape::fetch(&daemon.admin_url()).await;
    let posts = |result| {
        metrics.value(
            "callpush_binding_feed_webhook_posts_total",
            &[("result", result)],
        )
    };
    assert!(
        posts("unreachable").unwrap_or(0.0) >= 1.0,
        "{}",
        metrics.text
    );
    assert_eq!(posts("delivered"), Some(0.0));
    daemon.stop().await;
    assert!(
        refused.load(Ordering::SeqCst) >= 2,
        "the daemon tried, and retried, and refused the certificate each time"
    );
    assert_eq!(state.lock().unwrap().seen, 0, "nothing delivered");
    let store = w.store().await;
    assert_eq!(
        store.feed_cursor().await.unwrap(),
        None,
        "nothing counted as delivered"
    );
    assert_eq!(feed(&w).await, want, "the events wait in the feed");

    // The operator trusts the backend's CA: everything arrives, once, in order, signed.
    w.settings.bindings.feed.ca_file = Some(support::fixtures::fixture("test_ca.pem"));
    let daemon = w.start_daemon();
    let got = received(&accepted(&state, want.len()).await);
    assert_eq!(got, want);
    daemon.stop().await;
}

/// A webhook without a signing secret is refused at start, naming the key.
#[test]
fn a_webhook_without_a_secret_is_refused() {
    let text = "[bindings.feed]\nwebhook_url = \"https://backend.example.com/hook\"\n";
    let err = callpush::config::Settings::from_toml_with_env(text, Vec::new()).unwrap_err();
    assert!(
        err.to_string().contains("bindings.feed.secret_file"),
        "{err}"
    );
}
