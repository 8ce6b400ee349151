//! Authentication: access tokens of mobile apps (SPEC §2), the admin bearer token, and minting
//! tokens for trying the API (`callpush token`).
//!
//! [`Auth`] is built once at start from the settings: it reads every API key secret and the
//! admin token (from files or the environment, never the command line) and holds them as
//! [`Secret`]s that never print.

mod token;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::config::Settings;
use crate::domain::Platform;

pub use crate::secret::{Secret, SecretError};
pub use token::{TokenError, VerifiedToken, CLOCK_SKEW_SECS, MAX_TOKEN_BYTES};

/// The environment variable that may hold the admin token instead of `admin.token_file`.
pub const ADMIN_TOKEN_ENV: &str = "CALLPUSH_ADMIN_TOKEN";

/// A secret the configuration names could not be loaded, or a token cannot be minted.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// An API key's secret.
    #[error("auth.api_keys {sid}: {source}")]
    ApiKey {
        /// The API key SID.
        sid: String,
        /// What went wrong.
        #[source]
        source: SecretError,
    },
    /// The admin token.
    #[error("admin.token_file (or CALLPUSH_ADMIN_TOKEN): {0}")]
    AdminToken(#[source] SecretError),
    /// Minting needs an API key and the account SID.
    #[error("cannot mint a token: {0}")]
    Mint(&'static str),
    /// Minting asked for a credential that is not configured.
    #[error("{0}")]
    Credential(#[from] CredentialChoiceError),
    /// Signing failed.
    #[error("cannot sign the token: {0}")]
    Sign(#[source] jsonwebtoken::errors::Error),
    /// The Twilio webhook's auth token or URL.
    #[error(transparent)]
    Twilio(#[from] crate::twilio::WebhookConfigError),
}

/// No credential fits a registration; maps to 400 `invalid_request`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CredentialChoiceError(String);

/// Access-token verification, the admin token and the Twilio webhook's secrets: built at
/// start, and replaced whole by a reload ([`Auth::replace`]). A request checks against the
/// secrets current when it is checked; nothing is half-replaced.
pub struct Auth {
    loaded: RwLock<Arc<Loaded>>,
}

/// One load of the secrets.
struct Loaded {
    rules: token::TokenRules,
    admin: Option<Secret>,
    credentials: Vec<(String, Platform)>,
    twilio: Option<Arc<crate::twilio::Webhook>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let now = self.now();
        f.debug_struct("Auth")
            .field("api_keys", &now.rules.keys.keys().collect::<Vec<_>>())
            .field("admin_token", &now.admin.as_ref().map(|_| "***"))
            .finish()
    }
}

fn api_key_secrets(settings: &Settings) -> Result<HashMap<String, Secret>, AuthConfigError> {
    settings
        .auth
        .api_keys
        .iter()
        .map(|k| {
            let secret = match (&k.secret_file, &k.secret_env) {
                (Some(path), _) => Secret::from_file(path),
                (None, Some(var)) => Secret::from_env(var),
                (None, None) => Err(SecretError::Empty("secret_file".into())),
            };
            secret
                .map(|s| (k.sid.clone(), s))
                .map_err(|source| AuthConfigError::ApiKey {
                    sid: k.sid.clone(),
                    source,
                })
        })
        .collect()
}

/// The admin token of the settings: `admin.token_file`, else `CALLPUSH_ADMIN_TOKEN`, else none.
/// The daemon checks requests against it; `callpush dlq --admin` presents it.
pub fn admin_token(settings: &Settings) -> Result<Option<Secret>, AuthConfigError> {
    match &settings.admin.token_file {
        Some(path) => Ok(Some(
            Secret::from_file(path).map_err(AuthConfigError::AdminToken)?,
        )),
        None => match std::env::var(ADMIN_TOKEN_ENV) {
            Ok(_) => Ok(Some(
                Secret::from_env(ADMIN_TOKEN_ENV).map_err(AuthConfigError::AdminToken)?,
            )),
            Err(_) => Ok(None),
        },
    }
}

impl Auth {
    /// Load every secret the settings name. The admin token comes from `admin.token_file`, else
    /// `CALLPUSH_ADMIN_TOKEN`; without either, every admin route answers 401.
    pub fn from_settings(settings: &Settings) -> Result<Auth, AuthConfigError> {
        let admin = admin_token(settings)?;
        let loaded = Loaded {
            rules: token::TokenRules {
                account_sid: settings.auth.account_sid.clone(),
                max_ttl_secs: settings.auth.max_token_ttl_secs,
                keys: api_key_secrets(settings)?,
            },
            admin,
            credentials: settings
                .credentials
                .iter()
                .map(|c| (c.sid().to_string(), c.platform()))
                .collect(),
            twilio: crate::twilio::Webhook::from_settings(settings)?.map(Arc::new),
        };
        Ok(Auth {
            loaded: RwLock::new(Arc::new(loaded)),
        })
    }

    /// From now on, check against `other`'s secrets (a reload); requests being checked finish
    /// with the ones they started with.
    pub fn replace(&self, other: Auth) {
        let new = other.now();
        *self.loaded.write().expect("never poisoned") = new;
    }

    fn now(&self) -> Arc<Loaded> {
        self.loaded.read().expect("never poisoned").clone()
    }

    /// The API key SIDs that sign access tokens.
    pub fn api_key_sids(&self) -> Vec<String> {
        let mut sids: Vec<String> = self.now().rules.keys.keys().cloned().collect();
        sids.sort();
        sids
    }

    /// The Twilio webhook's secrets and settings; `None` when no auth token is configured.
    pub fn twilio(&self) -> Option<Arc<crate::twilio::Webhook>> {
        self.now().twilio.clone()
    }

    /// Verify an access token (the raw JWT, without `Bearer `) at `now_secs`.
    pub fn verify(&self, token: &str, now_secs: u64) -> Result<VerifiedToken, TokenError> {
        self.now().rules.verify(token, now_secs)
    }

    /// The credential a registration goes to: the grant's `push_credential_sid` (configured, of
    /// `platform`), else the single configured credential of `platform`.
    pub fn credential_for(
        &self,
        token: &VerifiedToken,
        platform: Platform,
    ) -> Result<String, CredentialChoiceError> {
        pick_credential(
            &self.now().credentials,
            platform,
            token.push_credential_sid.as_deref(),
        )
    }

    /// Whether an admin token is configured.
    pub fn has_admin_token(&self) -> bool {
        self.now().admin.is_some()
    }

    /// Whether `presented` is the admin token (constant time); false when none is configured.
    pub fn admin_token_matches(&self, presented: &str) -> bool {
        self.now()
            .admin
            .as_ref()
            .is_some_and(|s| s.matches(presented))
    }
}

/// Pick a credential of `platform`: the named one (which must be configured and of that
/// platform), or the only one of that platform.
pub fn pick_credential(
    credentials: &[(String, Platform)],
    platform: Platform,
    named: Option<&str>,
) -> Result<String, CredentialChoiceError> {
    let of_platform: Vec<&str> = credentials
        .iter()
        .filter(|(_, p)| *p == platform)
        .map(|(sid, _)| sid.as_str())
        .collect();
    match named {
        Some(sid) if of_platform.contains(&sid) => Ok(sid.to_string()),
        Some(sid) if credentials.iter().any(|(s, _)| s == sid) => Err(CredentialChoiceError(
            format!("push credential {sid} is not an {platform} credential"),
        )),
        Some(sid) => Err(CredentialChoiceError(format!(
            "push credential {sid} is not configured on this server"
        ))),
        None => match of_platform.as_slice() {
            [one] => Ok(one.to_string()),
            [] => Err(CredentialChoiceError(format!(
                "no {platform} push credential is configured"
            ))),
            _ => Err(CredentialChoiceError(format!(
                "several {platform} push credentials are configured; the access token must name one in grants.voice.push_credential_sid"
            ))),
        },
    }
}

/// Mint an access token in the Twilio format with the first configured API key, for `identity`,
/// valid `ttl_secs` from `now_secs`, with the incoming-call grant (and `credential` as
/// `push_credential_sid` when given).
pub fn mint(
    settings: &Settings,
    identity: &str,
    ttl_secs: u64,
    credential: Option<&str>,
    now_secs: u64,
) -> Result<String, AuthConfigError> {
    let account = settings
        .auth
        .account_sid
        .as_deref()
        .ok_or(AuthConfigError::Mint("auth.account_sid is not configured"))?;
    let key = settings
        .auth
        .api_keys
        .first()
        .ok_or(AuthConfigError::Mint("no auth.api_keys are configured"))?;
    let secret = api_key_secrets(settings)?
        .remove(&key.sid)
        .expect("every configured key was loaded");
    if let Some(sid) = credential {
        if !settings.credentials.iter().any(|c| c.sid() == sid) {
            return Err(
                CredentialChoiceError(format!("push credential {sid} is not configured")).into(),
            );
        }
    }
    let mut voice = serde_json::json!({"incoming": {"allow": true}});
    if let Some(sid) = credential {
        voice["push_credential_sid"] = sid.into();
    }
    let claims = serde_json::json!({
        "jti": format!("{}-{now_secs}", key.sid),
        "iss": key.sid,
        "sub": account,
        "nbf": now_secs,
        "exp": now_secs + ttl_secs,
        "grants": {"identity": identity, "voice": voice},
    });
    let header = Header {
        typ: Some("JWT".into()),
        cty: Some("twilio-fpa;v=1".into()),
        ..Header::new(Algorithm::HS256)
    };
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret.expose()))
        .map_err(AuthConfigError::Sign)
}
