//! Rate limits of the worker pool:
//! - per credential, `rate_limit_per_sec`: a throttled push waits for its turn, but never past
//!   its event's deadline;
//! - per callee, `limits.calls_per_identity_per_min`: `incoming` events over the limit are
//!   dead-lettered as `rate_limited`. `cancel` events are never limited: a phone that rang must
//!   always be told to stop.
//!
//! With `limits.scope = "daemon"` (the default) each daemon counts in this process (governor)
//! the share of the stream it reads, so N daemons let N times the limit through. With
//! `"cluster"` the limits are counted in Redis ([`cluster`]) and shared by every daemon; while
//! Redis does not answer, each daemon falls back to its own counting.

mod cluster;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use tracing::info;

use crate::config::{LimitScope, Settings};
use crate::domain::now_ms;
use crate::redis_conn::{Keys, RedisConn};
use cluster::{Cell, ClusterCounter, Granted};

/// One credential's rate limit.
struct CredentialLimit {
    per_sec: NonZeroU32,
    local: DefaultDirectRateLimiter,
}

/// The limits of one dispatcher. `Limits::default()` limits nothing.
#[derive(Default)]
pub struct Limits {
    credentials: HashMap<String, CredentialLimit>,
    calls_per_min: Option<NonZeroU32>,
    callees: Option<DefaultKeyedRateLimiter<Arc<str>>>,
    /// The limits shared by every daemon, with the keys they are counted under.
    shared: Option<(ClusterCounter, Keys)>,
}

impl Limits {
    /// The limits the settings ask for (a limit of 0 means none), counted in this process.
    pub fn new(settings: &Settings) -> Self {
        let credentials = settings
            .credentials
            .iter()
            .filter_map(|c| {
                let rate = match c {
                    crate::config::CredentialSettings::Apns(a) => a.rate_limit_per_sec,
                    crate::config::CredentialSettings::Fcm(f) => f.rate_limit_per_sec,
                };
                let per_sec = NonZeroU32::new(rate?)?;
                let local = RateLimiter::direct(Quota::per_second(per_sec));
                Some((c.sid().to_string(), CredentialLimit { per_sec, local }))
            })
            .collect();
        let calls_per_min = NonZeroU32::new(settings.limits.calls_per_identity_per_min);
        Limits {
            credentials,
            calls_per_min,
            callees: calls_per_min.map(|n| RateLimiter::keyed(Quota::per_minute(n))),
            shared: None,
        }
    }

    /// The limits of a daemon: counted in Redis when `limits.scope = "cluster"` and the daemon
    /// runs on Redis, else in this process. Needs a tokio runtime (it starts a task).
    pub fn for_daemon(settings: &Settings, redis: Option<&RedisConn>, keys: Keys) -> Self {
        let limits = Limits::new(settings);
        if settings.limits.scope != LimitScope::Cluster {
            return limits;
        }
        match redis {
            Some(conn) => limits.shared(conn.clone(), keys, settings.redis.cluster),
            None => {
                info!("limits.scope = \"cluster\" on the in-memory backend: one daemon, counted in it");
                limits
            }
        }
    }

    /// These limits, counted in Redis on `conn` under `keys` (see [`cluster`]).
    fn shared(mut self, conn: RedisConn, keys: Keys, split: bool) -> Self {
        self.shared = Some((ClusterCounter::start(conn, split), keys));
        self
    }

    /// Whether one more incoming call to `callee` is within its limit (and count it).
    pub async fn allow_call(&self, callee: &Arc<str>) -> bool {
        let Some(n) = self.calls_per_min else {
            return true;
        };
        if let Some((counter, keys)) = &self.shared {
            let cell = Cell {
                key: keys.named(&format!("limit:callee:{callee}")),
                interval_ms: 60_000.0 / f64::from(n.get()),
                burst: n.get(),
                max_wait_ms: 0,
            };
            if let Some(granted) = counter.take(cell).await {
                return granted == Granted::After(Duration::ZERO);
            }
        }
        self.callees
            .as_ref()
            .is_none_or(|l| l.check_key(callee).is_ok())
    }

    /// Wait until `credential` may send one more push. False when the deadline comes first.
    pub async fn wait_for_credential(&self, credential: &str, deadline_ms: u64) -> bool {
        let Some(limit) = self.credentials.get(credential) else {
            return true;
        };
        let left_ms = deadline_ms.saturating_sub(now_ms());
        if let Some((counter, keys)) = &self.shared {
            let cell = Cell {
                key: keys.named(&format!("limit:credential:{credential}")),
                interval_ms: 1_000.0 / f64::from(limit.per_sec.get()),
                burst: limit.per_sec.get(),
                max_wait_ms: left_ms,
            };
            match counter.take(cell).await {
                Some(Granted::After(wait)) => {
                    tokio::time::sleep(wait).await;
                    return true;
                }
                Some(Granted::Refused) => return false,
                None => {}
            }
        }
        let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms()));
        tokio::time::timeout(left, limit.local.until_ready())
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

    async fn allowed(limits: &Limits, callee: &Arc<str>, n: usize) -> usize {
        let mut allowed = 0;
        for _ in 0..n {
            allowed += usize::from(limits.allow_call(callee).await);
        }
        allowed
    }

    #[tokio::test]
    async fn callee_limit_counts_per_identity() {
        let limits = Limits::new(&settings("[limits]\ncalls_per_identity_per_min = 3\n"));
        let alice: Arc<str> = Arc::from("alice");
        let bob: Arc<str> = Arc::from("bob");
        assert_eq!(allowed(&limits, &alice, 3).await, 3);
        assert!(
            !limits.allow_call(&alice).await,
            "the 4th call in a minute is over"
        );
        assert!(limits.allow_call(&bob).await, "bob has his own budget");
        limits.forget_idle();
    }

    #[tokio::test]
    async fn zero_means_unlimited() {
        let limits = Limits::new(&settings("[limits]\ncalls_per_identity_per_min = 0\n"));
        let alice: Arc<str> = Arc::from("alice");
        assert_eq!(allowed(&limits, &alice, 1000).await, 1000);
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
