//! OAuth2 access tokens for FCM, from the service account (Google's JWT-bearer flow).
//!
//! An RS256 assertion signed with the service-account key is traded at `token_uri` for an access
//! token that lasts about an hour. The token is cached and shared by every push of the
//! credential, and refreshed ahead of expiry: when less than 5 minutes or 10 % of its lifetime
//! is left (whichever is larger, but never in the first half of its life, so short-lived tokens
//! are not refetched for every push). Only one refresh runs at a time: concurrent pushes wait
//! for it and reuse its result, success or failure, instead of each asking Google.

use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::account::ServiceAccount;
use crate::providers::answer::{label, retry_after, unanswered};
use crate::providers::{Failure, Outcome};
use crate::transport::{H2Pool, Response};

/// The scope FCM's HTTP v1 API asks for.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// How long an assertion is valid; Google accepts at most an hour.
const ASSERTION_LIFETIME_SECS: u64 = 3600;
/// Refresh at the latest this long before the token expires…
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// …or when this fraction of its lifetime is left, whichever comes first.
const REFRESH_FRACTION: u32 = 10;
/// After a failed refresh, pushes reuse its answer this long instead of asking again.
const FAILURE_HOLD: Duration = Duration::from_secs(1);
/// The longest `expires_in` taken as it is (Google grants an hour): the token endpoint's
/// number is bounded before it is added to a clock, which a huge one would overflow.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// A cached access token.
#[derive(Debug)]
pub(crate) struct AccessToken {
    /// The bearer value, as granted (the pushes send [`AccessToken::authorization`]; the tests
    /// read this).
    #[cfg_attr(not(test), allow(dead_code))]
    pub value: crate::secret::Secret,
    /// `Bearer <value>`, encoded once for every push it signs, marked sensitive: kept out of
    /// HPACK's dynamic table and out of any header dump.
    pub authorization: http::HeaderValue,
    expires_at: Instant,
    refresh_at: Instant,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct Granted {
    access_token: String,
    expires_in: u64,
}

#[derive(Deserialize, Default)]
struct TokenError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

/// Fetches, caches and refreshes the access token of one service account.
pub(crate) struct TokenSource {
    pool: Arc<H2Pool>,
    path: String,
    token_uri: String,
    client_email: String,
    key: EncodingKey,
    header: Header,
    current: StdMutex<Option<Arc<AccessToken>>>,
    /// Held while a refresh runs; keeps when the last refresh failed and how.
    refresh: Mutex<Option<(Instant, Outcome)>>,
    /// Fetches since start, for `callpush_provider_token_refreshes_total`.
    pub(crate) refreshes: crate::metrics::RefreshCounter,
}

impl TokenSource {
    /// A source for `account`, fetching through `pool` (which serves the token URI's origin).
    pub fn new(account: &ServiceAccount, pool: Arc<H2Pool>, path: String) -> Self {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = account.private_key_id.clone();
        TokenSource {
            pool,
            path,
            token_uri: account.token_uri.clone(),
            client_email: account.client_email.clone(),
            key: account.key.clone(),
            header,
            current: StdMutex::new(None),
            refresh: Mutex::new(None),
            refreshes: Default::default(),
        }
    }

    /// A signed assertion for now; fails only when the key cannot sign.
    pub fn assertion(&self) -> Result<String, jsonwebtoken::errors::Error> {
        let iat = crate::domain::now_ms() / 1000;
        let claims = Claims {
            iss: &self.client_email,
            scope: FCM_SCOPE,
            aud: &self.token_uri,
            iat,
            exp: iat + ASSERTION_LIFETIME_SECS,
        };
        jsonwebtoken::encode(&self.header, &claims, &self.key)
    }

    /// A token fit for a push, fetching one when the cached one is due for refresh. The error
    /// is the outcome the push ends with (Retry or Rejected).
    pub async fn get(&self) -> Result<Arc<AccessToken>, Outcome> {
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        let asked_at = Instant::now();
        let mut last_failure = self.refresh.lock().await;
        // Whoever held the lock before us may have refreshed already, or just failed: either
        // way its answer is ours too.
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        if let Some((failed_at, outcome)) = last_failure.as_ref() {
            // While the endpoint fails, ask it at most once per FAILURE_HOLD, not once per push.
            if *failed_at >= asked_at || failed_at.elapsed() < FAILURE_HOLD {
                return self.unexpired().ok_or_else(|| outcome.clone());
            }
        }
        // Boxed: inline, the fetch's ~5 KB future would be part of every push's future.
        match Box::pin(self.fetch()).await {
            Ok(token) => {
                self.refreshes.succeeded();
                *last_failure = None;
                *self.current.lock().expect("token lock") = Some(token.clone());
                Ok(token)
            }
            Err(outcome) => {
                self.refreshes.failed();
                *last_failure = Some((Instant::now(), outcome.clone()));
                // A token due for refresh may still have minutes to live: better than no push.
                match self.unexpired() {
                    Some(token) => {
                        tracing::warn!(reason = %failure_reason(&outcome), "access token refresh failed; using the current token until it expires");
                        Ok(token)
                    }
                    None => Err(outcome),
                }
            }
        }
    }

