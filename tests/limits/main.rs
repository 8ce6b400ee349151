//! The listeners' limits (`[api.limits]`, `[admin.limits]`), HTTPS on the public listener and
//! the admin listener's loopback rule, against the real daemon on a real Redis, through real
//! sockets: what a hostile or broken client notices (docs/security.md, "Limits and secrets").

#[path = "../support/mod.rs"]
mod support;

mod tls;

use std::time::Duration;

use bytes::Bytes;
use callpush::config::{ListenerLimits, Settings};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use support::api::{add_auth, connect_http1, http, token, ADMIN_TOKEN};
use support::daemon::TestDaemon;
use support::world::{Backend, World};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for the daemon to answer or close before it fails; never asserted.
const PATIENCE: Duration = Duration::from_secs(20);

/// A daemon on Redis with auth and the tweaked settings; the world and the secrets' directory
/// live as long as the test holds them.
async fn daemon(tweak: impl FnOnce(&mut Settings)) -> (World, TestDaemon, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let world = World::on(Backend::Redis, |s| {
        add_auth(s, dir.path());
        tweak(s);
    })
    .await;
    let daemon = TestDaemon::start(world.settings.clone());
    wait_healthy(&daemon.admin_url()).await;
    (world, daemon, dir)
}

async fn wait_healthy(base: &str) {
    for _ in 0..200 {
        if TcpStream::connect(base.trim_start_matches("http://"))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A settings tweak that changes both listeners' limits the same way.
fn both(change: impl Fn(&mut ListenerLimits)) -> impl FnOnce(&mut Settings) {
    move |s| {
        change(&mut s.api.limits);
        change(&mut s.admin.limits);
    }
}

fn addr(base: &str) -> String {
    base.trim_start_matches("http://").to_string()
}

/// What came back on a raw connection before the daemon closed it.
struct Raw {
    /// The status, when a response came back.
    status: Option<u16>,
    /// The response body parsed as JSON (`Null` when none or not JSON).
    body: Value,
    /// The whole text read.
    text: String,
}

/// Read until the daemon closes the connection (a reset counts as closed).
async fn read_until_closed(stream: &mut TcpStream) -> Raw {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 8192];
    let read = tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the daemon kept the connection open");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok());
    let body = text
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str(body).ok())
        .unwrap_or(Value::Null);
    Raw { status, body, text }
}

/// Send `request` as is on a new connection and read until the daemon closes it.
async fn raw(base: &str, request: &[u8]) -> Raw {
    let mut stream = TcpStream::connect(addr(base)).await.unwrap();
    // The daemon may answer and close before reading everything (431): a failed write is fine.
    let _ = stream.write_all(request).await;
    read_until_closed(&mut stream).await
}

