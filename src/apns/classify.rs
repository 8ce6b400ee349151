//! The one place that reads Apple's answers: status, headers and body in, a [`Verdict`] out
//! (SPEC §6). Nothing else in callpush looks at an APNs status code. A verdict's `renew_auth`
//! means Apple said `ExpiredProviderToken`: re-sign the provider token before the retry.
//! [`wrong_environment`] tells the dispatcher which answers may mean "this token (or key)
//! belongs to the other environment".

use http::{HeaderMap, StatusCode};

use crate::providers::answer::{label, retry_after, Verdict};
use crate::providers::{Failure, Outcome};

#[derive(serde::Deserialize, Default)]
struct ErrorBody {
    reason: Option<String>,
    /// When Apple judged the token dead (410 only), in ms since the epoch.
    timestamp: Option<u64>,
}

/// Classify Apple's answer to one push. `now_ms` stands in for Apple's timestamp when a dead
/// token comes without one.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8], now_ms: u64) -> Verdict {
    let verdict = Verdict::of;
    if status.is_success() {
        return verdict(Outcome::Delivered);
    }
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let reason = label(parsed.reason.as_deref(), status);
    let detail = format!("APNs {} {}", status.as_u16(), reason);
    let failure = Failure::new(reason, detail);
    let code = status.as_u16();
    match code {
        410 => verdict(Outcome::InvalidToken {
            failure,
            judged_at_ms: parsed.timestamp.unwrap_or(now_ms),
        }),
        // A token of another app (`DeviceTokenNotForTopic`) will never take this topic's
        // pushes either: as dead for this credential as a malformed one (SPEC §6).
        400 if matches!(
            failure.reason.as_str(),
            "BadDeviceToken" | "DeviceTokenNotForTopic"
        ) =>
        {
            verdict(Outcome::InvalidToken {
                failure,
                judged_at_ms: now_ms,
            })
        }
        403 if failure.reason == "ExpiredProviderToken" => Verdict::renew_and_retry(failure),
        429 | 500..=599 => verdict(Outcome::Retry {
            failure,
            retry_after: retry_after(headers),
        }),
        _ => verdict(Outcome::Rejected(failure)),
    }
}

