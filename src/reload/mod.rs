//! Reloading without a restart (`SIGHUP`, `POST /v1/admin/reload`): the configuration file is
//! read again, validated whole, and what can change in a running daemon is swapped in at once.
//!
//! Applied on reload:
//! - every secret the access-token, admin and webhook checks use — the API keys and their
//!   secret files (`auth.*`), the admin token (`admin.token_file` or `CALLPUSH_ADMIN_TOKEN`),
//!   the Twilio auth tokens and shared keys (`twilio.*`); a request is checked against one set
//!   of secrets, never half of each;
//! - the push `credentials`: a credential whose settings or key file bytes changed gets a new
//!   provider (new connections, a new provider or OAuth token), one added starts pushing, one
//!   removed stops ([`crate::dispatch::providers`]: its bindings' calls are dead-lettered
//!   naming it); unchanged ones keep theirs, warm. Pushes in flight finish on the provider they
//!   started with. A credential added gets what one of the start has, built by the same code:
//!   its push slots and quota gate (`ProviderSet::on_replace`), its rate limit, its metric
//!   series and connection gauge, and its APNs environments for registrations;
//! - the HTTPS certificate and key (`api.tls_cert_file`, `api.tls_key_file`), read again even
//!   when the paths are the same (renewed in place): new handshakes get the new pair,
//!   connections already open keep theirs ([`crate::api::tls::ServedCert`]);
//! - the limits: `limits.calls_per_identity_per_min`, `limits.registrations_per_*` and each
//!   credential's `rate_limit_per_sec`. A limit that changed counts afresh in this process from
//!   the reload on (a callee who had used the old budget gets the new one whole); an unchanged
//!   one keeps its counts. With `limits.scope = "cluster"` the counts live in Redis and carry
//!   on under the new numbers.
//!
//! A configuration that does not validate, whose secret files cannot be read, whose
//! credential cannot be built or whose certificate and key cannot be used is refused whole:
//! everything is built before anything is swapped, the error names the key, the daemon keeps
//! what it had, and `callpush_config_reloads_total{result="refused"}` counts it.
//!
//! Needs a restart (named in the answer and the log when they differ from the settings the
//! daemon started with), and why:
//! - `api.listen`, `admin.listen`: the sockets are bound once; rebinding would drop or split
//!   the connections open;
//! - HTTPS turned on or off (a certificate added where there was none, or removed): the public
//!   listener's protocol is decided when it starts;
//! - `api.limits`, `admin.limits`: the HTTP server's connection cap, header and h2 settings are
//!   baked into the listener at start;
//! - `redis` (a rotated Redis password too): the connections are opened at start;
//! - `stream` (shards, group, consumer name): they decide which entries this daemon owns;
//! - `workers`, `retry`: the pool's slots and its retry policy are fixed for its life;
//! - `limits.scope`: moving the counting between Redis and this process mid-run would start
//!   every callee and credential with a fresh budget on the other side;
//! - `bindings`, `results`, `dead_letters`, `shutdown`: read by the stores and the lifecycle at
//!   start.
//!
//! Without a running pool (API-only tests) credentials are not reloaded and are named among
//! those.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use sha2::{Digest, Sha256};

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::limits::RegistrationLimits;
use crate::api::tls::{ServedCert, TlsConfigError};
use crate::api::ApnsEnvironmentMap;
use crate::auth::{Auth, AuthConfigError};
use crate::config::{ConfigError, CredentialSettings, Settings};
use crate::dispatch::limits::Rules;
use crate::dispatch::providers::{ProbeMap, ProviderMap, ProviderSet};
use crate::metrics::{Metrics, ProviderProbe};

mod restart;
use crate::providers::Provider;
pub use restart::restart_required;
use restart::TLS_FILES;

/// Builds the (metered) provider of one credential, and what the metrics sampler reads of it;
/// the error names the credential and the key.
pub type BuildProvider = Arc<
    dyn Fn(&CredentialSettings) -> Result<(Arc<dyn Provider>, Arc<dyn ProviderProbe>), String>
        + Send
        + Sync,
>;

/// The pool's providers, as a reload replaces them.
struct Pushing {
    set: Arc<ProviderSet>,
    build: BuildProvider,
    /// What each running credential was built from ([`fingerprint`]).
    built_from: Mutex<HashMap<String, String>>,
}

