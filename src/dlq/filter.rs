//! Which dead letters an operator means: the filters of `callpush dlq` and
//! `/v1/dead-letters`, and the parsing of their times. Pure: no Redis here.
//!
//! `since` and `until` bound the dead letter's own stream id, whose time is when the event was
//! dead-lettered, so a time window becomes an `XRANGE` range and is never a scan.

use super::{DeadEntry, DlqError};
use crate::domain::now_ms;

/// What to select. Every part that is set must match (they combine with "and"); the field
/// parts are applied inside Redis by `scan.lua`, the times as the range it reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this `reason` (`expired`, `malformed`, `provider_rejected`, …).
    pub reason: Option<String>,
    /// Dead-lettered at or after this stream id (inclusive).
    pub since: Option<String>,
    /// Dead-lettered at or before this stream id (inclusive; a bare `<ms>` covers that whole
    /// millisecond).
    pub until: Option<String>,
    /// Only events for this identity (`to`).
    pub to: Option<String>,
    /// Only this call (`call_sid`).
    pub call_sid: Option<String>,
}

impl Filter {
    /// Whether `entry` has the reason, `to` and `call_sid` asked for (the first value of each
    /// field counts, as in `scan.lua`; the times are the range read, not checked here).
    pub fn matches(&self, entry: &DeadEntry) -> bool {
        [
            ("reason", &self.reason),
            ("to", &self.to),
            ("call_sid", &self.call_sid),
        ]
        .into_iter()
        .all(|(name, wanted)| {
            wanted
                .as_deref()
                .is_none_or(|w| entry.field(name) == Some(w))
        })
    }

    /// Set `since` from user input (`--since`, `?since=`); `field` names it in errors.
    pub fn with_since(mut self, field: &'static str, raw: Option<&str>) -> Result<Self, DlqError> {
        self.since = raw
            .map(|r| parse_bound(field, r, Bound::Start))
            .transpose()?;
        Ok(self)
    }

    /// Set `until` from user input (`--until`, `--before`, `?until=`).
    pub fn with_until(mut self, field: &'static str, raw: Option<&str>) -> Result<Self, DlqError> {
        self.until = raw.map(|r| parse_bound(field, r, Bound::End)).transpose()?;
        Ok(self)
    }
}

/// Which end of a range a time stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    Start,
    End,
}

/// A time as the stream id it bounds: a duration back from now (`90s`, `30m`, `1h`, `2d`,
/// `1w`), an RFC 3339 time (`2025-12-03T02:00:00Z`), or a stream id (`1764727200000-0`, or
/// bare milliseconds).
fn parse_bound(field: &'static str, raw: &str, bound: Bound) -> Result<String, DlqError> {
    let raw = raw.trim();
    let bad = |problem: &str| DlqError::BadTime {
        field,
        value: raw.to_string(),
        problem: problem.to_string(),
    };
    if raw.is_empty() {
        return Err(bad("is empty"));
    }
    if let Some(ago) = parse_duration_ms(raw) {
        return Ok(ms_bound(now_ms().saturating_sub(ago), bound));
    }
    if raw.chars().next().is_some_and(|c| c.is_ascii_digit()) && !raw.contains(':') {
        if let Ok(id) = parse_id(raw) {
            return Ok(match (id.contains('-'), bound) {
                (true, _) => id,
                (false, Bound::Start) => format!("{id}-0"),
                // XRANGE reads a bare `<ms>` end as that millisecond's last sequence number.
                (false, Bound::End) => id,
            });
        }
    }
    match chrono::DateTime::parse_from_rfc3339(raw) {
        Ok(t) if t.timestamp_millis() >= 0 => Ok(ms_bound(t.timestamp_millis() as u64, bound)),
        _ => Err(bad(
            "is neither a duration (90s, 30m, 1h, 2d, 1w), an RFC 3339 time \
             (2025-12-03T02:00:00Z) nor a stream id (1764727200000-0)",
        )),
    }
}

fn ms_bound(ms: u64, bound: Bound) -> String {
    match bound {
        Bound::Start => format!("{ms}-0"),
        Bound::End => ms.to_string(),
    }
}

/// `90s`, `30m`, `1h`, `2d`, `1w`, `500ms` in milliseconds; `None` when `raw` is no duration.
pub fn parse_duration_ms(raw: &str) -> Option<u64> {
    let split = raw.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = raw.split_at(split);
    let n: u64 = number.parse().ok()?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        _ => return None,
    };
    n.checked_mul(unit_ms)
}

/// Check a stream id as an operator typed it: `<ms>-<seq>` or `<ms>`, digits only.
pub fn parse_id(raw: &str) -> Result<String, DlqError> {
    let raw = raw.trim();
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    let ok = match raw.split_once('-') {
        Some((ms, seq)) => digits(ms) && digits(seq),
        None => digits(raw),
    };
    if ok && raw.split('-').all(|p| p.parse::<u64>().is_ok()) {
        Ok(raw.to_string())
    } else {
        Err(DlqError::BadId(raw.to_string()))
    }
}

/// A stream id's parts as numbers, for comparing ids.
pub fn id_key(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_count_back_from_now() {
        assert_eq!(parse_duration_ms("90s"), Some(90_000));
        assert_eq!(parse_duration_ms("30m"), Some(1_800_000));
        assert_eq!(parse_duration_ms("1h"), Some(3_600_000));
        assert_eq!(parse_duration_ms("2d"), Some(172_800_000));
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("1y"), None);
        assert_eq!(parse_duration_ms("h"), None);
        assert_eq!(parse_duration_ms("12"), None);
        let since = parse_bound("since", "1h", Bound::Start).unwrap();
        let ms = id_key(&since).0;
        let expected = now_ms() - 3_600_000;
        assert!(ms <= expected && ms + 5_000 > expected, "{since}");
    }

    #[test]
    fn times_and_ids_become_range_bounds() {
        let cases = [
            (
                "since",
                "2025-12-03T02:00:00Z",
                Bound::Start,
                "1764727200000-0",
            ),
            ("until", "2025-12-03T02:00:00Z", Bound::End, "1764727200000"),
            ("since", "1764727200000-7", Bound::Start, "1764727200000-7"),
            ("since", "1764727200000", Bound::Start, "1764727200000-0"),
        ];
        for (field, raw, bound, expected) in cases {
            assert_eq!(
                parse_bound(field, raw, bound).unwrap(),
                expected,
                "{field} {raw}"
            );
        }
    }

    #[test]
    fn bad_times_name_the_field() {
        for raw in ["yesterday", "", "1h30", "2026-13-01T00:00:00Z", "-5m"] {
            match parse_bound("since", raw, Bound::Start) {
                Err(DlqError::BadTime { field, .. }) => assert_eq!(field, "since"),
                other => panic!("{raw:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn ids_are_digits_with_one_dash() {
        assert!(parse_id("1764727200000-0").is_ok());
        assert!(parse_id("1764727200000").is_ok());
        for bad in ["abc", "1-2-3", "-1", "1-", "", "99999999999999999999999-0"] {
            assert!(matches!(parse_id(bad), Err(DlqError::BadId(_))), "{bad}");
        }
    }
}
