//! What a reload applies beyond the secrets: the HTTPS certificate renewed in place, the call
//! and credential limits, and a credential added by reload limited and metered exactly as one
//! configured at start. The daemon runs in-process on a real Redis, its configuration in a
//! file rewritten between reloads.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::json;
use support::api::{claims, http, sign};
use support::config_file::{register, reload, ConfigFile};
use support::daemon::TestDaemon;
use support::fixtures::fixture;
use support::scrape;
use support::world::World;
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};

const KEY: (&str, &str) = (
    "SK00000000000000000000000000000002",
    "new-api-key-secret-9876543210",
);
const ADMIN: &str = "admin-token-fedcba9876543210-reload";
/// The calls go to one callee far more often than the default limit allows.
const UNLIMITED: &str = "\n[limits]\ncalls_per_identity_per_min = 0\n";

/// Accepts any certificate: the test looks at which one the daemon presented.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// An HTTP/1.1 connection over TLS to `addr`, and the certificate the daemon presented.
async fn connect(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    CertificateDer<'static>,
) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut tcp = None;
    for _ in 0..200 {
        if let Ok(s) = TcpStream::connect(addr).await {
            tcp = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let name = ServerName::try_from("localhost").unwrap();
    let stream = connector.connect(name, tcp.unwrap()).await.unwrap();
    let presented = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    (sender, presented.into_owned())
}

async fn healthz(sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>) -> StatusCode {
    let request = Request::get("https://localhost/healthz")
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    response.into_body().collect().await.unwrap();
    status
}

/// The first certificate of the PEM file at `path`.
fn certificate_in(path: &Path) -> CertificateDer<'static> {
    let pem = std::fs::read(path).unwrap();
    let first = rustls_pemfile::certs(&mut pem.as_slice())
        .next()
        .unwrap()
        .unwrap();
    first.into_owned()
}

#[tokio::test]
async fn the_https_certificate_renewed_in_place_is_served_to_new_connections() {
    let w = World::new().await;
    let config = ConfigFile::new(&w);
    let (cert, key) = (
        config.dir.path().join("tls.pem"),
        config.dir.path().join("tls.key"),
    );
    std::fs::copy(fixture("localhost.pem"), &cert).unwrap();
    std::fs::copy(fixture("localhost.key"), &key).unwrap();
    let https = format!(
        "{UNLIMITED}\n[api]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        cert.display(),
        key.display()
    );
    config.write(&w, &[KEY], ADMIN, &https);
    let d = TestDaemon::start(config.settings());
    let api: SocketAddr = d.api_url().trim_start_matches("http://").parse().unwrap();
    let (mut before, presented) = connect(api).await;
    assert_eq!(presented, certificate_in(&fixture("localhost.pem")));
    assert_eq!(healthz(&mut before).await, StatusCode::OK);

    // certbot renews in place: same paths, new contents.
    std::fs::copy(fixture("renewed.pem"), &cert).unwrap();
    std::fs::copy(fixture("renewed.key"), &key).unwrap();
    let (status, report, _) = reload(&d, ADMIN).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert!(
        report["reloaded"]
            .as_array()
            .unwrap()
            .contains(&json!("api.tls_cert_file / api.tls_key_file")),
        "{report}"
    );
    assert_eq!(report["restart_required"], json!([]), "{report}");
    let (mut after, presented) = connect(api).await;
    assert_eq!(presented, certificate_in(&fixture("renewed.pem")));
    assert_eq!(healthz(&mut after).await, StatusCode::OK);
    assert_eq!(
        healthz(&mut before).await,
        StatusCode::OK,
        "a connection opened before the reload keeps going"
    );

    // A broken certificate is refused whole, naming the key; the renewed one stays.
    std::fs::write(&cert, "not a certificate\n").unwrap();
    let (status, refused, _) = reload(&d, ADMIN).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("api.tls_cert_file"), "{message}");
    // A key that does not fit the certificate names the key file.
    std::fs::copy(fixture("localhost.pem"), &cert).unwrap();
    let (status, refused, _) = reload(&d, ADMIN).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("api.tls_key_file"), "{message}");
    let (mut again, presented) = connect(api).await;
    assert_eq!(presented, certificate_in(&fixture("renewed.pem")));
    assert_eq!(healthz(&mut again).await, StatusCode::OK);
    d.stop().await;
}