/// What a credential's provider is built from: its settings and the bytes of its key files, so
/// a key rotated in place (same path, new content) counts as a change.
fn fingerprint(credential: &CredentialSettings) -> String {
    let files = match credential {
        CredentialSettings::Apns(a) => vec![Some(&a.key_file), a.ca_file.as_ref()],
        CredentialSettings::Fcm(f) => vec![Some(&f.service_account_file), f.ca_file.as_ref()],
    };
    let mut hash = Sha256::new();
    hash.update(format!("{credential:?}"));
    for file in files.into_iter().flatten() {
        match std::fs::read(file) {
            Ok(bytes) => hash.update(&bytes),
            Err(e) => hash.update(e.to_string()),
        }
    }
    hex::encode(hash.finalize())
}

/// The credentials a reload added, changed (new settings or key) and removed.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CredentialChanges {
    /// New SIDs: their bindings are pushed from now on.
    pub added: Vec<String>,
    /// Rebuilt with a new key, account, endpoint or setting: new pushes use the new one, pushes
    /// in flight finish on the old.
    pub changed: Vec<String>,
    /// Gone: their bindings' calls are dead-lettered naming the credential.
    pub removed: Vec<String>,
}

/// What a reload did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReloadReport {
    /// The file read again.
    pub file: String,
    /// What was read again and applies from now on.
    pub reloaded: Vec<String>,
    /// The API key SIDs that verify access tokens from now on.
    pub api_keys: Vec<String>,
    /// What changed among the push credentials.
    pub credentials: CredentialChanges,
    /// Sections that differ from the running configuration but apply only after a restart.
    pub restart_required: Vec<String>,
}

