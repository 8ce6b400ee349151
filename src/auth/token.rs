//! Access-token verification (SPEC §2): HS256 JWTs in the format Twilio's helper libraries mint
//! (`AccessToken` with a `VoiceGrant`).
//!
//! The order of checks matters: the token's shape and algorithm first, then the signature with
//! the API key its `iss` names, and only then the claims — so nobody learns anything about claim
//! rules without a valid signature. Every rejection says which claim and what was expected, and
//! nothing about the secret or which part of the signature failed.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use crate::event::check_identity;
use crate::secret::Secret;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const CLOCK_SKEW_SECS: u64 = 30;
/// Longest access token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// A verified access token: who the user is and what they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// `grants.identity`.
    pub identity: String,
    /// `grants.voice.push_credential_sid`, when present.
    pub push_credential_sid: Option<String>,
    /// `grants.voice.incoming.allow`.
    pub incoming_allowed: bool,
    /// The API key SID (`iss`) that signed it.
    pub api_key_sid: String,
}

impl VerifiedToken {
    /// Registration needs the incoming-call grant.
    pub fn require_incoming(&self) -> Result<(), TokenError> {
        if self.incoming_allowed {
            Ok(())
        } else {
            Err(TokenError::GrantMissing)
        }
    }
}

/// Why an access token was refused. `Display` is the message for the app developer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT at all.
    #[error("the access token is not a JWT: {0}")]
    Malformed(&'static str),
    /// Signed with something other than HS256 (including `none`).
    #[error("the access token's algorithm is {0:?}; only HS256 is accepted")]
    Algorithm(String),
    /// A required claim is absent or of the wrong type.
    #[error("the access token's `{claim}` claim must be {expected}")]
    Claim {
        /// The claim.
        claim: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// `iss` names no configured API key.
    #[error("the access token's `iss` is not an API key SID known to this server")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the access token's signature is not valid for the API key in `iss`")]
    BadSignature,
    /// `sub` is not the configured account.
    #[error("the access token's `sub` is not this server's account SID")]
    WrongAccount,
    /// `exp` has passed.
    #[error("the access token expired at {0} (Unix time); mint a new one")]
    Expired(u64),
    /// `nbf` is still ahead.
    #[error("the access token is not valid before {0} (Unix time)")]
    NotYetValid(u64),
    /// The lifetime is over `auth.max_token_ttl_secs`.
    #[error("the access token lives {lifetime} s; at most {max} s are allowed")]
    LifetimeTooLong {
        /// `exp - nbf`, or `exp - now` without `nbf`.
        lifetime: u64,
        /// The configured maximum.
        max: u64,
    },
    /// `grants.identity` is not usable.
    #[error("the access token's grants.identity {0}")]
    Identity(String),
    /// The voice grant does not allow incoming calls.
    #[error("the access token's voice grant does not allow incoming calls (grants.voice.incoming.allow must be true)")]
    GrantMissing,
}

impl TokenError {
    /// The SPEC §3 error code.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Expired(_) => "token_expired",
            TokenError::GrantMissing => "grant_missing",
            _ => "invalid_token",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            TokenError::GrantMissing => 403,
            _ => 401,
        }
    }
}

/// What verification needs from the configuration.
pub(super) struct TokenRules {
    pub account_sid: Option<String>,
    pub max_ttl_secs: u64,
    pub keys: HashMap<String, Secret>,
}

fn segment(part: &str, what: &'static str) -> Result<Map<String, Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| TokenError::Malformed(what))?;
    // Duplicate keys are refused: the minting backend may have read the other one.
    match crate::strict_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(TokenError::Malformed(what)),
    }
}

fn seconds(claims: &Map<String, Value>, claim: &'static str) -> Result<Option<u64>, TokenError> {
    match claims.get(claim) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .map(Some)
            .ok_or(TokenError::Claim {
                claim,
                expected: "a number of seconds since the Unix epoch",
            }),
    }
}

impl TokenRules {
    /// Verify `token` at `now` (seconds since the epoch).
    pub fn verify(&self, token: &str, now: u64) -> Result<VerifiedToken, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed("it is longer than 8 KiB"));
        }
        let mut parts = token.split('.');
        let (Some(head), Some(body), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed(
                "it must have three dot-separated parts",
            ));
        };
        let header = segment(head, "its header is not base64url-encoded JSON")?;
        match header.get("alg").and_then(Value::as_str) {
            Some("HS256") => {}
            Some(other) => return Err(TokenError::Algorithm(other.to_string())),
            None => return Err(TokenError::Algorithm(String::new())),
        }
        let claims = segment(body, "its claims are not base64url-encoded JSON")?;
        let iss = claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(TokenError::Claim {
                claim: "iss",
                expected: "the API key SID (SK…) that signed it",
            })?;
        let secret = self.keys.get(iss).ok_or(TokenError::UnknownKey)?;
        let signing_input = &token[..head.len() + 1 + body.len()];
        let valid = jsonwebtoken::crypto::verify(
            signature,
            signing_input.as_bytes(),
            &DecodingKey::from_secret(secret.expose()),
            Algorithm::HS256,
        )
        .unwrap_or(false);
        if !valid {
            return Err(TokenError::BadSignature);
        }

        let sub = claims.get("sub").and_then(Value::as_str);
        if sub.is_none() || sub != self.account_sid.as_deref() {
            return Err(TokenError::WrongAccount);
        }
        let exp = seconds(&claims, "exp")?.ok_or(TokenError::Claim {
            claim: "exp",
            expected: "present (tokens without an expiry are refused)",
        })?;
        if now > exp.saturating_add(CLOCK_SKEW_SECS) {
            return Err(TokenError::Expired(exp));
        }
        let nbf = seconds(&claims, "nbf")?;
        if let Some(nbf) = nbf {
            if now.saturating_add(CLOCK_SKEW_SECS) < nbf {
                return Err(TokenError::NotYetValid(nbf));
            }
        }
        let lifetime = exp.saturating_sub(nbf.unwrap_or(now));
        if lifetime > self.max_ttl_secs {
            return Err(TokenError::LifetimeTooLong {
                lifetime,
                max: self.max_ttl_secs,
            });
        }

        let grants = claims.get("grants").and_then(Value::as_object);
        let identity = grants
            .and_then(|g| g.get("identity"))
            .and_then(Value::as_str)
            .ok_or_else(|| TokenError::Identity("is missing".into()))?;
        check_identity(identity).map_err(TokenError::Identity)?;
        let voice = grants.and_then(|g| g.get("voice"));
        let incoming_allowed = voice
            .and_then(|v| v.pointer("/incoming/allow"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let push_credential_sid = voice
            .and_then(|v| v.get("push_credential_sid"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        Ok(VerifiedToken {
            identity: identity.to_string(),
            push_credential_sid,
            incoming_allowed,
            api_key_sid: iss.to_string(),
        })
    }
}
