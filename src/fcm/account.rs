//! Google's service-account JSON: the identity callpush signs OAuth2 assertions with.
//!
//! Only the fields the JWT-bearer flow needs are read; the rest of the file (`client_id`,
//! `auth_uri`, certificate URLs, …) is ignored, so files downloaded from the Cloud console work
//! unchanged. The credential's `project_id` and `token_uri` settings override the file.

use std::path::Path;

use jsonwebtoken::EncodingKey;
use serde::Deserialize;

use super::FcmError;

/// Google's OAuth2 token endpoint, used when neither the file nor the settings name one.
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// The fields of a service-account file as written; all optional so a missing one can be named.
#[derive(Deserialize)]
struct RawAccount {
    #[serde(rename = "type")]
    kind: Option<String>,
    project_id: Option<String>,
    private_key_id: Option<String>,
    private_key: Option<String>,
    client_email: Option<String>,
    token_uri: Option<String>,
}

/// A loaded service account, with the settings' overrides applied.
pub(crate) struct ServiceAccount {
    /// The Firebase project pushes are sent for.
    pub project_id: String,
    /// The id of the signing key, sent as the JWT `kid` so Google picks the right public key.
    pub private_key_id: Option<String>,
    /// The RSA private key (RS256).
    pub key: EncodingKey,
    /// The service account's e-mail, the assertion's issuer.
    pub client_email: String,
    /// Where access tokens are fetched, also the assertion's audience.
    pub token_uri: String,
}

impl ServiceAccount {
    /// Read and check the file at `path`; `project_id` and `token_uri` replace the file's values.
    pub fn load(
        path: &Path,
        project_id: Option<&str>,
        token_uri: Option<&str>,
    ) -> Result<ServiceAccount, FcmError> {
        let file = path.display().to_string();
        let text = std::fs::read(path).map_err(|source| FcmError::Read {
            file: file.clone(),
            source,
        })?;
        let raw: RawAccount = serde_json::from_slice(&text).map_err(|source| FcmError::Json {
            file: file.clone(),
            source,
        })?;
        let bad = |field: &'static str, reason: &str| FcmError::BadField {
            file: file.clone(),
            field,
            reason: reason.to_string(),
        };
        let required = |field: &'static str, value: Option<String>| match value {
            Some(v) if !v.trim().is_empty() => Ok(v),
            _ => Err(FcmError::MissingField {
                file: file.clone(),
                field,
            }),
        };
        if let Some(kind) = &raw.kind {
            if kind != "service_account" {
                return Err(bad("type", "must be \"service_account\""));
            }
        }
        let project_id = required(
            "project_id",
            project_id.map(str::to_string).or(raw.project_id),
        )?;
        // Project ids go into the request path; Google's allow letters, digits, `-`, and a
        // `domain:` prefix for legacy domain-scoped projects.
        if !project_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '_'))
        {
            return Err(bad("project_id", "holds characters no project id has"));
        }
        let private_key = required("private_key", raw.private_key)?;
        let key = EncodingKey::from_rsa_pem(private_key.as_bytes())
            .map_err(|_| bad("private_key", "is not an RSA private key in PEM form"))?;
        let client_email = required("client_email", raw.client_email)?;
        let token_uri = token_uri
            .map(str::to_string)
            .or(raw.token_uri)
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| GOOGLE_TOKEN_URI.to_string());
        Ok(ServiceAccount {
            project_id,
            private_key_id: raw.private_key_id.filter(|k| !k.is_empty()),
            key,
            client_email,
            token_uri,
        })
    }
}