/// Why a reload was refused (the daemon runs on as before).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The daemon was started without a configuration file.
    #[error("nothing to reload: the daemon was started without --config")]
    NoFile,
    /// The new configuration does not validate.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// A secret the new configuration names cannot be loaded.
    #[error("{0}")]
    Secrets(#[from] AuthConfigError),
    /// A credential's provider cannot be built (its key file, its endpoint).
    #[error("{0}")]
    Credential(String),
    /// The new HTTPS certificate or key cannot be used.
    #[error("{0}")]
    Tls(#[from] TlsConfigError),
}

/// Reads the configuration again and swaps in what may change.
pub struct Reloader {
    /// The settings the daemon started with (what needs a restart is compared to them).
    started: Settings,
    auth: Arc<Auth>,
    metrics: Arc<Metrics>,
    /// The pool's providers, once the daemon runs the pool; before (and in API-only tests)
    /// credentials are not reloaded.
    pushing: OnceLock<Pushing>,
    /// The certificate of the public listener, when it serves HTTPS.
    tls: OnceLock<Arc<ServedCert>>,
    /// The registration limits and the APNs environments registrations are checked against.
    api: OnceLock<(Arc<RegistrationLimits>, ApnsEnvironmentMap)>,
    /// The pool's call and credential limits.
    limits: OnceLock<Arc<Rules>>,
    /// One reload at a time.
    running: Mutex<()>,
}

impl Reloader {
    /// A reloader of `started`'s file, swapping `auth`'s secrets.
    pub fn new(started: &Settings, auth: Arc<Auth>, metrics: Arc<Metrics>) -> Reloader {
        Reloader {
            started: started.clone(),
            auth,
            metrics,
            pushing: OnceLock::new(),
            tls: OnceLock::new(),
            api: OnceLock::new(),
            limits: OnceLock::new(),
            running: Mutex::new(()),
        }
    }

    /// Reload the pool's providers too: `set` holds the running ones, `build` makes new ones.
    pub fn attach_providers(&self, set: Arc<ProviderSet>, build: BuildProvider) {
        let built_from = self
            .started
            .credentials
            .iter()
            .map(|c| (c.sid().to_string(), fingerprint(c)))
            .collect();
        let _ = self.pushing.set(Pushing {
            set,
            build,
            built_from: Mutex::new(built_from),
        });
    }

    /// Reload the public listener's certificate too (`api.tls_cert_file`, `api.tls_key_file`).
    pub fn attach_tls(&self, cert: Arc<ServedCert>) {
        let _ = self.tls.set(cert);
    }

    /// Reload the registration limits and the APNs environments of the API too.
    pub fn attach_api(&self, limits: Arc<RegistrationLimits>, environments: ApnsEnvironmentMap) {
        let _ = self.api.set((limits, environments));
    }

    /// Reload the pool's call and credential limits too.
    pub(crate) fn attach_limits(&self, rules: Arc<Rules>) {
        let _ = self.limits.set(rules);
    }

    /// Read the file again and apply it, or refuse it whole; counted and logged either way.
    pub fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let _one = self.running.lock().expect("never poisoned");
        let result = self.apply();
        self.metrics.config_reload(result.is_ok());
        match &result {
            Ok(report) => info!(
                reloaded = ?report.reloaded,
                api_keys = ?report.api_keys,
                restart_required = ?report.restart_required,
                "configuration reloaded"
            ),
            Err(e) => {
                warn!(error = %e, "configuration reload refused; the daemon keeps the previous one")
            }
        }
        result
    }

    fn apply(&self) -> Result<ReloadReport, ReloadError> {
        let file: PathBuf = self.started.source.clone().ok_or(ReloadError::NoFile)?;
        let next = Settings::load(Some(&file))?;
        let mut restart = restart_required(&self.started, &next);
        let mut reloaded: Vec<String> = ["auth", "admin.token", "twilio", "limits"]
            .map(String::from)
            .to_vec();
        // Everything is built before anything is swapped: a refusal changes nothing.
        let certificate = match (
            self.tls.get(),
            &next.api.tls_cert_file,
            &next.api.tls_key_file,
        ) {
            (Some(served), Some(cert), Some(key)) => {
                Some((served, crate::api::tls::load(cert, key)?, cert, key))
            }
            _ => None,
        };
        let Some(pushing) = self.pushing.get() else {
            // Registrations pick among the credentials that push: the running ones.
            let secrets_of = Settings {
                credentials: self.started.credentials.clone(),
                ..next.clone()
            };
            self.auth.replace(Auth::from_settings(&secrets_of)?);
            self.apply_limits(&secrets_of, false);
            return Ok(ReloadReport {
                file: file.display().to_string(),
                reloaded,
                api_keys: self.auth.api_key_sids(),
                credentials: CredentialChanges::default(),
                restart_required: restart,
            });
        };
        let auth = Auth::from_settings(&next)?;
        let running = pushing.set.snapshot();
        let mut built_from = pushing.built_from.lock().expect("never poisoned");
        let mut providers = ProviderMap::new();
        let mut probes = ProbeMap::new();
        let mut fingerprints = HashMap::new();
        let mut changes = CredentialChanges::default();
        for credential in &next.credentials {
            let sid = credential.sid().to_string();
            let print = fingerprint(credential);
            let kept = running
                .get(&sid)
                .filter(|_| built_from.get(&sid) == Some(&print));
            let provider = match kept {
                Some(p) => p.clone(),
                None => {
                    match running.contains_key(&sid) {
                        true => changes.changed.push(sid.clone()),
                        false => changes.added.push(sid.clone()),
                    }
                    let (provider, probe) =
                        (pushing.build)(credential).map_err(ReloadError::Credential)?;
                    probes.insert(sid.clone(), probe);
                    provider
                }
            };
            providers.insert(sid.clone(), provider);
            fingerprints.insert(sid, print);
        }
        changes.removed = running
            .keys()
            .filter(|sid| !providers.contains_key(*sid))
            .cloned()
            .collect();
        changes.removed.sort();
        self.auth.replace(auth);
        // The limits first: a credential added below finds its rate limit in place.
        self.apply_limits(&next, true);
        pushing.set.replace_probed(providers, probes);
        *built_from = fingerprints;
        restart.retain(|section| section != "credentials");
        reloaded.push("credentials".into());
        if let Some((served, pair, cert, key)) = certificate {
            let changed = served.install(pair, cert, key);
            info!(changed, cert = %cert.display(), "HTTPS certificate reloaded");
            restart.retain(|section| section != TLS_FILES);
            reloaded.push(TLS_FILES.into());
        }
        Ok(ReloadReport {
            file: file.display().to_string(),
            reloaded,
            api_keys: self.auth.api_key_sids(),
            credentials: changes,
            restart_required: restart,
        })
    }

    /// Swap in the limits of `settings`, and (when the credentials are reloaded) the APNs
    /// environments registrations are checked against.
    fn apply_limits(&self, settings: &Settings, credentials: bool) {
        if let Some((limits, environments)) = self.api.get() {
            limits.apply(&settings.limits);
            if credentials {
                *environments.write().unwrap_or_else(|e| e.into_inner()) =
                    settings.apns_environments();
            }
        }
        if let Some(rules) = self.limits.get() {
            rules.apply(settings);
        }
    }
}

/// Reload on every `SIGHUP` until `stop`.
pub fn on_sighup(reloader: Arc<Reloader>, stop: CancellationToken) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup())?;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    got = hup.recv() => if got.is_none() { return },
                    _ = stop.cancelled() => return,
                }
                info!("SIGHUP received: reloading the configuration");
                // Reading a few small files: off the async workers all the same.
                let reloader = reloader.clone();
                let _ = tokio::task::spawn_blocking(move || reloader.reload()).await;
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (reloader, stop);
    Ok(())
}
