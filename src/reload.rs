//! Reloading without a restart (`SIGHUP`, `POST /v1/admin/reload`): the configuration file is
//! read again, validated whole, and what can change in a running daemon is swapped in at once.
//!
//! Applied on reload: every secret the access-token, admin and webhook checks use — the API
//! keys and their secret files (`auth.*`), the admin token (`admin.token_file` or
//! `CALLPUSH_ADMIN_TOKEN`), the Twilio auth tokens and shared keys (`twilio.*`) — and the push
//! `credentials`: a credential whose settings or key file bytes changed gets a new provider
//! (new connections, a new provider or OAuth token), one added starts pushing, one removed
//! stops ([`crate::dispatch::providers`]: its bindings' calls are dead-lettered naming it);
//! unchanged ones keep theirs, warm. Pushes in flight finish on the provider they started with.
//! A request is checked against one set of secrets, never half of each.
//!
//! A configuration that does not validate, or whose secret files cannot be read, is refused
//! whole: the error names the key, the daemon keeps the secrets it had, and
//! `callpush_config_reloads_total{result="refused"}` counts it. Every other section differs
//! from the running one only after a restart, and the answer and the log name those that do
//! (compared with the settings the daemon started with): the listeners, `redis`, `stream`
//! (shards, group, consumer), `workers`, `retry`, `limits`, `bindings`, `results`,
//! `dead_letters`, `shutdown` and the HTTPS certificate. Without a running pool (API-only
//! tests) credentials are not reloaded and are named among those.

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
use crate::providers::Provider;

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

/// How the HTTPS certificate and key are named in reports.
const TLS_FILES: &str = "api.tls_cert_file / api.tls_key_file";

/// The sections of `next` that differ from `running` and apply only after a restart.
pub fn restart_required(running: &Settings, next: &Settings) -> Vec<String> {
    let differs =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
    let sections: [(&str, bool); 15] = [
        ("api.listen", running.api.listen != next.api.listen),
        (
            TLS_FILES,
            running.api.tls_cert_file != next.api.tls_cert_file
                || running.api.tls_key_file != next.api.tls_key_file,
        ),
        ("api.limits", differs(&running.api.limits, &next.api.limits)),
        ("admin.listen", running.admin.listen != next.admin.listen),
        (
            "admin.limits",
            differs(&running.admin.limits, &next.admin.limits),
        ),
        ("redis", differs(&running.redis, &next.redis)),
        ("stream", differs(&running.stream, &next.stream)),
        ("workers", differs(&running.workers, &next.workers)),
        ("retry", differs(&running.retry, &next.retry)),
        ("limits.scope", running.limits.scope != next.limits.scope),
        ("bindings", differs(&running.bindings, &next.bindings)),
        ("results", differs(&running.results, &next.results)),
        (
            "dead_letters",
            differs(&running.dead_letters, &next.dead_letters),
        ),
        ("shutdown", differs(&running.shutdown, &next.shutdown)),
        (
            "credentials",
            differs(&running.credentials, &next.credentials),
        ),
    ];
    sections
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(name, _)| name.to_string())
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml: &str) -> Settings {
        Settings::from_toml_with_env(toml, Vec::new()).unwrap()
    }

    #[test]
    fn only_the_sections_that_changed_are_named() {
        let running = settings("[api]\nlisten = \"127.0.0.1:8080\"\n");
        assert!(restart_required(&running, &running.clone()).is_empty());
        let next = settings(
            "[api]\nlisten = \"127.0.0.1:8081\"\n[stream]\nshards = 4\n[auth]\nmax_token_ttl_secs = 60\n",
        );
        assert_eq!(restart_required(&running, &next), ["api.listen", "stream"]);
    }
}
