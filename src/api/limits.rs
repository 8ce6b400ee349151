//! Rate limits on registration (`POST`/`DELETE /v1/registrations`): one keyed GCRA limiter per
//! identity and one per client address, from `limits.registrations_per_identity_per_min` and
//! `limits.registrations_per_address_per_min` (0 turns a limit off). A limit of N allows a burst
//! of N and refills one request every 60/N seconds, so the N+1th request within a minute waits.
//!
//! The client address is the socket's peer address: a proxy's `X-Forwarded-For` is not
//! trusted, since any client can set it. Keyed state grows with every new key, so
//! [`RegistrationLimits::prune`] runs on a timer to drop keys whose limit has fully refilled.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::LimitSettings;

/// How often keyed limiter state is pruned.
pub const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The registration limiters; a reload ([`RegistrationLimits::apply`]) swaps in new ones.
pub struct RegistrationLimits {
    current: RwLock<Arc<Keyed>>,
    clock: DefaultClock,
}

/// One set of limiters and the limits they count.
struct Keyed {
    per_identity: (u32, Option<Arc<DefaultKeyedRateLimiter<String>>>),
    per_address: (u32, Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>),
}

fn keyed<K>(per_min: u32) -> Option<DefaultKeyedRateLimiter<K>>
where
    K: std::hash::Hash + Eq + Clone,
{
    NonZeroU32::new(per_min).map(|n| RateLimiter::keyed(Quota::per_minute(n)))
}

impl RegistrationLimits {
    /// Limiters sized from the settings.
    pub fn new(settings: &LimitSettings) -> Self {
        let (identity, address) = (
            settings.registrations_per_identity_per_min,
            settings.registrations_per_address_per_min,
        );
        RegistrationLimits {
            current: RwLock::new(Arc::new(Keyed {
                per_identity: (identity, keyed(identity).map(Arc::new)),
                per_address: (address, keyed(address).map(Arc::new)),
            })),
            clock: DefaultClock::default(),
        }
    }

    /// Count with the limits of `settings` from now on (a reload). A limit that changed starts
    /// counting afresh; one that did not keeps its counts.
    pub fn apply(&self, settings: &LimitSettings) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        let (identity, address) = (
            settings.registrations_per_identity_per_min,
            settings.registrations_per_address_per_min,
        );
        let per_identity = match &current.per_identity {
            kept @ (n, _) if *n == identity => kept.clone(),
            _ => (identity, keyed(identity).map(Arc::new)),
        };
        let per_address = match &current.per_address {
            kept @ (n, _) if *n == address => kept.clone(),
            _ => (address, keyed(address).map(Arc::new)),
        };
        *current = Arc::new(Keyed {
            per_identity,
            per_address,
        });
    }

    fn keyed(&self) -> Arc<Keyed> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Count one registration request from `address`; `Err` holds how long until the next is
    /// allowed.
    pub fn check_address(&self, address: IpAddr) -> Result<(), Duration> {
        match &self.keyed().per_address.1 {
            Some(limiter) => limiter
                .check_key(&address)
                .map_err(|not_until| not_until.wait_time_from(self.clock.now())),
            None => Ok(()),
        }
    }

    /// Count one registration request of `identity`; `Err` holds how long until the next is
    /// allowed.
    pub fn check_identity(&self, identity: &str) -> Result<(), Duration> {
        match &self.keyed().per_identity.1 {
            Some(limiter) => limiter
                .check_key(&identity.to_string())
                .map_err(|not_until| not_until.wait_time_from(self.clock.now())),
            None => Ok(()),
        }
    }

    /// Forget keys whose limit has fully refilled and give their memory back.
    pub fn prune(&self) {
        let keyed = self.keyed();
        if let Some(limiter) = &keyed.per_identity.1 {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &keyed.per_address.1 {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// How many identities and addresses are tracked now.
    pub fn tracked(&self) -> (usize, usize) {
        let keyed = self.keyed();
        (
            keyed.per_identity.1.as_ref().map_or(0, |l| l.len()),
            keyed.per_address.1.as_ref().map_or(0, |l| l.len()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(identity: u32, address: u32) -> RegistrationLimits {
        RegistrationLimits::new(&LimitSettings {
            registrations_per_identity_per_min: identity,
            registrations_per_address_per_min: address,
            ..LimitSettings::default()
        })
    }

    #[test]
    fn the_burst_is_the_per_minute_limit() {
        let l = limits(3, 0);
        for _ in 0..3 {
            assert!(l.check_identity("alice").is_ok());
        }
        let wait = l.check_identity("alice").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(l.check_identity("bob").is_ok(), "keys are independent");
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let l = limits(0, 0);
        let addr: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..1000 {
            assert!(l.check_identity("alice").is_ok());
            assert!(l.check_address(addr).is_ok());
        }
    }

    #[test]
    fn prune_keeps_keys_still_limited() {
        let l = limits(1, 1);
        l.check_identity("alice").unwrap();
        l.check_address("10.0.0.1".parse().unwrap()).unwrap();
        l.prune();
        assert_eq!(l.tracked(), (1, 1), "a key within its minute is kept");
        assert!(l.check_identity("alice").is_err());
    }

    #[test]
    fn a_reload_keeps_the_counts_of_a_limit_that_did_not_change() {
        let l = limits(1, 5);
        l.check_identity("alice").unwrap();
        l.apply(&LimitSettings {
            registrations_per_identity_per_min: 1,
            registrations_per_address_per_min: 0,
            ..LimitSettings::default()
        });
        assert!(
            l.check_identity("alice").is_err(),
            "counted before the reload"
        );
        let addr: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..100 {
            assert!(
                l.check_address(addr).is_ok(),
                "the address limit is off now"
            );
        }
    }
}
