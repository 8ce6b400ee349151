//! The fixed label values of the metrics: known in advance so their series exist from the first
//! scrape, and so label sets stay bounded.

use crate::domain::Platform;

/// The event types of SPEC §5, plus `unknown` for a malformed entry without a valid type.
pub const EVENT_TYPES: [&str; 3] = ["incoming", "cancel", "unknown"];
/// The event outcomes of SPEC §5.
pub const EVENT_OUTCOMES: [&str; 6] = [
    "delivered",
    "no_bindings",
    "expired",
    "dead_lettered",
    "malformed",
    "duplicate",
];
/// Why a push is retried, by platform: the provider's documented transient reasons plus the
/// transport's (`crate::transport::TransportError::reason`). Pre-created so the retry panel and
/// alerts see 0 instead of "No data" before the first retry; other reasons still count.
pub fn retry_reasons(platform: Platform) -> &'static [&'static str] {
    match platform {
        Platform::Apns => &[
            "TooManyRequests",
            "InternalServerError",
            "ServiceUnavailable",
            "Shutdown",
            "ExpiredProviderToken",
            "timeout",
            "connect",
            "connection",
        ],
        Platform::Fcm => &[
            "QUOTA_EXCEEDED",
            "UNAVAILABLE",
            "INTERNAL",
            "UNAUTHENTICATED",
            "timeout",
            "connect",
            "connection",
        ],
    }
}

/// Why a device token is judged dead and its binding pruned, by platform (SPEC §6).
pub fn prune_reasons(platform: Platform) -> &'static [&'static str] {
    match platform {
        Platform::Apns => &[
            "Unregistered",
            "ExpiredToken",
            "BadDeviceToken",
            "DeviceTokenNotForTopic",
        ],
        Platform::Fcm => &["UNREGISTERED", "SENDER_ID_MISMATCH", "INVALID_ARGUMENT"],
    }
}

/// The dead-letter reasons of SPEC §7 (`callpush_dead_letters_replayed_total{reason}`), plus
/// `other` for a reason callpush did not write.
pub const DEAD_REASONS: [&str; 7] = [
    "expired",
    "malformed",
    "retries_exhausted",
    "provider_rejected",
    "rate_limited",
    "store_error",
    "other",
];
/// What a registration request ended in.
pub const REGISTRATION_OUTCOMES: [&str; 4] = ["created", "refreshed", "removed", "not_found"];

/// The Redis operations whose failures are counted (`callpush_redis_errors_total{op}`): the
/// sampler's, the readiness probe's and the worker pool's. Created at start so a first error
/// shows as an increase.
pub const REDIS_OPS: [&str; 14] = [
    "xlen",
    "exists",
    "xinfo_groups",
    "xpending",
    "ping",
    "create_group",
    "read_stream",
    "touch",
    "finish",
    "list_bindings",
    "claim_devices",
    "settle_devices",
    "prune",
    "learn_environment",
];

/// Which limit turned work away (`callpush_rate_limited_total{scope}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateScope {
    /// A credential's pushes per second (the push waited past its deadline).
    Credential,
    /// A callee's incoming calls per minute.
    Callee,
    /// Registrations per identity per minute.
    RegistrationIdentity,
    /// Registrations per client address per minute.
    RegistrationAddress,
}

impl RateScope {
    pub(crate) const ALL: [RateScope; 4] = [
        RateScope::Credential,
        RateScope::Callee,
        RateScope::RegistrationIdentity,
        RateScope::RegistrationAddress,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RateScope::Credential => "credential",
            RateScope::Callee => "callee",
            RateScope::RegistrationIdentity => "registration_identity",
            RateScope::RegistrationAddress => "registration_address",
        }
    }
}
