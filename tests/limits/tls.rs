//! HTTPS on the public listener: HTTP/1.1 and h2 by ALPN with the test CA's certificate, plain
//! HTTP refused on that port, the admin listener still plain.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_rustls::rustls;

use super::{addr, daemon, raw, status_of};
use crate::support::api::{http, token};
use crate::support::fixtures::fixture;

/// A TLS connection to `addr` trusting the test CA, offering `alpn`.
async fn tls(addr: SocketAddr, alpn: &[u8]) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(fixture("test_ca.pem")).unwrap();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let stream = connector.connect(name, tcp).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(alpn));
    stream
}

fn registration(device: &str) -> Request<Full<Bytes>> {
    Request::post("https://localhost/v1/registrations")
        .header("authorization", format!("Bearer {}", token("alice")))
        .header("content-type", "application/json")
        .header("host", "localhost")
        .body(Full::new(Bytes::from(
            json!({"platform": "fcm", "device_token": device}).to_string(),
        )))
        .unwrap()
}

fn healthz() -> Request<Full<Bytes>> {
    Request::get("https://localhost/healthz")
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap()
}
#[tokio::test]
async fn the_public_listener_serves_https_over_http1_and_h2() {
    let (_w, d, _dir) = daemon(|s| {
        s.api.tls_cert_file = Some(fixture("localhost.pem"));
        s.api.tls_key_file = Some(fixture("localhost.key"));
    })
    .await;
    let api: SocketAddr = addr(&d.api_url()).parse().unwrap();

    let io = TokioIo::new(tls(api, b"http/1.1").await);
    let (mut h1, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    assert_eq!(
        status_of(h1.send_request(healthz()).await).await,
        StatusCode::OK
    );
    assert_eq!(
        status_of(h1.send_request(registration("fcm-tls-h1")).await).await,
        StatusCode::CREATED
    );

    let io = TokioIo::new(tls(api, b"h2").await);
    let (mut h2, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(conn);
    assert_eq!(
        status_of(h2.send_request(healthz()).await).await,
        StatusCode::OK
    );
    assert_eq!(
        status_of(h2.send_request(registration("fcm-tls-h2")).await).await,
        StatusCode::CREATED
    );

    // Plain HTTP on the HTTPS port gets no HTTP answer; the admin listener stays plain.
    let plain = raw(
        &d.api_url(),
        b"GET /healthz HTTP/1.1\r\nhost: callpush\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(plain.status, None, "{}", plain.text);
    let admin = http(Method::GET, &d.admin_url(), "/healthz", None, None).await;
    assert_eq!(admin.status, StatusCode::OK);
    d.stop().await;
}
