//! `callpush-sim`: simulated APNs and FCM, real HTTP/2 servers on 127.0.0.1 (port 0; h2c, or
//! TLS with a certificate the caller gives) that the real provider clients talk to, so the
//! provider JWT, the OAuth flow, the payloads and the classifiers all run. One implementation
//! serves `callpush dev`, the integration tests (`tests/support/{apns,fcm}_double.rs` are thin
//! wrappers with the test identity) and the benchmark. The code path to a simulator is only
//! configuration — an APNs `endpoint`, an FCM `base_url` and `token_uri` — never `cfg(test)`.
//! The crate depends on nothing of callpush's (callpush depends on it for `callpush dev`), so
//! the few things it shares with callpush are its own: [`Environment`], [`PROBE_TOKEN`], the
//! clock and the token masking of its log line.
//!
//! They check requests as Apple and Google do and answer with their real statuses and bodies:
//! APNs (`apns`) the ES256 provider token (signature, `kid`, `iss`, age), topic, push type,
//! priority, expiration, collapse id and the 5120-byte VoIP payload limit, with `{"reason": …}`
//! bodies and an `apns-id`; FCM (`fcm`) the token endpoint's JWT-bearer grant (RS256
//! signature, `iss`, `aud`, lifetime, scope), then the bearer (issued here and unexpired), the
//! project and the message (string data, reserved keys, the 4096-byte data limit, Android
//! priority and TTL), with `google.rpc.Status` bodies.
//!
//! ## What a push gets
//! A request that fails a check gets Apple's or Google's refusal. A valid push gets, in order:
//! the next answer scripted for its token ([`ApnsSim::script`], [`FcmSim::script`]), the
//! token's standing answer (`set_unregistered`), the default answer (`set_default`), and
//! otherwise the [`Behaviour`] of its first characters (hex, so they make valid APNs tokens
//! too): `dead…` gone, `0bad…` refused, `503…` unavailable once per call and type, anything
//! else accepted. An APNs simulator plays one environment ([`ApnsOptions::environment`]): a
//! token of the other ([`SANDBOX_PREFIX`]) gets `400 BadDeviceToken`, as Apple answers it. The
//! FCM simulator takes `message.fid` (a Firebase Installation ID) as it takes `message.token`,
//! and can play a project over its quota (`exceed_project_quota`). Tests script the rest: [`ApnsAnswer`] and [`FcmAnswer`] carry a status, a
//! body, a `Retry-After` and a delay; `expire_provider_tokens_before`, `script_token`,
//! `set_expires_in`, `revoke_tokens`; and on the [`SimServer`] both dereference to,
//! `goaway_all` and `kill_connections`.
//!
//! ## What it records
//! Every push, in a [`Recorded`] (token, path, headers, body, bearer, arrival time, status),
//! read back with `requests`, `count`, `wait_for`, `received`, `wait_for_received`; FCM also
//! counts token requests and remembers when it issued each access token. Each simulator keeps
//! the pushes by default (`serve.record`); [`Simulators`] (dev, benchmark) only counts them unless
//! [`SimOptions::record`] is set, so a long run does not grow.
//!
//! ## Latency and streams
//! [`SimOptions::latency`] (or each simulator's `serve.latency`, a [`Serving`]) holds every push's answer that long
//! — the benchmark sets 30 ms to model Apple's round trip — on top of any scripted delay;
//! token requests are not held. `max_concurrent_streams` is what each connection advertises in
//! `SETTINGS_MAX_CONCURRENT_STREAMS` (Apple's is 1000).
//!
//! Every push is logged in one line at `info`, target `callpush::sim`: platform, masked token,
//! push type, call SID and the answer.
//!
//! The keys under `crates/sim/src/keys/` are **development keys**, published with the source: they sign
//! for the simulators only and must never be given to Apple or Google. [`ApnsOptions`] and
//! [`FcmOptions`] default to them; tests pass the public halves of their fixture keys instead.

mod apns;
mod base;
mod fcm;
mod record;
mod script;
mod server;
mod simulators;

use std::collections::HashSet;
use std::sync::Mutex;

pub use apns::{Answer as ApnsAnswer, ApnsOptions, ApnsSim, State as ApnsState};
pub use base::{Serving, Sim};
pub use fcm::{Answer as FcmAnswer, FcmOptions, FcmSim, State as FcmState};
pub use record::{PushObserver, Recorded};
pub use server::{SimServer, TlsIdentity};
pub use simulators::{SimOptions, Simulators};

/// Why a simulator did not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// No port on 127.0.0.1.
    #[error("cannot listen on 127.0.0.1: {0}")]
    Bind(#[source] std::io::Error),
    /// A public key that is not PEM of the right kind.
    #[error("{0}")]
    Key(String),
    /// A certificate or key that rustls refuses.
    #[error("TLS: {0}")]
    Tls(String),
}

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
/// An APNs token starting with this is a sandbox token (a debug build's): the production
/// simulator answers it `400 BadDeviceToken`, the sandbox simulator as the rest of the token
/// says (`deb` + `dead…` is gone, and so on). Every other token is a production token, which
/// the sandbox simulator refuses the same way.
pub const SANDBOX_PREFIX: &str = "deb";
/// The token `callpush check` probes APNs credentials with (callpush's `apns::PROBE_TOKEN`),
/// which Apple never issues: both APNs simulators answer it `400 BadDeviceToken`, as Apple does
/// once the provider token passed.
pub const PROBE_TOKEN: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

/// The APNs environment a simulator plays: Apple's production or sandbox host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Environment {
    /// `api.push.apple.com`: production tokens (no [`SANDBOX_PREFIX`]).
    #[default]
    Production,
    /// `api.sandbox.push.apple.com`: tokens with [`SANDBOX_PREFIX`].
    Sandbox,
}

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
    // As callpush masks tokens in its own logs: the first 8 characters and an ellipsis.
    let masked = format!("{}…", token.chars().take(8).collect::<String>());
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

/// Now, in ms since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
