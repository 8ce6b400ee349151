//! A daemon's configuration file for reload tests: written, rewritten and read again, with the
//! secret files it names in the same directory, and the requests those tests make.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use callpush::config::{CredentialSettings, Settings};
use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::api::{claims, http, sign, ACCOUNT_SID};
use super::daemon::TestDaemon;
use super::world::World;

/// The daemon's configuration file and the secret files it names.
pub struct ConfigFile {
    pub dir: tempfile::TempDir,
    redis: String,
    /// The world's FCM service account.
    pub service_account: PathBuf,
}

impl ConfigFile {
    pub fn new(w: &World) -> ConfigFile {
        let service_account = w
            .settings
            .credentials
            .iter()
            .find_map(|c| match c {
                CredentialSettings::Fcm(f) => Some(f.service_account_file.clone()),
                CredentialSettings::Apns(_) => None,
            })
            .unwrap();
        ConfigFile {
            dir: tempfile::tempdir().unwrap(),
            redis: format!(
                "url = \"{}\"\nkey_prefix = \"{}\"\n",
                w.settings.redis.url, w.settings.redis.key_prefix
            ),
            service_account,
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("callpush.toml")
    }

    pub fn secret(&self, name: &str, value: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, format!("{value}\n")).unwrap();
        path
    }

    /// Write the configuration with these API keys and admin token (and `extra` TOML).
    pub fn write(&self, w: &World, keys: &[(&str, &str)], admin: &str, extra: &str) {
        self.write_with(w, keys, admin, &[("CRfcm", &self.service_account)], extra)
    }

    /// [`ConfigFile::write`] with these FCM credentials (SID, service-account file).
    pub fn write_with(
        &self,
        w: &World,
        keys: &[(&str, &str)],
        admin: &str,
        credentials: &[(&str, &std::path::Path)],
        extra: &str,
    ) {
        let credentials: Vec<_> = credentials.iter().map(|(s, a)| (*s, *a, "")).collect();
        self.write_full(w, keys, admin, &credentials, extra)
    }

    /// [`ConfigFile::write_with`], each credential with its own extra TOML lines
    /// (`rate_limit_per_sec = 2`).
    pub fn write_full(
        &self,
        w: &World,
        keys: &[(&str, &str)],
        admin: &str,
        credentials: &[(&str, &std::path::Path, &str)],
        extra: &str,
    ) {
        let mut text = format!(
            "[redis]\n{}\n[stream]\nblock_ms = 200\n\n[admin]\ntoken_file = \"{}\"\n\n[auth]\naccount_sid = \"{ACCOUNT_SID}\"\n",
            self.redis,
            self.secret("admin-token", admin).display()
        );
        for (sid, secret) in keys {
            text.push_str(&format!(
                "[[auth.api_keys]]\nsid = \"{sid}\"\nsecret_file = \"{}\"\n",
                self.secret(&format!("{sid}.secret"), secret).display()
            ));
        }
        for (sid, account, own) in credentials {
            text.push_str(&format!(
                "\n[[credentials]]\nsid = \"{sid}\"\nplatform = \"fcm\"\nservice_account_file = \"{}\"\nbase_url = \"{}\"\n{own}\n",
                account.display(),
                w.fcm.url()
            ));
        }
        text.push_str(extra);
        std::fs::write(self.path(), text).unwrap();
    }

    pub fn settings(&self) -> Settings {
        Settings::load(Some(&self.path())).unwrap()
    }
}

pub fn token(identity: &str, key: (&str, &str)) -> String {
    let mut c = claims(identity);
    c["iss"] = key.0.into();
    sign(&c, key.1)
}

pub async fn register(
    d: &TestDaemon,
    identity: &str,
    key: (&str, &str),
    device: &str,
) -> StatusCode {
    let body = json!({"platform": "fcm", "device_token": device});
    http(
        Method::POST,
        &d.api_url(),
        "/v1/registrations",
        Some(&token(identity, key)),
        Some(body),
    )
    .await
    .status
}

/// `POST /v1/admin/reload` with `admin`; the status, the body and how long it took.
pub async fn reload(d: &TestDaemon, admin: &str) -> (StatusCode, Value, Duration) {
    let started = Instant::now();
    let reply = http(
        Method::POST,
        &d.admin_url(),
        "/v1/admin/reload",
        Some(admin),
        None,
    )
    .await;
    (reply.status, reply.body, started.elapsed())
}
