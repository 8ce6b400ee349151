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
//!
//! A reload ([`Rules::apply`]) swaps in the limits of the new configuration: a limit that
//! changed (or a credential that is new) counts afresh in this process from the reload on; an
//! unchanged one keeps its counts. `limits.scope` itself needs a restart.

mod cluster;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
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

/// The limits counted in this process, replaced whole by a reload ([`Rules::apply`]).
#[derive(Default)]
struct Local {
    credentials: HashMap<String, Arc<CredentialLimit>>,
    calls_per_min: Option<NonZeroU32>,
    callees: Option<Arc<DefaultKeyedRateLimiter<Arc<str>>>>,
}

/// The limits of the settings, swapped by a reload; shared by the pool and the reloader.
#[derive(Default)]
pub struct Rules {
    current: RwLock<Arc<Local>>,
}

impl Rules {
    fn local(&self) -> Arc<Local> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Count with the limits of `settings` from now on (`limits.calls_per_identity_per_min`
    /// and each credential's `rate_limit_per_sec`, credentials added by a reload included). A
    /// limit that changed, or is new, starts counting afresh; one that did not keeps its
    /// counts. The cluster's counts (`limits.scope = "cluster"`) live in Redis and carry on
    /// under the new numbers.
    pub fn apply(&self, settings: &Settings) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        let mut credentials = HashMap::new();
        for c in &settings.credentials {
            let rate = match c {
                crate::config::CredentialSettings::Apns(a) => a.rate_limit_per_sec,
                crate::config::CredentialSettings::Fcm(f) => f.rate_limit_per_sec,
            };
            let Some(per_sec) = rate.and_then(NonZeroU32::new) else {
                continue;
            };
            let limit = match current.credentials.get(c.sid()) {
                Some(kept) if kept.per_sec == per_sec => kept.clone(),
                _ => Arc::new(CredentialLimit {
                    per_sec,
                    local: RateLimiter::direct(Quota::per_second(per_sec)),
                }),
            };
            credentials.insert(c.sid().to_string(), limit);
        }
        let calls_per_min = NonZeroU32::new(settings.limits.calls_per_identity_per_min);
        let callees = match &current.callees {
            Some(kept) if current.calls_per_min == calls_per_min => Some(kept.clone()),
            _ => calls_per_min.map(|n| Arc::new(RateLimiter::keyed(Quota::per_minute(n)))),
        };
        *current = Arc::new(Local {
            credentials,
            calls_per_min,
            callees,
        });
    }
}

/// The limits of one dispatcher. `Limits::default()` limits nothing.
#[derive(Default)]
pub struct Limits {
    rules: Arc<Rules>,
    /// The limits shared by every daemon, with the keys they are counted under.
    shared: Option<(ClusterCounter, Keys)>,
}

impl Limits {
    /// The limits the settings ask for (a limit of 0 means none), counted in this process.
    pub fn new(settings: &Settings) -> Self {
        let rules = Rules::default();
        rules.apply(settings);
        Limits {
            rules: Arc::new(rules),
            shared: None,
        }
    }

    /// What a reload swaps.
    pub fn rules(&self) -> Arc<Rules> {
        self.rules.clone()
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
        let local = self.rules.local();
        let Some(n) = local.calls_per_min else {
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
        local
            .callees
            .as_ref()
            .is_none_or(|l| l.check_key(callee).is_ok())
    }

    /// Wait until `credential` may send one more push. False when the deadline comes first.
    pub async fn wait_for_credential(&self, credential: &str, deadline_ms: u64) -> bool {
        let local = self.rules.local();
        let Some(limit) = local.credentials.get(credential) else {
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
        if let Some(l) = &self.rules.local().callees {
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

    #[tokio::test]
    async fn a_reload_lowers_the_callee_limit_and_adds_a_credential_limit() {
        let limits = Limits::new(&settings("[limits]\ncalls_per_identity_per_min = 100\n"));
        let alice: Arc<str> = Arc::from("alice");
        assert_eq!(allowed(&limits, &alice, 5).await, 5);
        limits.rules().apply(&settings(
            "[limits]\ncalls_per_identity_per_min = 2\n[[credentials]]\nsid=\"CR2\"\nplatform=\"fcm\"\nservice_account_file=\"/f\"\nrate_limit_per_sec=1\n",
        ));
        assert_eq!(
            allowed(&limits, &alice, 5).await,
            2,
            "counted afresh under the new limit"
        );
        let deadline = now_ms() + 200;
        assert!(limits.wait_for_credential("CR2", deadline).await);
        assert!(!limits.wait_for_credential("CR2", deadline).await);
    }
}
