//! One toolkit for reading provider answers, shared by `crate::apns` and `crate::fcm` (the
//! shape of autopush-rs's `RouterError` + `handle_error`): each provider keeps exactly one
//! `classify` function that knows its own status codes and error bodies, and builds its
//! [`Verdict`] from the pieces here — one `Retry-After` parser, one mapping of a request that
//! got no answer, one cleaner that keeps free text out of metric labels.

use std::time::Duration;

use http::{HeaderMap, StatusCode};

use super::{Failure, Outcome};
use crate::transport::TransportError;

/// What one provider answer means: the outcome for the dispatcher and whether the provider's
/// authorization must be renewed before the retry (APNs: re-sign the provider token after
/// `ExpiredProviderToken`; FCM: drop the OAuth access token it refused with a 401).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// What the dispatcher does next.
    pub outcome: Outcome,
    /// The credential's authorization was refused: renew it.
    pub renew_auth: bool,
}

impl Verdict {
    /// An answer that says nothing about the authorization.
    pub fn of(outcome: Outcome) -> Verdict {
        Verdict {
            outcome,
            renew_auth: false,
        }
    }

    /// The authorization was refused: renew it and retry at once.
    pub fn renew_and_retry(failure: Failure) -> Verdict {
        Verdict {
            outcome: Outcome::Retry {
                failure,
                retry_after: Some(Duration::ZERO),
            },
            renew_auth: true,
        }
    }
}

/// The longest `Retry-After` taken as it is: a longer one (or a date further ahead) reads as
/// this. A wait comes from outside, so it is bounded before anything adds it to a clock; an
/// hour is far past any call's deadline (`ttl_ms` 30 s by default, one day at most), so a
/// longer wait ends the push at its deadline all the same.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3_600);

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3), as Apple, Google and the
/// proxies in front of them send it, at most [`MAX_RETRY_AFTER`]. A date in the past is no wait
/// at all.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Digits past u64 are a wait longer than the cap, not a header to ignore.
        value
            .parse::<u64>()
            .map_or(MAX_RETRY_AFTER, Duration::from_secs)
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
        let wait = at.timestamp_millis() - chrono::Utc::now().timestamp_millis();
        Duration::from_millis(wait.max(0) as u64)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// A request that got no answer (no connection, a timeout, a dropped connection): always worth
/// another try within the deadline. `whom` names the far end in the detail
/// (`APNs`, `FCM`, `OAuth token endpoint`).
pub fn unanswered(whom: &str, error: &TransportError) -> Outcome {
    Outcome::Retry {
        failure: Failure::new(error.reason(), format!("{whom} unreachable: {error}")),
        retry_after: None,
    }
}

/// A provider's reason code fit for a metric label, or `http_<status>` when it sent none or
/// sent free text (an HTML page from a proxy, a sentence): 1 to 64 ASCII letters, digits and
/// underscores, the shape of every code Apple and Google document.
pub fn label(code: Option<&str>, status: StatusCode) -> String {
    match code {
        Some(c)
            if (1..=64).contains(&c.len())
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
        {
            c.to_string()
        }
        _ => format!("http_{}", status.as_u16()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(retry_after: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(
            http::header::RETRY_AFTER,
            HeaderValue::from_str(retry_after).unwrap(),
        );
        map
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(retry_after(&headers(" 7 ")), Some(Duration::from_secs(7)));
        let in_30s = chrono::Utc::now() + chrono::Duration::seconds(30);
        let wait = retry_after(&headers(&in_30s.to_rfc2822())).unwrap();
        assert!(wait > Duration::from_secs(20) && wait <= Duration::from_secs(30));
        let past = "Wed, 21 Oct 2015 07:28:00 GMT";
        assert_eq!(retry_after(&headers(past)), Some(Duration::ZERO));
        assert_eq!(retry_after(&headers("soon")), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn a_huge_retry_after_is_capped_at_an_hour() {
        // 18446744073709552 s is u64::MAX ms, give or take: its milliseconds overflow a u64.
        for huge in ["18446744073709552", "99999999999999999999999", "3601"] {
            assert_eq!(retry_after(&headers(huge)), Some(MAX_RETRY_AFTER), "{huge}");
        }
        let next_year = chrono::Utc::now() + chrono::Duration::days(365);
        assert_eq!(
            retry_after(&headers(&next_year.to_rfc2822())),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            retry_after(&headers("3600")),
            Some(Duration::from_secs(3_600))
        );
    }

    #[test]
    fn labels_keep_codes_and_drop_free_text() {
        let status = StatusCode::BAD_REQUEST;
        assert_eq!(label(Some("BadTopic"), status), "BadTopic");
        assert_eq!(label(Some("UNREGISTERED"), status), "UNREGISTERED");
        assert_eq!(label(Some("invalid_grant"), status), "invalid_grant");
        assert_eq!(label(Some("not a label"), status), "http_400");
        assert_eq!(label(Some("<html>"), status), "http_400");
        assert_eq!(label(Some(""), status), "http_400");
        assert_eq!(label(Some(&"A".repeat(65)), status), "http_400");
        assert_eq!(label(None, StatusCode::BAD_GATEWAY), "http_502");
    }

    #[test]
    fn an_unanswered_request_is_retried_with_the_transport_reason() {
        let outcome = unanswered("APNs", &TransportError::Timeout(Duration::from_secs(5)));
        let Outcome::Retry {
            failure,
            retry_after,
        } = outcome
        else {
            panic!("not a retry: {outcome:?}");
        };
        assert_eq!(failure.reason, "timeout");
        assert!(failure.detail.starts_with("APNs unreachable: "));
        assert_eq!(retry_after, None);
    }
}
