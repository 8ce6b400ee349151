//! The retry table, and keep-alive PINGs against a raw h2 server that can stop answering.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::Reason;
use http::Request;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

use super::exchange::{decide, Failed, Next};
use super::{H2Pool, PoolOptions, TransportError};

#[test]
fn only_requests_the_peer_did_not_process_are_sent_again() {
    use Failed::*;
    let cases = [
        // (failed, attempts left, reconnected) → next
        ((Refused, true, false), Next::SameConnection),
        ((Refused, true, true), Next::SameConnection),
        ((Unsent, true, false), Next::NewConnection),
        ((AboveGoAway, true, false), Next::NewConnection),
        ((Unsent, true, true), Next::GiveUp),
        ((AboveGoAway, true, true), Next::GiveUp),
        ((Other, true, false), Next::GiveUp),
        ((Refused, false, false), Next::GiveUp),
        ((Unsent, false, false), Next::GiveUp),
    ];
    for ((failed, attempts_left, reconnected), want) in cases {
        assert_eq!(
            decide(failed, attempts_left, reconnected),
            want,
            "{failed:?}, attempts left {attempts_left}, reconnected {reconnected}"
        );
    }
}

/// h2 builds its connection errors itself; a stream reset's reason is all a test can make.
#[test]
fn a_refused_stream_is_told_from_other_resets() {
    let refused = h2::Error::from(Reason::REFUSED_STREAM);
    assert_eq!(Failed::of(&refused, true), Failed::Refused);
    let internal = h2::Error::from(Reason::INTERNAL_ERROR);
    assert_eq!(Failed::of(&internal, true), Failed::Other);
}

/// An HTTP/2 server answering `200` to every request. Sending `true` on the returned channel
/// freezes the connections open at that moment: they stay open but read nothing and answer
/// nothing, PINGs included, like a peer behind a dead NAT mapping. Later connections work.
async fn freezable_server() -> (String, Arc<AtomicUsize>, watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let (freeze, frozen) = watch::channel(false);
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            let mut frozen = frozen.clone();
            frozen.mark_unchanged();
            tokio::spawn(async move {
                let mut conn = h2::server::handshake(socket).await.unwrap();
                loop {
                    tokio::select! {
                        _ = frozen.changed() => std::future::pending::<()>().await,
                        request = conn.accept() => {
                            let Some(Ok((_, mut respond))) = request else { return };
                            let _ = respond.send_response(http::Response::new(()), true);
                        }
                    }
                }
            });
        }
    });
    (endpoint, accepted, freeze)
}

/// A one-connection pool that PINGs every 200 ms.
fn pinging_pool(endpoint: &str, request_timeout: Duration) -> H2Pool {
    let options = PoolOptions {
        connections: 1,
        request_timeout,
        keep_alive_interval: Duration::from_millis(200),
        ca_file: None,
    };
    H2Pool::new(endpoint, options).unwrap()
}

fn ping() -> Request<Bytes> {
    Request::get("/ping").body(Bytes::new()).unwrap()
}

/// A connection whose peer went silent while idle is noticed by its keep-alive PING and
/// closed once the PONG is 10 s late, so the next push opens a new connection at once instead
/// of waiting out its request timeout on the dead one.
#[tokio::test]
async fn an_idle_connection_whose_peer_went_silent_is_replaced() {
    let (endpoint, accepted, freeze) = freezable_server().await;
    let pool = pinging_pool(&endpoint, Duration::from_secs(5));
    assert_eq!(pool.send(ping()).await.unwrap().status, 200);
    // Answered PINGs keep an idle connection.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(pool.open_connections(), 1);

    freeze.send(true).unwrap();
    let frozen_at = Instant::now();
    while pool.open_connections() > 0 {
        assert!(
            frozen_at.elapsed() < Duration::from_secs(15),
            "the silent connection is still open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(frozen_at.elapsed() >= Duration::from_secs(10));

    let started = Instant::now();
    assert_eq!(pool.send(ping()).await.unwrap().status, 200);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

/// A request in flight on a connection that goes silent is not resent elsewhere (the peer may
/// have it): it fails as a connection error when the PONG is late, before its own timeout.
#[tokio::test]
async fn a_request_on_a_silent_connection_fails_when_the_pong_is_late() {
    let (endpoint, accepted, freeze) = freezable_server().await;
    let pool = pinging_pool(&endpoint, Duration::from_secs(30));
    assert_eq!(pool.send(ping()).await.unwrap().status, 200);
    freeze.send(true).unwrap();
    let started = Instant::now();
    let error = pool.send(ping()).await.unwrap_err();
    assert!(matches!(error, TransportError::Connection(_)), "{error}");
    assert!(started.elapsed() < Duration::from_secs(12));
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

/// A request the peer refused (REFUSED_STREAM) goes again as `again` builds it, not as a copy
/// of the first; one that cannot be built again ends with the refusal.
#[tokio::test]
async fn a_refused_request_is_sent_again_as_rebuilt() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let mut conn = h2::server::handshake(socket).await.unwrap();
        // Every other stream is refused; the rest are answered 200 when rebuilt.
        let mut refuse = true;
        while let Some(Ok((request, mut respond))) = conn.accept().await {
            if refuse {
                respond.send_reset(Reason::REFUSED_STREAM);
            } else {
                let status = if request.uri().path() == "/again" {
                    200
                } else {
                    500
                };
                let response = http::Response::builder().status(status).body(()).unwrap();
                respond.send_response(response, true).unwrap();
            }
            refuse = !refuse;
        }
    });
    let options = PoolOptions {
        connections: 1,
        ..PoolOptions::default()
    };
    let pool = H2Pool::new(&endpoint, options).unwrap();
    let rebuilt = AtomicUsize::new(0);
    let again = || {
        rebuilt.fetch_add(1, Ordering::SeqCst);
        Some(Request::get("/again").body(Bytes::new()).unwrap())
    };
    let response = pool.send_rebuilding(ping(), again).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(rebuilt.load(Ordering::SeqCst), 1);

    let error = pool.send_rebuilding(ping(), || None).await.unwrap_err();
    assert!(matches!(error, TransportError::Connection(_)), "{error}");
}
