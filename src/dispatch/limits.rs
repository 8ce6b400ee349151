//! Rate limits of the worker pool (governor, in this process; each daemon of a group applies
//! them to the share of the stream it reads):
//! - per credential, `rate_limit_per_sec`: a throttled push waits for its turn, but never past
//!   its event's deadline;
//! - per callee, `limits.calls_per_identity_per_min`: `incoming` events over the limit are
//!   dead-lettered as `rate_limited`. `cancel` events are never limited: a phone that rang must
//!   always be told to stop.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::Settings;
use crate::domain::now_ms;

/// The limits of one dispatcher. `Limits::default()` limits nothing.
#[derive(Default)]
pub struct Limits {
    credentials: HashMap<String, DefaultDirectRateLimiter>,
    callees: Option<DefaultKeyedRateLimiter<Arc<str>>>,
}

impl Limits {
    /// The limits the settings ask for (a limit of 0 means none).
    pub fn new(settings: &Settings) -> Self {
        let credentials = settings
            .credentials
            .iter()
            .filter_map(|c| {
                let rate = match c {
                    crate::config::CredentialSettings::Apns(a) => a.rate_limit_per_sec,
                    crate::config::CredentialSettings::Fcm(f) => f.rate_limit_per_sec,
                };
                let rate = NonZeroU32::new(rate?)?;
                Some((
                    c.sid().to_string(),
                    RateLimiter::direct(Quota::per_second(rate)),
                ))
            })
            .collect();
        let callees = NonZeroU32::new(settings.limits.calls_per_identity_per_min)
            .map(|n| RateLimiter::keyed(Quota::per_minute(n)));
        Limits {
            credentials,
            callees,
        }
    }

    /// Whether one more incoming call to `callee` is within its limit (and count it).
    pub fn allow_call(&self, callee: &Arc<str>) -> bool {
        self.callees
            .as_ref()
            .is_none_or(|l| l.check_key(callee).is_ok())
    }

    /// Wait until `credential` may send one more push. False when the deadline comes first.
    pub async fn wait_for_credential(&self, credential: &str, deadline_ms: u64) -> bool {
        let Some(limiter) = self.credentials.get(credential) else {
            return true;
        };
        let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms()));
        tokio::time::timeout(left, limiter.until_ready())
            .await
            .is_ok()
    }

    /// Forget callees that have not called lately, so the keyed state stays bounded.
    pub fn forget_idle(&self) {
        if let Some(l) = &self.callees {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml: &str) -> Settings {
        Settings::from_toml_with_env(toml, Vec::new()).unwrap()
    }

    #[test]
    fn callee_limit_counts_per_identity() {
        let limits = Limits::new(&settings("[limits]\ncalls_per_identity_per_min = 3\n"));
        let alice: Arc<str> = Arc::from("alice");
        let bob: Arc<str> = Arc::from("bob");
        assert!((0..3).all(|_| limits.allow_call(&alice)));
        assert!(
            !limits.allow_call(&alice),
            "the 4th call in a minute is over"
        );
        assert!(limits.allow_call(&bob), "bob has his own budget");
        limits.forget_idle();
    }

    #[test]
    fn zero_means_unlimited() {
        let limits = Limits::new(&settings("[limits]\ncalls_per_identity_per_min = 0\n"));
        let alice: Arc<str> = Arc::from("alice");
        assert!((0..1000).all(|_| limits.allow_call(&alice)));
    }

    #[tokio::test]
    async fn a_throttled_push_gives_up_at_the_deadline() {
        let s = settings(
            "[[credentials]]\nsid=\"CR1\"\nplatform=\"fcm\"\nservice_account_file=\"/f\"\nrate_limit_per_sec=1\n",
        );
        let limits = Limits::new(&s);
        let deadline = now_ms() + 200;
        assert!(limits.wait_for_credential("CR1", deadline).await);
        assert!(
            !limits.wait_for_credential("CR1", deadline).await,
            "the next slot is a second away, past the deadline"
        );
        assert!(limits.wait_for_credential("CR-other", deadline).await);
    }
}
