//! The APNs provider token: an ES256 JWT signed with the team's .p8 key, shared by every request
//! of one credential.
//!
//! Apple wants the token refreshed between 20 and 60 minutes: older than an hour it answers
//! `403 ExpiredProviderToken`, and a team that re-signs more often than every 20 minutes gets
//! `429 TooManyProviderTokenUpdates`. So one token is cached, re-signed when it is 40 minutes old,
//! and re-signed early only when Apple calls the token a request used expired — once per burst of
//! such answers, because every request of the burst carried the same token.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use http::HeaderValue;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::metrics::RefreshCounter;

/// The age at which the cached token is re-signed (Apple: between 20 and 60 minutes).
pub(crate) const REFRESH_AFTER: Duration = Duration::from_secs(40 * 60);

/// One signed provider token.
#[derive(Debug)]
pub(crate) struct Signed {
    // The header is marked sensitive: this derive never prints the JWT.
    /// `bearer <jwt>`, ready for the `authorization` header.
    pub(crate) authorization: HeaderValue,
    /// When it was signed, to know when to refresh it.
    signed_at: Instant,
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: u64,
}

/// The cached provider token of one credential and what it takes to sign a new one.
pub(crate) struct ProviderToken {
    key: EncodingKey,
    header: Header,
    team_id: String,
    current: RwLock<Arc<Signed>>,
    /// Re-signs since start, for `callpush_provider_token_refreshes_total`.
    pub(crate) refreshes: RefreshCounter,
}

impl std::fmt::Debug for ProviderToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither the key nor the token itself belongs in a log.
        f.debug_struct("ProviderToken")
            .field("kid", &self.header.kid)
            .field("iss", &self.team_id)
            .finish_non_exhaustive()
    }
}

impl ProviderToken {
    /// Sign a first token, which proves the key works before any push needs it.
    pub(crate) fn new(
        key: EncodingKey,
        key_id: &str,
        team_id: &str,
    ) -> Result<Self, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::ES256);
        // Apple's header is exactly {"alg","kid"}.
        header.typ = None;
        header.kid = Some(key_id.to_string());
        let first = sign(&key, &header, team_id)?;
        Ok(ProviderToken {
            key,
            header,
            team_id: team_id.to_string(),
            current: RwLock::new(Arc::new(first)),
            refreshes: RefreshCounter::default(),
        })
    }

    /// The token to send now, re-signed first when it is [`REFRESH_AFTER`] old.
    pub(crate) fn current(&self) -> Arc<Signed> {
        let token = self.read();
        if token.signed_at.elapsed() < REFRESH_AFTER {
            return token;
        }
        self.replace_if_current(&token, "provider token is 40 minutes old");
        self.read()
    }

    /// Apple answered `ExpiredProviderToken` to a request that carried `used`: re-sign, unless
    /// another request of the same burst already did.
    pub(crate) fn expired(&self, used: &Arc<Signed>) {
        self.replace_if_current(used, "APNs answered ExpiredProviderToken");
    }

    fn read(&self) -> Arc<Signed> {
        // A poisoned lock still holds a valid token: signing never panics half-way.
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn replace_if_current(&self, seen: &Arc<Signed>, why: &'static str) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if !Arc::ptr_eq(&current, seen) {
            return;
        }
        match sign(&self.key, &self.header, &self.team_id) {
            Ok(fresh) => {
                tracing::info!(kid = ?self.header.kid, why, "APNs provider token re-signed");
                *current = Arc::new(fresh);
                self.refreshes.succeeded();
            }
            // The key signed once at start, so this is not expected; keep the old token, which
            // Apple may still accept, rather than fail every push.
            Err(e) => {
                tracing::error!(error = %e, why, "cannot re-sign the APNs provider token");
                self.refreshes.failed();
            }
        }
    }
}

fn sign(
    key: &EncodingKey,
    header: &Header,
    team_id: &str,
) -> Result<Signed, jsonwebtoken::errors::Error> {
    let iat = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let jwt = jsonwebtoken::encode(header, &Claims { iss: team_id, iat }, key)?;
    let mut authorization = HeaderValue::try_from(format!("bearer {jwt}"))
        .expect("a JWT is base64url and dots, always a valid header value");
    // `Debug` of a sensitive value prints `Sensitive`, and HPACK keeps it out of its table.
    authorization.set_sensitive(true);
    Ok(Signed {
        authorization,
        signed_at: Instant::now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> ProviderToken {
        let pem = std::fs::read("tests/fixtures/apns_auth_key.p8").unwrap();
        let key = EncodingKey::from_ec_pem(&pem).unwrap();
        ProviderToken::new(key, "KEY1234567", "TEAM123456").unwrap()
    }

    fn parts(signed: &Signed) -> (serde_json::Value, serde_json::Value) {
        use base64::Engine;
        let jwt = signed.authorization.to_str().unwrap();
        let jwt = jwt.strip_prefix("bearer ").unwrap();
        let mut it = jwt.split('.').map(|p| {
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .unwrap();
            serde_json::from_slice::<serde_json::Value>(&raw).ok()
        });
        (it.next().unwrap().unwrap(), it.next().unwrap().unwrap())
    }

    #[test]
    fn token_has_apples_header_and_claims() {
        let t = token();
        let (header, claims) = parts(&t.current());
        assert_eq!(
            header,
            serde_json::json!({"alg": "ES256", "kid": "KEY1234567"})
        );
        assert_eq!(claims["iss"], "TEAM123456");
        let now = crate::domain::now_ms() / 1000;
        let iat = claims["iat"].as_u64().unwrap();
        assert!(iat <= now && now - iat < 60);
    }

    #[test]
    fn neither_the_key_nor_the_jwt_prints() {
        let t = token();
        let signed = t.current();
        let jwt = signed.authorization.to_str().unwrap().to_string();
        let shown = format!("{signed:?} {t:?}");
        let signature = jwt.rsplit('.').next().unwrap();
        assert!(!shown.contains(signature), "{shown}");
    }

    #[test]
    fn token_is_cached_until_it_is_reported_expired() {
        let t = token();
        let first = t.current();
        assert!(Arc::ptr_eq(&first, &t.current()));
        t.expired(&first);
        let second = t.current();
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(t.refreshes.snapshot(), (1, 0));
        // A late 403 for the first token must not throw away the second.
        t.expired(&first);
        assert!(Arc::ptr_eq(&second, &t.current()));
    }

    #[test]
    fn token_is_refreshed_when_forty_minutes_old() {
        let t = token();
        let first = t.current();
        let Some(old) = Instant::now().checked_sub(REFRESH_AFTER) else {
            return; // the machine booted less than 40 minutes ago: nothing to age
        };
        *t.current.write().unwrap() = Arc::new(Signed {
            authorization: first.authorization.clone(),
            signed_at: old,
        });
        let refreshed = t.current();
        assert!(refreshed.signed_at > old);
    }
}
