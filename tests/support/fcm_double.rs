//! The FCM simulator of `callpush_sim` (Google's token endpoint and `fcm.googleapis.com` on
//! one h2c server) with the test identity: the fixture service-account key
//! (`tests/fixtures/fcm_sa_key.pk8.pem`), project `callpush-test`, client
//! `callpush@callpush-test.iam.gserviceaccount.com`. Scripting and recording are the
//! simulator's own; this adds service-account files and credentials for tests.
//!
//! ```ignore
//! let fcm = FcmDouble::start(FcmDoubleOptions::default()).await;
//! let sa = fcm.write_service_account(dir.path());
//! let provider = FcmProvider::new(&fcm.credential("CRfcm", &sa))?;
//! fcm.set_unregistered("dead-token");
//! ```

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use callpush_sim::{FcmOptions, FcmSim};
use serde_json::{json, Value};

#[allow(unused_imports)]
pub use callpush_sim::{FcmAnswer as Answer, Recorded};

/// The fixture service-account key the double trusts.
pub const SA_KEY_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/fcm_sa_key.pk8.pem"
);
const SA_PUBLIC_KEY_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/fcm_sa_key.pub.pem"
);

/// How the double starts.
#[derive(Debug, Clone)]
pub struct FcmDoubleOptions {
    /// The Firebase project the double serves.
    pub project_id: String,
    /// The service account allowed to sign in.
    pub client_email: String,
    /// Lifetime of issued access tokens, in seconds.
    pub expires_in: u64,
    /// How long the token endpoint takes to answer.
    pub token_delay: Duration,
}

impl Default for FcmDoubleOptions {
    fn default() -> Self {
        FcmDoubleOptions {
            project_id: "callpush-test".into(),
            client_email: "callpush@callpush-test.iam.gserviceaccount.com".into(),
            expires_in: 3600,
            token_delay: Duration::ZERO,
        }
    }
}

/// The running simulator (every method of [`FcmSim`] through `Deref`); it stops when dropped.
pub struct FcmDouble {
    sim: FcmSim,
}

impl Deref for FcmDouble {
    type Target = FcmSim;

    fn deref(&self) -> &FcmSim {
        &self.sim
    }
}

impl FcmDouble {
    /// Start on a free port of 127.0.0.1.
    pub async fn start(opts: FcmDoubleOptions) -> FcmDouble {
        let sim = FcmSim::start(FcmOptions {
            public_key_pem: std::fs::read_to_string(SA_PUBLIC_KEY_FILE).unwrap(),
            project_id: opts.project_id,
            client_email: opts.client_email,
            expires_in: opts.expires_in,
            token_delay: opts.token_delay,
            ..FcmOptions::default()
        })
        .await
        .expect("start the FCM simulator");
        FcmDouble { sim }
    }

    /// A service-account JSON as Google issues it, with the fixture key and this double's
    /// project, client email and token URI.
    pub fn service_account_json(&self) -> Value {
        let key = std::fs::read_to_string(SA_KEY_FILE).unwrap();
        json!({
            "type": "service_account",
            "project_id": self.project_id(),
            "private_key_id": "0123456789abcdef0123456789abcdef01234567",
            "private_key": key,
            "client_email": self.client_email(),
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri(),
        })
    }

    /// Write [`Self::service_account_json`] to `dir/fcm-service-account.json`.
    pub fn write_service_account(&self, dir: &Path) -> PathBuf {
        write_json(
            dir,
            "fcm-service-account.json",
            &self.service_account_json(),
        )
    }

    /// An FCM credential pointing at this double, for `FcmProvider::new` or a daemon config.
    pub fn credential(
        &self,
        sid: &str,
        service_account_file: &Path,
    ) -> callpush::config::FcmCredential {
        serde_json::from_value(json!({
            "sid": sid,
            "service_account_file": service_account_file,
            "base_url": self.url(),
        }))
        .unwrap()
    }

    /// The same credential as a config file's `[[credentials]]` table.
    pub fn credential_toml(&self, sid: &str, service_account_file: &Path) -> String {
        format!(
            "[[credentials]]\nsid = \"{sid}\"\nplatform = \"fcm\"\n\
             service_account_file = \"{}\"\nbase_url = \"{}\"\n",
            service_account_file.display(),
            self.url()
        )
    }
}

/// A running double and a provider signed in with its service account.
pub struct FcmSetup {
    /// The double.
    pub fcm: FcmDouble,
    /// An `FcmProvider` for credential `CRfcm`, pointed at the double.
    pub provider: callpush::fcm::FcmProvider,
    /// Holds the service-account file.
    pub dir: tempfile::TempDir,
}

/// Start a double and build a provider for it.
pub async fn start_with_provider(opts: FcmDoubleOptions) -> FcmSetup {
    let fcm = FcmDouble::start(opts).await;
    let dir = tempfile::tempdir().unwrap();
    let sa = fcm.write_service_account(dir.path());
    let provider = callpush::fcm::FcmProvider::new(&fcm.credential("CRfcm", &sa)).unwrap();
    FcmSetup { fcm, provider, dir }
}

/// An incoming-call push to `token` (with a caller and params), 30 s before its deadline.
pub fn incoming_push(token: &str) -> callpush::domain::Push {
    use callpush::domain::{now_ms, CallContent, PushKind};
    callpush::domain::Push::new(
        Arc::new(CallContent {
            kind: PushKind::Incoming,
            call_sid: "CA0123456789abcdef".into(),
            caller: Some("+15551234567".into()),
            callee: "alice".into(),
            params: Some(r#"{"display":"Bob","room":"42"}"#.into()),
            deadline_ms: now_ms() + 30_000,
            twilio: Vec::new(),
        }),
        token,
    )
}

/// Write `value` as `dir/name`, e.g. an edited service account.
pub fn write_json(dir: &Path, name: &str, value: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
    path
}