fn get_with_header(bytes: usize) -> Vec<u8> {
    format!(
        "GET /healthz HTTP/1.1\r\nhost: callpush\r\nx-padding: {}\r\nconnection: close\r\n\r\n",
        "a".repeat(bytes)
    )
    .into_bytes()
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn headers_over_the_limit_get_431_and_a_64_kib_header_too() {
    let (_w, d, _dir) = daemon(|_| {}).await;
    for base in [d.api_url(), d.admin_url()] {
        let ok = raw(&base, &get_with_header(1024)).await;
        assert_eq!(ok.status, Some(200), "{}", ok.text);
        let over = raw(&base, &get_with_header(20 * 1024)).await;
        assert_eq!(over.status, Some(431), "{}", over.text);
        assert_eq!(code(&over.body), "headers_too_large", "{}", over.text);
        let huge = raw(&base, &get_with_header(64 * 1024)).await;
        assert_eq!(huge.status, Some(431), "{}", huge.text);
    }
    d.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_sending_headers_or_sends_none_is_disconnected() {
    let (_w, d, _dir) = daemon(both(|l| l.header_read_timeout_ms = 300)).await;
    for base in [d.api_url(), d.admin_url()] {
        let half = raw(
            &base,
            b"GET /healthz HTTP/1.1\r\nhost: callpush\r\nx-slow: ",
        )
        .await;
        assert!(
            half.status.is_none_or(|s| s >= 400),
            "a half-sent request was answered: {}",
            half.text
        );
        let silent = raw(&base, b"").await;
        assert!(silent.status.is_none_or(|s| s >= 400), "{}", silent.text);
    }
    d.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_sending_its_body_gets_408_and_is_disconnected() {
    let (_w, d, _dir) = daemon(both(|l| l.body_read_timeout_ms = 300)).await;
    let cases = [
        (d.api_url(), "/v1/registrations", token("alice")),
        (d.admin_url(), "/v1/calls", ADMIN_TOKEN.to_string()),
    ];
    for (base, path, bearer) in cases {
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: callpush\r\nauthorization: Bearer {bearer}\r\n\
             content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"platform\": "
        );
        let slow = raw(&base, head.as_bytes()).await;
        assert_eq!(slow.status, Some(408), "{path}: {}", slow.text);
        assert_eq!(code(&slow.body), "request_timeout", "{}", slow.text);
    }
    d.stop().await;
}

/// A GET /healthz over a kept-alive HTTP/1.1 connection; the sender keeps it open.
async fn open_idle(base: &str) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let (authority, mut sender) = connect_http1::<Full<Bytes>>(base).await;
    let request = Request::get("/healthz")
        .header("host", authority)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.into_body().collect().await.unwrap();
    sender
}

async fn scrape(admin: &str) -> String {
    let reply = raw(
        admin,
        b"GET /metrics HTTP/1.1\r\nhost: callpush\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status, Some(200));
    reply.text
}

#[tokio::test]
async fn connections_over_the_limit_get_503_until_one_closes() {
    let (_w, d, _dir) = daemon(|s| s.api.limits.max_connections = 2).await;
    let first = open_idle(&d.api_url()).await;
    let _second = open_idle(&d.api_url()).await;
    let healthz = b"GET /healthz HTTP/1.1\r\nhost: callpush\r\nconnection: close\r\n\r\n";
    let refused = raw(&d.api_url(), healthz).await;
    assert_eq!(refused.status, Some(503), "{}", refused.text);
    assert_eq!(code(&refused.body), "unavailable", "{}", refused.text);
    assert!(refused.text.contains("retry-after: 1"), "{}", refused.text);
    // The admin listener counts its own connections.
    let metrics = scrape(&d.admin_url()).await;
    assert!(
        metrics.contains(r#"callpush_http_connections_refused_total{listener="public"} 1"#),
        "{metrics}"
    );
    drop(first);
    let mut status = None;
    for _ in 0..200 {
        status = raw(&d.api_url(), healthz).await.status;
        if status == Some(200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(status, Some(200), "a closed connection frees its place");
    d.stop().await;
}

#[tokio::test]
async fn requests_over_max_concurrent_requests_get_503() {
    let (_w, d, _dir) = daemon(|s| s.api.limits.max_concurrent_requests = 1).await;
    // A registration whose body is slow to come holds the only place.
    let mut slow = TcpStream::connect(addr(&d.api_url())).await.unwrap();
    let body = json!({"platform": "fcm", "device_token": "fcm-tok-1"}).to_string();
    let head = format!(
        "POST /v1/registrations HTTP/1.1\r\nhost: callpush\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        token("alice"),
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let healthz = b"GET /healthz HTTP/1.1\r\nhost: callpush\r\nconnection: close\r\n\r\n";
    let mut busy = None;
    for _ in 0..200 {
        let reply = raw(&d.api_url(), healthz).await;
        if reply.status == Some(503) {
            busy = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let busy = busy.expect("a second request while the first holds the only place gets 503");
    assert_eq!(code(&busy.body), "unavailable", "{}", busy.text);
    assert!(busy.text.contains("retry-after: 1"), "{}", busy.text);
    // The admin listener has its own places.
    assert_eq!(
        raw(&d.admin_url(), healthz).await.status,
        Some(200),
        "admin is not limited by the public listener's requests"
    );
    slow.write_all(body.as_bytes()).await.unwrap();
    let done = read_until_closed(&mut slow).await;
    assert_eq!(done.status, Some(201), "{}", done.text);
    assert_eq!(raw(&d.api_url(), healthz).await.status, Some(200));
    d.stop().await;
}

#[tokio::test]
async fn a_non_loopback_admin_listener_needs_an_admin_token() {
    let world = World::on(Backend::Memory, |_| {}).await;
    let listeners = || async {
        callpush::daemon::Listeners {
            api: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            admin: tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap(),
        }
    };
    let settings = world.settings.clone();
    let backends = callpush::daemon::memory_backend(&settings);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let err = callpush::daemon::run_with(settings, backends, listeners().await, shutdown)
        .await
        .expect_err("an unguarded admin listener on 0.0.0.0 is refused");
    let msg = err.to_string();
    assert!(
        msg.contains("admin.listen") && msg.contains("admin.token_file"),
        "{msg}"
    );
    // With a token it starts, and answers on the loopback address too.
    let dir = tempfile::tempdir().unwrap();
    let mut settings = world.settings.clone();
    add_auth(&mut settings, dir.path());
    let backends = callpush::daemon::memory_backend(&settings);
    let listeners = listeners().await;
    let admin = format!(
        "http://127.0.0.1:{}",
        listeners.admin.local_addr().unwrap().port()
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(callpush::daemon::run_with(
        settings,
        backends,
        listeners,
        shutdown.clone(),
    ));
    wait_healthy(&admin).await;
    let reply = http(Method::GET, &admin, "/healthz", None, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    shutdown.cancel();
    running.await.unwrap().unwrap();
}

async fn status_of(
    response: Result<http::Response<hyper::body::Incoming>, hyper::Error>,
) -> StatusCode {
    let response = response.unwrap();
    let status = response.status();
    response.into_body().collect().await.unwrap();
    status
}

#[tokio::test]
async fn an_h2_connection_is_told_its_limit_of_requests_at_once() {
    let (_w, d, _dir) = daemon(|s| {
        s.api.limits.max_requests_per_connection = 3;
        s.admin.limits.max_requests_per_connection = 5;
    })
    .await;
    for (base, limit) in [(d.api_url(), 3), (d.admin_url(), 5)] {
        let tcp = TcpStream::connect(addr(&base)).await.unwrap();
        let (client, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(connection);
        let mut client = client.ready().await.unwrap();
        let request = Request::get("http://callpush/healthz").body(()).unwrap();
        let (response, _) = client.send_request(request, true).unwrap();
        assert_eq!(response.await.unwrap().status(), StatusCode::OK);
        // The server's SETTINGS arrived before its answer.
        assert_eq!(client.current_max_send_streams(), limit, "{base}");
    }
    d.stop().await;
}

#[tokio::test]
async fn a_silent_connection_does_not_hold_up_shutdown() {
    // Far longer than `TestDaemon::stop` waits: only closing it at shutdown lets the stop pass.
    let (_w, d, _dir) = daemon(both(|l| l.header_read_timeout_ms = 600_000)).await;
    let mut silent = TcpStream::connect(addr(&d.api_url())).await.unwrap();
    let (_, mut idle) = connect_http1::<Full<Bytes>>(&d.admin_url()).await;
    let request = Request::get("/healthz")
        .header("host", "callpush")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(
        status_of(idle.send_request(request).await).await,
        StatusCode::OK
    );
    d.stop().await;
    let after = read_until_closed(&mut silent).await;
    assert_eq!(after.status, None, "{}", after.text);
}
