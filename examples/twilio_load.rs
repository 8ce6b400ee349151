//! A load measurement of the webhook (it is on Twilio's critical path):
//! `cargo run --release --example twilio_load`. Concurrent keep-alive HTTP/1.1
//! clients post notifications as Twilio posts them — JSON, `bodySHA256` in the query, signed
//! with the auth token, an `I-Twilio-Idempotency-Token` header, distinct call sids and message
//! ids so each one really enqueues — for an identity with one APNs device, to a real daemon on
//! Redis that pushes every one meanwhile; prints requests per second and the p50/p99/max answer
//! times. Every answer must be 200. `TWILIO_LOAD_CLIENTS` sets the concurrency,
//! `TWILIO_LOAD_FORM=1` posts forms instead.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use callpush::domain::Platform;
use http::Request;
use http_body_util::{BodyExt, Full};
use support::api::{add_auth, connect_http1};
use support::daemon::TestDaemon;
use support::twilio::{
    add_twilio, form_encode, json_body, json_query, json_signature, notification, pairs, signature,
    AUTH_TOKEN, ROUTE, WEBHOOK_URL,
};
use support::world::World;

/// Concurrent clients (`TWILIO_LOAD_CLIENTS`, default 32); 8000 requests in all.
fn clients() -> usize {
    std::env::var("TWILIO_LOAD_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32)
}
const TOTAL: usize = 8000;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let w = World::with(|s| {
        add_auth(s, dir.path());
        add_twilio(s, dir.path(), &[AUTH_TOKEN]);
    })
    .await;
    w.register("bob", Platform::Apns, &"ab".repeat(32)).await;
    let daemon = TestDaemon::start(w.settings.clone());
    let base = daemon.api_url();
    let started = Instant::now();
    let (n_clients, mut clients) = (clients(), Vec::new());
    let form = std::env::var("TWILIO_LOAD_FORM").is_ok_and(|v| v == "1");
    let per_client = TOTAL / n_clients;
    for c in 0..n_clients {
        let base = base.clone();
        clients.push(tokio::spawn(async move {
            let (authority, mut sender) = connect_http1::<Full<bytes::Bytes>>(&base).await;
            let mut latencies = Vec::with_capacity(per_client);
            for i in 0..per_client {
                let id = format!("{c}-{i}");
                let fields = notification(&format!("CAload{id}"), &format!("RMload{id}"), "bob");
                let req = if form {
                    let params = pairs(&fields);
                    Request::post(ROUTE)
                        .header("content-type", "application/x-www-form-urlencoded")
                        .header(
                            "x-twilio-signature",
                            signature(AUTH_TOKEN, WEBHOOK_URL, &params),
                        )
                        .body(Full::new(bytes::Bytes::from(form_encode(&params))))
                } else {
                    let body = json_body(&fields);
                    Request::post(format!("{ROUTE}?{}", json_query(&body)))
                        .header("content-type", "application/json")
                        .header(
                            "x-twilio-signature",
                            json_signature(AUTH_TOKEN, WEBHOOK_URL, &body),
                        )
                        .header("i-twilio-idempotency-token", format!("idem-{id}"))
                        .body(Full::new(bytes::Bytes::from(body)))
                };
                let mut req = req.unwrap();
                req.headers_mut().insert("host", authority.parse().unwrap());
                sender.ready().await.unwrap();
                let sent = Instant::now();
                let response = sender.send_request(req).await.unwrap();
                let status = response.status();
                response.into_body().collect().await.unwrap();
                latencies.push(sent.elapsed());
                assert_eq!(status, 200);
            }
            latencies
        }));
    }
    let mut all: Vec<Duration> = Vec::new();
    for c in clients {
        all.extend(c.await.unwrap());
    }
    let elapsed = started.elapsed();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    println!(
        "{} {} webhooks, {n_clients} clients: {:.0}/s; p50 {:?}, p99 {:?}, max {:?}",
        all.len(),
        if form { "form" } else { "JSON" },
        all.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        all[all.len() - 1]
    );
    daemon.stop().await;
}
