//! Reloading without a restart (`SIGHUP`, `POST /v1/admin/reload`): the configuration file is
//! read again, validated whole, and what can change in a running daemon is swapped in at once.
//!
//! Applied on reload: every secret the access-token, admin and webhook checks use — the API
//! keys and their secret files (`auth.*`), the admin token (`admin.token_file` or
//! `CALLPUSH_ADMIN_TOKEN`), the Twilio auth tokens and shared keys (`twilio.*`). A request is
//! checked against one set of secrets, never half of each.
//!
//! A configuration that does not validate, or whose secret files cannot be read, is refused
//! whole: the error names the key, the daemon keeps the secrets it had, and
//! `callpush_config_reloads_total{result="refused"}` counts it. Every other section differs
//! from the running one only after a restart, and the answer and the log name those that do
//! (compared with the settings the daemon started with): the listeners, `redis`, `stream`
//! (shards, group, consumer), `workers`, `retry`, `limits`, `bindings`, `results`,
//! `dead_letters`, `shutdown`, the HTTPS certificate and the push `credentials` (a provider's
//! connections and tokens are built at start).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::auth::{Auth, AuthConfigError};
use crate::config::{ConfigError, Settings};
use crate::metrics::Metrics;

/// What a reload did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReloadReport {
    /// The file read again.
    pub file: String,
    /// What was read again and applies from now on.
    pub reloaded: Vec<String>,
    /// The API key SIDs that verify access tokens from now on.
    pub api_keys: Vec<String>,
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
}

/// Reads the configuration again and swaps in what may change.
pub struct Reloader {
    /// The settings the daemon started with (what needs a restart is compared to them).
    started: Settings,
    auth: Arc<Auth>,
    metrics: Arc<Metrics>,
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
            running: Mutex::new(()),
        }
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
        // Registrations pick among the credentials that push: the running ones.
        let secrets_of = Settings {
            credentials: self.started.credentials.clone(),
            ..next.clone()
        };
        let auth = Auth::from_settings(&secrets_of)?;
        self.auth.replace(auth);
        Ok(ReloadReport {
            file: file.display().to_string(),
            reloaded: ["auth", "admin.token", "twilio"].map(String::from).to_vec(),
            api_keys: self.auth.api_key_sids(),
            restart_required: restart_required(&self.started, &next),
        })
    }
}

/// The sections of `next` that differ from `running` and apply only after a restart.
pub fn restart_required(running: &Settings, next: &Settings) -> Vec<String> {
    let differs =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
    let sections: [(&str, bool); 15] = [
        ("api.listen", running.api.listen != next.api.listen),
        (
            "api.tls_cert_file / api.tls_key_file",
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
        ("limits", differs(&running.limits, &next.limits)),
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