/// Whether an answer may mean the device (or the key) belongs to the other APNs environment:
/// `400 BadDeviceToken` (Apple's table of responses names a token of the other environment
/// among its causes, beside a malformed one) or `403 BadEnvironmentKeyInToken` (a key Apple
/// scoped to the other environment). For a device whose environment is unknown, the dispatcher tries the
/// other environment before believing it.
pub fn wrong_environment(outcome: &Outcome) -> bool {
    match outcome {
        Outcome::InvalidToken { failure, .. } => failure.reason == "BadDeviceToken",
        Outcome::Rejected(failure) => failure.reason == "BadEnvironmentKeyInToken",
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn answer(status: u16, body: &str) -> Verdict {
        answer_with(status, &[], body)
    }

    fn answer_with(status: u16, headers: &[(&str, &str)], body: &str) -> Verdict {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        classify(
            StatusCode::from_u16(status).unwrap(),
            &map,
            body.as_bytes(),
            NOW,
        )
    }

    fn failure(status: u16, reason: &str) -> Failure {
        Failure::new(reason, format!("APNs {status} {reason}"))
    }

    #[test]
    fn ok_is_delivered() {
        let v = answer_with(
            200,
            &[("apns-id", "EC1BF194-B3B2-424A-89A9-5A918A6E6B5B")],
            "",
        );
        assert_eq!(v.outcome, Outcome::Delivered);
        assert!(!v.renew_auth);
    }

    #[test]
    fn gone_is_a_dead_token_judged_at_apples_timestamp() {
        for reason in ["Unregistered", "ExpiredToken"] {
            let body = format!(r#"{{"reason":"{reason}","timestamp":1458114061260}}"#);
            assert_eq!(
                answer(410, &body).outcome,
                Outcome::InvalidToken {
                    failure: failure(410, reason),
                    judged_at_ms: 1_458_114_061_260,
                }
            );
        }
    }

    #[test]
    fn gone_without_timestamp_is_judged_now() {
        assert_eq!(
            answer(410, r#"{"reason":"Unregistered"}"#).outcome,
            Outcome::InvalidToken {
                failure: failure(410, "Unregistered"),
                judged_at_ms: NOW,
            }
        );
    }

    #[test]
    fn bad_or_foreign_device_tokens_are_dead_tokens() {
        for reason in ["BadDeviceToken", "DeviceTokenNotForTopic"] {
            let body = format!(r#"{{"reason":"{reason}"}}"#);
            assert_eq!(
                answer(400, &body).outcome,
                Outcome::InvalidToken {
                    failure: failure(400, reason),
                    judged_at_ms: NOW,
                }
            );
        }
    }

    #[test]
    fn answers_of_the_other_environment_are_recognised() {
        let bad_device = answer(400, r#"{"reason":"BadDeviceToken"}"#).outcome;
        let scoped_key = answer(403, r#"{"reason":"BadEnvironmentKeyInToken"}"#).outcome;
        assert_eq!(
            scoped_key,
            Outcome::Rejected(failure(403, "BadEnvironmentKeyInToken"))
        );
        assert!(wrong_environment(&bad_device));
        assert!(wrong_environment(&scoped_key));
        for other in [
            answer(410, r#"{"reason":"Unregistered"}"#).outcome,
            answer(400, r#"{"reason":"DeviceTokenNotForTopic"}"#).outcome,
            answer(400, r#"{"reason":"BadTopic"}"#).outcome,
            answer(200, "").outcome,
        ] {
            assert!(!wrong_environment(&other), "{other:?}");
        }
    }

    #[test]
    fn expired_provider_token_is_resigned_and_retried_at_once() {
        let v = answer(403, r#"{"reason":"ExpiredProviderToken"}"#);
        assert!(v.renew_auth);
        assert_eq!(
            v.outcome,
            Outcome::Retry {
                failure: failure(403, "ExpiredProviderToken"),
                retry_after: Some(Duration::ZERO),
            }
        );
    }

    #[test]
    fn throttling_and_server_errors_are_retried_with_retry_after() {
        for (status, reason) in [
            (429, "TooManyRequests"),
            (429, "TooManyProviderTokenUpdates"),
            (500, "InternalServerError"),
            (503, "ServiceUnavailable"),
            (503, "Shutdown"),
        ] {
            let body = format!(r#"{{"reason":"{reason}"}}"#);
            let v = answer_with(status, &[("retry-after", "7")], &body);
            assert!(!v.renew_auth);
            assert_eq!(
                v.outcome,
                Outcome::Retry {
                    failure: failure(status, reason),
                    retry_after: Some(Duration::from_secs(7)),
                }
            );
        }
    }

    #[test]
    fn other_server_errors_without_body_are_retried() {
        assert_eq!(
            answer(502, "<html>Bad Gateway</html>").outcome,
            Outcome::Retry {
                failure: failure(502, "http_502"),
                retry_after: None,
            }
        );
    }

    #[test]
    fn other_client_errors_are_rejected_with_apples_reason() {
        for (status, reason) in [
            (400, "BadTopic"),
            (400, "TopicDisallowed"),
            (400, "BadCollapseId"),
            (400, "InvalidPushType"),
            (403, "InvalidProviderToken"),
            (403, "MissingProviderToken"),
            (403, "BadCertificateEnvironment"),
            (405, "MethodNotAllowed"),
            (413, "PayloadTooLarge"),
        ] {
            let body = format!(r#"{{"reason":"{reason}"}}"#);
            assert_eq!(
                answer(status, &body).outcome,
                Outcome::Rejected(failure(status, reason))
            );
        }
    }

    #[test]
    fn client_error_without_reason_is_named_by_status() {
        assert_eq!(
            answer(404, "").outcome,
            Outcome::Rejected(failure(404, "http_404"))
        );
        assert_eq!(
            answer(400, r#"{"reason":"not a label, an essay"}"#).outcome,
            Outcome::Rejected(failure(400, "http_400"))
        );
    }
}
