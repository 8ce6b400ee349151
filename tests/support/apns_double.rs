//! The APNs simulator of `callpush_sim` with the test identity: the fixture key
//! (`tests/fixtures/apns_auth_key.p8`), team `TEAM123456`, key `KEY1234567`, topic
//! `com.example.app.voip`; h2c, or TLS with the test CA's localhost certificate. Scripting and
//! recording are the simulator's own (`script`, `set_default`, `requests`, `wait_for`, …).
//!
//! ```ignore
//! let apns = ApnsDouble::start(DoubleOptions::default()).await;
//! let provider = ApnsProvider::new(&apns.credential("CRapns"))?;
//! apns.script(&token, vec![Answer::error(503, "ServiceUnavailable"), Answer::ok()]);
//! ```

use std::ops::Deref;

use callpush::domain::ApnsEnvironment;
use callpush_sim::{ApnsOptions, ApnsSim, Environment, Serving, TlsIdentity};

pub use super::fixtures::fixture;
#[allow(unused_imports)]
pub use callpush_sim::{ApnsAnswer as Answer, Recorded};

/// Who the double is: the one topic, team and key it accepts.
#[derive(Debug, Clone)]
pub struct DoubleOptions {
    /// The `apns-topic` pushes must carry (`<bundle_id>.voip`).
    pub topic: String,
    /// The provider token's `iss`.
    pub team_id: String,
    /// The provider token's `kid`.
    pub key_id: String,
    /// The `SETTINGS_MAX_CONCURRENT_STREAMS` each connection advertises (Apple's is 1000).
    pub max_concurrent_streams: u32,
    /// The environment the double plays (tokens of the other, `deb…`, get BadDeviceToken).
    pub environment: ApnsEnvironment,
}

impl Default for DoubleOptions {
    fn default() -> Self {
        DoubleOptions {
            topic: "com.example.app.voip".into(),
            team_id: "TEAM123456".into(),
            key_id: "KEY1234567".into(),
            max_concurrent_streams: 1000,
            environment: Default::default(),
        }
    }
}

/// The running simulator (every method of [`ApnsSim`] through `Deref`); it stops when dropped.
pub struct ApnsDouble {
    sim: ApnsSim,
    tls: bool,
}

impl Deref for ApnsDouble {
    type Target = ApnsSim;

    fn deref(&self) -> &ApnsSim {
        &self.sim
    }
}

impl ApnsDouble {
    /// Start an h2c (HTTP/2 without TLS) double on 127.0.0.1, port chosen by the system.
    pub async fn start(opts: DoubleOptions) -> Self {
        Self::start_inner(opts, None).await
    }

    /// Start a TLS double (ALPN `h2`, `tests/fixtures/localhost.pem`, signed by `test_ca.pem`).
    pub async fn start_tls(opts: DoubleOptions) -> Self {
        let read = |name| std::fs::read_to_string(fixture(name)).unwrap();
        let identity = TlsIdentity {
            cert_pem: read("localhost.pem"),
            key_pem: read("localhost.key"),
        };
        Self::start_inner(opts, Some(identity)).await
    }

    async fn start_inner(opts: DoubleOptions, tls: Option<TlsIdentity>) -> Self {
        let is_tls = tls.is_some();
        let sim = ApnsSim::start(ApnsOptions {
            public_key_pem: std::fs::read_to_string(fixture("apns_auth_key.pub.pem")).unwrap(),
            team_id: opts.team_id,
            key_id: opts.key_id,
            topic: opts.topic,
            environment: match opts.environment {
                ApnsEnvironment::Production => Environment::Production,
                ApnsEnvironment::Sandbox => Environment::Sandbox,
            },
            serve: Serving {
                max_concurrent_streams: opts.max_concurrent_streams,
                tls,
                ..Serving::default()
            },
        })
        .await
        .expect("start the APNs simulator");
        ApnsDouble { sim, tls: is_tls }
    }

    /// An APNs credential pointed at this double with the fixture key, bundle id
    /// `com.example.app`, team `TEAM123456`, key `KEY1234567` (and the test CA for TLS).
    pub fn credential(&self, sid: &str) -> callpush::config::ApnsCredential {
        callpush::config::ApnsCredential {
            sid: sid.to_string(),
            bundle_id: "com.example.app".into(),
            team_id: "TEAM123456".into(),
            key_id: "KEY1234567".into(),
            key_file: fixture("apns_auth_key.p8"),
            environment: match self.environment() {
                Environment::Production => ApnsEnvironment::Production,
                Environment::Sandbox => ApnsEnvironment::Sandbox,
            },
            environments: None,
            endpoint: Some(self.url()),
            sandbox_endpoint: None,
            ca_file: self.tls.then(|| fixture("test_ca.pem")),
            send_cancel: false,
            connections: 2,
            request_timeout_ms: 5_000,
            rate_limit_per_sec: None,
            payload: Default::default(),
        }
    }
}
