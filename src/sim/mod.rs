//! Simulated APNs and FCM (`callpush dev`): real HTTP/2 servers (h2c on 127.0.0.1, port 0)
//! that the real provider clients talk to, so the provider JWT, the OAuth flow, the payloads
//! and the classifiers all run. They check requests as Apple and Google do (signatures, key id,
//! issuer, topic, push type, project, bearer, payload shape and size) and answer with the real
//! statuses and bodies. The code path to them is only configuration: an APNs `endpoint`, an FCM
//! `base_url` and `token_uri`.
//!
//! What a device token answers is chosen by its first characters (hex, so they make valid APNs
//! tokens too) — see [`Behaviour`]. Every push is logged in one line at `info`, target
//! `callpush::sim`: platform, masked token, push type, call SID and the answer.
//!
//! The keys under `src/sim/keys/` are **development keys**, published with the source: they sign
//! for the simulators only and must never be given to Apple or Google.

mod apns;
mod fcm;
mod server;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::AbortHandle;

use crate::domain::mask_device_token;

/// The development APNs signing key (PKCS#8 P-256, a `.p8` file's content). Dev only.
pub const DEV_APNS_KEY: &str = include_str!("keys/dev_apns_key.p8");
/// Its public half, which the APNs simulator verifies provider tokens with.
pub const DEV_APNS_PUBLIC_KEY: &str = include_str!("keys/dev_apns_key.pub.pem");
/// The development FCM service-account key (PKCS#8 RSA 2048). Dev only.
pub const DEV_FCM_KEY: &str = include_str!("keys/dev_fcm_key.pk8.pem");
/// Its public half, which the token endpoint verifies assertions with.
pub const DEV_FCM_PUBLIC_KEY: &str = include_str!("keys/dev_fcm_key.pub.pem");
/// The team the APNs simulator accepts (the provider token's `iss`).
pub const DEV_TEAM_ID: &str = "DEVTEAM001";
/// The key id the APNs simulator accepts (the provider token's `kid`).
pub const DEV_KEY_ID: &str = "DEVKEY0001";
/// The app whose VoIP topic (`<bundle id>.voip`) the APNs simulator accepts.
pub const DEV_BUNDLE_ID: &str = "com.example.callpush.dev";
/// The Firebase project the FCM simulator serves.
pub const DEV_PROJECT_ID: &str = "callpush-dev";
/// The service account the token endpoint knows.
pub const DEV_CLIENT_EMAIL: &str = "callpush-dev@callpush-dev.iam.gserviceaccount.com";

/// A token starting with this is gone: APNs 410 `Unregistered`, FCM 404 `UNREGISTERED`
/// (callpush prunes the binding).
pub const GONE_PREFIX: &str = "dead";
/// A token starting with this is refused for good: APNs 400 `TopicDisallowed`, FCM 403
/// `PERMISSION_DENIED` (the event is dead-lettered as `provider_rejected`).
pub const REJECT_PREFIX: &str = "0bad";
/// A token starting with this answers 503 to the first push of each call and type, then 200
/// (callpush retries).
pub const FLAKY_PREFIX: &str = "503";

/// How a simulator answers a device, by the token's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// 200 (any token without one of the prefixes below).
    Accept,
    /// [`GONE_PREFIX`].
    Gone,
    /// [`REJECT_PREFIX`].
    Reject,
    /// [`FLAKY_PREFIX`]: 503 first, then 200.
    Flaky,
}

impl Behaviour {
    /// The behaviour of a device token.
    pub fn of(token: &str) -> Behaviour {
        let lower = token.to_ascii_lowercase();
        if lower.starts_with(GONE_PREFIX) {
            Behaviour::Gone
        } else if lower.starts_with(REJECT_PREFIX) {
            Behaviour::Reject
        } else if lower.starts_with(FLAKY_PREFIX) {
            Behaviour::Flaky
        } else {
            Behaviour::Accept
        }
    }
}

/// What both simulators share: which flaky pushes already failed once.
#[derive(Debug, Default)]
struct Flakes {
    failed: Mutex<HashSet<(String, String, String)>>,
}