/// Register `device` for `identity` once the daemon answers.
async fn registered(d: &TestDaemon, identity: &str, device: &str) {
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..100 {
        status = register(d, identity, KEY, device).await;
        if status == StatusCode::CREATED {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("registration of {device}: {status}");
}

#[tokio::test]
async fn a_lowered_call_limit_applies_under_a_stream_of_calls() {
    let mut w = World::new().await;
    let config = ConfigFile::new(&w);
    config.write(&w, &[KEY], ADMIN, UNLIMITED);
    let d = TestDaemon::start(config.settings());
    registered(&d, "alice", "fcm-alice").await;

    // A call every 20 ms; half way through, the limit drops to 3 a minute.
    let mut calls = w.redis.multiplexed().await;
    let prefix = w.prefix.clone();
    let (reloaded_tx, reloaded) = tokio::sync::watch::channel(false);
    let stream = tokio::spawn(async move {
        let mut sids = Vec::new();
        for i in 0..40 {
            let sid = format!("CA-stream-{i}");
            let after = *reloaded.borrow();
            support::daemon::xadd(
                &mut calls,
                &prefix,
                &[("type", "incoming"), ("to", "alice"), ("call_sid", &sid)],
            )
            .await;
            sids.push((sid, after));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sids
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    config.write(
        &w,
        &[KEY],
        ADMIN,
        "\n[limits]\ncalls_per_identity_per_min = 3\n",
    );
    let (status, report, _) = reload(&d, ADMIN).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["restart_required"], json!([]), "{report}");
    reloaded_tx.send(true).unwrap();
    let sids = stream.await.unwrap();

    let results = w.result_entries(sids.len(), Duration::from_secs(30)).await;
    assert_eq!(results.len(), sids.len());
    let outcome = |sid: &str| {
        results
            .iter()
            .find(|(_, r)| r["call_sid"] == sid)
            .map(|(_, r)| r["outcome"].clone())
            .unwrap()
    };
    let after: Vec<&str> = sids
        .iter()
        .filter(|(_, after)| *after)
        .map(|(s, _)| s.as_str())
        .collect();
    assert!(after.len() >= 10, "{} calls after the reload", after.len());
    let delivered = after.iter().filter(|s| outcome(s) == "delivered").count();
    assert!(
        delivered <= 3,
        "{delivered} calls rang after the limit fell to 3"
    );
    let dead = w.dead(after.len() - delivered).await;
    let limited = dead
        .iter()
        .filter(|d| d["reason"] == "rate_limited" && after.contains(&d["call_sid"].as_str()))
        .count();
    assert!(
        limited >= after.len() - 3,
        "{limited} of {} calls after the reload were rate_limited",
        after.len()
    );
    // The calls well before the reload all rang: nothing was limited before it.
    assert_eq!(outcome("CA-stream-0"), "delivered");
    assert_eq!(outcome("CA-stream-5"), "delivered");
    d.stop().await;
}

#[tokio::test]
async fn a_credential_added_by_reload_is_rate_limited_and_metered() {
    let mut w = World::new().await;
    let config = ConfigFile::new(&w);
    let account = config.service_account.clone();
    config.write(&w, &[KEY], ADMIN, UNLIMITED);
    let d = TestDaemon::start(config.settings());
    registered(&d, "alice", "fcm-alice").await;

    config.write_full(
        &w,
        &[KEY],
        ADMIN,
        &[
            ("CRfcm", &account, ""),
            ("CRfcm2", &account, "rate_limit_per_sec = 2"),
        ],
        UNLIMITED,
    );
    let (status, report, _) = reload(&d, ADMIN).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["credentials"]["added"], json!(["CRfcm2"]));
    let metrics = scrape::fetch(&d.admin_url()).await;
    let gauge = |m: &scrape::Scrape| {
        m.value(
            "callpush_provider_connections",
            &[("credential", "CRfcm2"), ("platform", "fcm")],
        )
    };
    assert!(
        gauge(&metrics).is_some(),
        "the new credential's connection gauge is shown"
    );

    let mut grant = claims("bob");
    grant["iss"] = KEY.0.into();
    grant["grants"]["voice"]["push_credential_sid"] = "CRfcm2".into();
    let bob = sign(&grant, KEY.1);
    let body = json!({"platform": "fcm", "device_token": "fcm-bob"});
    let path = "/v1/registrations";
    let reply = http(
        http::Method::POST,
        &d.api_url(),
        path,
        Some(&bob),
        Some(body),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);

    // Ten calls at once: two go at once (the burst), the rest one every half second.
    let started = Instant::now();
    for i in 0..10 {
        w.ring("bob", &format!("CA-burst-{i}")).await;
    }
    let results = w.result_entries(10, Duration::from_secs(30)).await;
    let took = started.elapsed();
    assert_eq!(results.len(), 10);
    assert!(
        results.iter().all(|(_, r)| r["outcome"] == "delivered"),
        "{results:?}"
    );
    assert!(
        took >= Duration::from_millis(2500),
        "10 pushes at 2/s took {took:?}: the new credential's rate limit did not hold"
    );
    // The sampler reads the new credential's connection every few seconds.
    let mut open = None;
    for _ in 0..40 {
        open = gauge(&scrape::fetch(&d.admin_url()).await);
        if open.is_some_and(|n| n >= 1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        open.is_some_and(|n| n >= 1.0),
        "the new credential's open connections are counted: {open:?}"
    );
    d.stop().await;
}
