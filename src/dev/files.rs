//! The files `callpush dev` generates: secrets, the development provider credentials and the
//! configuration naming them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::DevError;
use callpush_sim::Simulators;

/// The account SID of the dev API key's tokens.
pub const DEV_ACCOUNT_SID: &str = "AC00000000000000000000000000000dev";
/// The dev API key's SID.
pub const DEV_API_KEY_SID: &str = "SK00000000000000000000000000000dev";
/// The APNs credential's SID.
pub const DEV_APNS_SID: &str = "CRdevapns";
/// The FCM credential's SID.
pub const DEV_FCM_SID: &str = "CRdevfcm";

/// Where the simulated providers listen.
#[derive(Debug, Clone)]
pub struct ProviderUrls {
    /// The APNs production simulator (`endpoint`).
    pub apns: String,
    /// The APNs sandbox simulator (`sandbox_endpoint`), when one runs.
    pub apns_sandbox: Option<String>,
    /// The FCM simulator (`base_url`).
    pub fcm: String,
    /// Its token endpoint (`token_uri`).
    pub token_uri: String,
}

/// The data directory and what is in it.
#[derive(Debug)]
pub struct DevFiles {
    dir: PathBuf,
    /// True when `callpush dev` made the directory (and removes it on exit).
    temporary: bool,
}

fn random_hex(bytes: usize) -> String {
    let v: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(v)
}

impl DevFiles {
    /// Use `dir` (created when missing), or a new directory under the system's temp dir.
    pub fn create(dir: Option<PathBuf>) -> Result<DevFiles, DevError> {
        let (dir, temporary) = match dir {
            Some(dir) => (dir, false),
            None => (
                std::env::temp_dir().join(format!("callpush-dev-{}", random_hex(6))),
                true,
            ),
        };
        std::fs::create_dir_all(&dir).map_err(|source| DevError::DataDir {
            path: dir.clone(),
            source,
        })?;
        let files = DevFiles { dir, temporary };
        files.write("admin_token", &random_hex(24))?;
        files.write("api_key_secret", &random_hex(24))?;
        files.write("apns_dev_key.p8", callpush_sim::DEV_APNS_KEY)?;
        let account = serde_json::json!({
            "type": "service_account",
            "project_id": callpush_sim::DEV_PROJECT_ID,
            "private_key_id": "dev",
            "private_key": callpush_sim::DEV_FCM_KEY,
            "client_email": callpush_sim::DEV_CLIENT_EMAIL,
            "token_uri": "set by the config",
        });
        files.write("fcm_dev_service_account.json", &account.to_string())?;
        Ok(files)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True when the directory is removed on exit.
    pub fn temporary(&self) -> bool {
        self.temporary
    }

    /// A file of the data directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Write a file readable by this user only: most of them are secrets, dev-only or not.
    fn write(&self, name: &str, content: &str) -> Result<(), DevError> {
        use std::io::Write;
        #[cfg(unix)]
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.path(name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        options.mode(0o600);
        options
            .open(&path)
            .and_then(|mut f| f.write_all(content.as_bytes()))
            .map_err(|source| DevError::DataDir { path, source })
    }

    /// Write `callpush.toml` for these listeners and simulators; returns its path.
    pub fn write_config(
        &self,
        sims: &Simulators,
        api: SocketAddr,
        admin: SocketAddr,
        redis: Option<&str>,
    ) -> Result<PathBuf, DevError> {
        let providers = ProviderUrls {
            apns: sims.apns_endpoint(),
            apns_sandbox: Some(sims.apns_sandbox_endpoint()),
            fcm: sims.fcm_base_url(),
            token_uri: sims.token_uri(),
        };
        self.write_config_for(&providers, api, admin, redis)
    }

    /// [`DevFiles::write_config`] for simulators given by their URLs (simulators in another
    /// process, as the benchmark runs them).
    pub fn write_config_for(
        &self,
        urls: &ProviderUrls,
        api: SocketAddr,
        admin: SocketAddr,
        redis: Option<&str>,
    ) -> Result<PathBuf, DevError> {
        let ProviderUrls {
            apns,
            apns_sandbox,
            fcm,
            token_uri,
        } = urls;
        // With a sandbox simulator, bindings of either environment are pushed (a token's
        // environment is learned); without one, the production simulator alone.
        let sandbox = apns_sandbox
            .as_ref()
            .map(|url| format!("sandbox_endpoint = \"{url}\"\n"))
            .unwrap_or_default();
        let p = |name: &str| format!("{:?}", self.path(name).display().to_string());
        let redis = redis.unwrap_or("redis://127.0.0.1:6379");
        let config = format!(
            r#"# Written by `callpush dev`: development keys and simulated providers only.
# Without --redis the dev daemon keeps everything in its memory and ignores [redis]; commands
# that read Redis themselves (bindings, enqueue, dlq) reach this Redis, not the dev daemon.
[redis]
url = {redis:?}
key_prefix = "callpush-dev:"

[api]
listen = "{api}"

[admin]
listen = "{admin}"
token_file = {admin_token}

[auth]
account_sid = "{DEV_ACCOUNT_SID}"

[[auth.api_keys]]
sid = "{DEV_API_KEY_SID}"
secret_file = {secret}

[[credentials]]
sid = "{DEV_APNS_SID}"
platform = "apns"
bundle_id = "{bundle}"
team_id = "{team}"
key_id = "{key_id}"
key_file = {p8}
environment = "production"
endpoint = "{apns}"
{sandbox}send_cancel = true

[[credentials]]
sid = "{DEV_FCM_SID}"
platform = "fcm"
service_account_file = {sa}
base_url = "{fcm}"
token_uri = "{token_uri}"

[retry]
base_ms = 100
max_ms = 1000
max_attempts = 4
"#,
            admin_token = p("admin_token"),
            secret = p("api_key_secret"),
            bundle = callpush_sim::DEV_BUNDLE_ID,
            team = callpush_sim::DEV_TEAM_ID,
            key_id = callpush_sim::DEV_KEY_ID,
            p8 = p("apns_dev_key.p8"),
            sa = p("fcm_dev_service_account.json"),
        );
        self.write("callpush.toml", &config)?;
        Ok(self.path("callpush.toml"))
    }

    /// Remove the directory if `callpush dev` made it.
    pub fn clean_up(&self) {
        if self.temporary {
            if let Err(e) = std::fs::remove_dir_all(&self.dir) {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove the dev data dir");
            }
        }
    }
}