impl Flakes {
    /// The behaviour for this push, turning a flaky token's second attempt into an accept.
    fn answer(&self, token: &str, kind: &str, call_sid: &str) -> Behaviour {
        match Behaviour::of(token) {
            Behaviour::Flaky => {
                let key = (token.to_string(), kind.to_string(), call_sid.to_string());
                if self.failed.lock().expect("sim lock").insert(key) {
                    Behaviour::Flaky
                } else {
                    Behaviour::Accept
                }
            }
            other => other,
        }
    }
}

/// Log one push in one readable line.
fn log_push(platform: &str, token: &str, kind: &str, call_sid: &str, status: u16, reason: &str) {
    let masked = mask_device_token(token);
    let answer = if reason.is_empty() {
        status.to_string()
    } else {
        format!("{status} {reason}")
    };
    tracing::info!(
        target: "callpush::sim",
        platform,
        device = %masked,
        kind,
        call_sid,
        status,
        "{platform} sim: {kind} push for call {call_sid} to {masked} answered {answer}"
    );
}

/// Sees every push a simulator answered (the load benchmark records arrival times with it).
pub trait PushObserver: Send + Sync + 'static {
    /// A push to `platform` (`APNs` or `FCM`) for `call_sid` arrived and is answered `status`.
    fn pushed(&self, platform: &'static str, call_sid: &str, status: u16);
}

/// How the simulators behave beyond Apple's and Google's rules.
#[derive(Clone, Default)]
pub struct SimOptions {
    /// Wait this long before answering each request, as a provider's round trip does.
    pub latency: Duration,
    /// Told of every push, when set.
    pub observer: Option<Arc<dyn PushObserver>>,
}

impl std::fmt::Debug for SimOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimOptions")
            .field("latency", &self.latency)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

impl SimOptions {
    fn observe(&self, platform: &'static str, call_sid: &str, status: u16) {
        if let Some(observer) = &self.observer {
            observer.pushed(platform, call_sid, status);
        }
    }
}

/// Both simulators, running until dropped.
#[derive(Debug)]
pub struct Simulators {
    apns: SocketAddr,
    fcm: SocketAddr,
    tasks: Vec<AbortHandle>,
}

impl Simulators {
    /// Start both on 127.0.0.1, port 0.
    pub async fn start() -> std::io::Result<Simulators> {
        Simulators::start_with(SimOptions::default()).await
    }

    /// Start both on 127.0.0.1, port 0, with `options`.
    pub async fn start_with(options: SimOptions) -> std::io::Result<Simulators> {
        let flakes = Arc::new(Flakes::default());
        let apns_listener = TcpListener::bind("127.0.0.1:0").await?;
        let fcm_listener = TcpListener::bind("127.0.0.1:0").await?;
        let apns = apns_listener.local_addr()?;
        let fcm = fcm_listener.local_addr()?;
        let latency = options.latency;
        let apns_sim = Arc::new(apns::ApnsSim::new(flakes.clone(), options.clone()));
        let fcm_sim = Arc::new(fcm::FcmSim::new(
            format!("http://{fcm}/token"),
            flakes,
            options,
        ));
        let tasks = vec![
            tokio::spawn(server::accept_loop(apns_listener, apns_sim, latency)).abort_handle(),
            tokio::spawn(server::accept_loop(fcm_listener, fcm_sim, latency)).abort_handle(),
        ];
        Ok(Simulators { apns, fcm, tasks })
    }

    /// The APNs endpoint (an APNs credential's `endpoint`).
    pub fn apns_endpoint(&self) -> String {
        format!("http://{}", self.apns)
    }

    /// The FCM base URL (an FCM credential's `base_url`).
    pub fn fcm_base_url(&self) -> String {
        format!("http://{}", self.fcm)
    }

    /// The OAuth token endpoint (the service account's `token_uri`).
    pub fn token_uri(&self) -> String {
        format!("http://{}/token", self.fcm)
    }
}

impl Drop for Simulators {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests;