    /// Forget `used`, which FCM refused, unless a newer token already replaced it.
    pub fn invalidate(&self, used: &Arc<AccessToken>) {
        let mut current = self.current.lock().expect("token lock");
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, used)) {
            *current = None;
        }
    }

    fn current(&self) -> Option<Arc<AccessToken>> {
        self.current.lock().expect("token lock").clone()
    }

    fn unexpired(&self) -> Option<Arc<AccessToken>> {
        self.current().filter(|t| t.expires_at > Instant::now())
    }

    fn fresh(&self) -> Option<Arc<AccessToken>> {
        self.current().filter(|t| t.refresh_at > Instant::now())
    }

    async fn fetch(&self) -> Result<Arc<AccessToken>, Outcome> {
        let assertion = self.assertion().map_err(|e| {
            Outcome::Rejected(Failure::new(
                "oauth_signing",
                format!("cannot sign the OAuth assertion: {e}"),
            ))
        })?;
        let form = format!(
            "grant_type={}&assertion={}",
            utf8_percent_encode(JWT_BEARER, NON_ALPHANUMERIC),
            utf8_percent_encode(&assertion, NON_ALPHANUMERIC)
        );
        let request = Request::post(self.path.as_str())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Bytes::from(form))
            .expect("a POST with static headers is a valid request");
        let sent_at = Instant::now();
        let response = self
            .pool
            .send(request)
            .await
            .map_err(|e| unanswered("OAuth token endpoint", &e))?;
        let token = granted(&response, sent_at)?;
        tracing::debug!(token_uri = %self.token_uri, "fetched an FCM access token");
        Ok(Arc::new(token))
    }
}

fn failure_reason(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Retry { failure, .. }
        | Outcome::OverQuota { failure, .. }
        | Outcome::Rejected(failure) => &failure.reason,
        Outcome::InvalidToken { failure, .. } => &failure.reason,
        Outcome::Delivered => "",
    }
}

/// Classify the token endpoint's answer to a request sent at `sent_at`.
fn granted(response: &Response, sent_at: Instant) -> Result<AccessToken, Outcome> {
    let status = response.status;
    if status.is_success() {
        let granted: Granted =
            serde_json::from_slice(&response.body).map_err(|e| Outcome::Retry {
                failure: Failure::new(
                    "oauth_bad_response",
                    format!("OAuth token endpoint answered {status} with an unreadable body: {e}"),
                ),
                retry_after: None,
            })?;
        let lifetime = Duration::from_secs(granted.expires_in).min(MAX_LIFETIME);
        let margin = REFRESH_MARGIN
            .max(lifetime / REFRESH_FRACTION)
            .min(lifetime / 2);
        let mut authorization =
            http::HeaderValue::try_from(format!("Bearer {}", granted.access_token))
                .unwrap_or_else(|_| http::HeaderValue::from_static("Bearer"));
        authorization.set_sensitive(true);
        return Ok(AccessToken {
            authorization,
            value: crate::secret::Secret::new(granted.access_token),
            expires_at: sent_at + lifetime,
            refresh_at: sent_at + lifetime - margin,
        });
    }
    let error: TokenError = serde_json::from_slice(&response.body).unwrap_or_default();
    let code = Some(error.error.as_str()).filter(|c| !c.is_empty());
    let reason = format!("oauth_{}", label(code, status));
    let mut detail = format!("OAuth token endpoint {} {}", status.as_u16(), error.error);
    if !error.error_description.is_empty() {
        detail = format!("{}: {}", detail.trim_end(), error.error_description);
    }
    let failure = Failure::new(reason, detail.trim_end().to_string());
    if status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
    {
        Err(Outcome::Retry {
            failure,
            retry_after: retry_after(&response.headers),
        })
    } else {
        // 400 invalid_grant, 401 invalid_client, …: the key or the account is wrong, and
        // asking again with the same key gets the same answer.
        Err(Outcome::Rejected(failure))
    }
}

#[cfg(test)]
#[path = "oauth_tests.rs"]
mod tests;
