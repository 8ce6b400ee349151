//! How much of an event a dead letter keeps. A call server can add any entry Redis accepts — a
//! hundred thousand fields, a 10 MB value, names that are not UTF-8 — and every one must end in
//! an outcome, so a dead letter copies the original fields only up to fixed bounds and says what
//! it left out, instead of copying the entry whole:
//!
//! - at most [`MAX_FIELDS`] fields and [`MAX_BYTES`] bytes of names and values, so the outcome
//!   script passes at most about 530 values per entry to `XADD` (Lua's `unpack` stops at 7,999:
//!   `LUAI_MAXCSTACK` is 8,000 in Redis's Lua, "too many results to unpack" past it), and a dead
//!   letter costs at most about 64 KiB of the capped dead-letter stream, not megabytes;
//! - each name and value cut at [`MAX_ITEM_BYTES`] (on a character boundary);
//! - the fields a replay needs ([`needed_for_replay`]: `type`, `to`, `call_sid`, `from`,
//!   `ttl_ms`, `credential`, `params`, and Twilio's `twi_*`/`twilio*`) are kept before any other,
//!   so the bounds cut only what a replay can do without; every one of them fits far inside
//!   [`MAX_ITEM_BYTES`] in a valid event (the longest, `params`, is at most 2,048 bytes);
//! - the kept fields stay in their original order;
//! - when anything was left out or cut, the field [`TRUNCATED`] says what, e.g. `kept 256 of
//!   100000 fields and 65536 of 10485760 bytes; cut to 8192 bytes: blob`.
//!
//! Names and values arrive decoded lossily (`crate::ingest`): bytes that are not UTF-8 read as
//! U+FFFD, so a dead letter holds that replacement character, never the original bytes.

use super::{DeadLetter, EventResult, Field};
use crate::domain::rfc3339_ms;

/// Original fields a dead letter keeps at most.
pub const MAX_FIELDS: usize = 256;
/// Bytes of original names and values (after cutting) a dead letter keeps at most.
pub const MAX_BYTES: usize = 64 * 1024;
/// Longest original name or value kept; longer ones are cut to this many bytes.
pub const MAX_ITEM_BYTES: usize = 8 * 1024;
/// Longest `detail` (a malformed field's message may quote the field's value).
pub const MAX_DETAIL_BYTES: usize = 1024;
/// Longest `call_sid` and `to` on the results stream (a valid event's are shorter: SPEC §2,
/// `crate::event::MAX_CALL_SID_BYTES`).
pub const MAX_RESULT_TEXT_BYTES: usize = 256;
/// The dead-letter field that says what the bounds left out; absent when nothing was.
pub const TRUNCATED: &str = "truncated";

/// Field names a dead letter writes itself: taken out of the original fields.
const OWN: [&str; 6] = [
    "reason",
    "detail",
    "attempts",
    "failed_at",
    "source_id",
    TRUNCATED,
];
/// Cut field names listed in [`TRUNCATED`] at most, each cut to [`LISTED_NAME_BYTES`].
const LISTED_NAMES: usize = 8;
const LISTED_NAME_BYTES: usize = 64;

/// Whether a replay needs the field `name` (SPEC §5 and §10): kept before any other.
pub fn needed_for_replay(name: &str) -> bool {
    matches!(
        name,
        "type" | "to" | "call_sid" | "from" | "ttl_ms" | "credential" | "params"
    ) || name.starts_with("twi_")
        || name.starts_with("twilio")
}

/// `text` cut to at most `max` bytes, on a character boundary.
pub fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The original fields a dead letter keeps, and the [`TRUNCATED`] note when it left some out.
fn keep(original: &[(String, String)]) -> (Vec<(String, String)>, Option<String>) {
    let candidates: Vec<usize> = (0..original.len())
        .filter(|&i| !OWN.contains(&original[i].0.as_str()))
        .collect();
    let size = |i: usize| {
        let (k, v) = &original[i];
        k.len().min(MAX_ITEM_BYTES) + v.len().min(MAX_ITEM_BYTES)
    };
    let needed = candidates
        .iter()
        .filter(|&&i| needed_for_replay(&original[i].0));
    let others = candidates
        .iter()
        .filter(|&&i| !needed_for_replay(&original[i].0));
    let mut kept = vec![false; original.len()];
    let (mut fields, mut bytes) = (0, 0);
    for &i in needed.chain(others) {
        if fields == MAX_FIELDS {
            break;
        }
        if bytes + size(i) <= MAX_BYTES {
            kept[i] = true;
            fields += 1;
            bytes += size(i);
        }
    }
    let out: Vec<(String, String)> = candidates
        .iter()
        .filter(|&&i| kept[i])
        .map(|&i| {
            let (k, v) = &original[i];
            (
                cut(k, MAX_ITEM_BYTES).to_string(),
                cut(v, MAX_ITEM_BYTES).to_string(),
            )
        })
        .collect();
    let cut_names: Vec<&str> = candidates
        .iter()
        .filter(|&&i| kept[i])
        .map(|&i| &original[i])
        .filter(|(k, v)| k.len() > MAX_ITEM_BYTES || v.len() > MAX_ITEM_BYTES)
        .map(|(k, _)| cut(k, LISTED_NAME_BYTES))
        .collect();
    let total_bytes: usize = candidates
        .iter()
        .map(|&i| original[i].0.len() + original[i].1.len())
        .sum();
    if fields == candidates.len() && cut_names.is_empty() {
        return (out, None);
    }
    let mut note = format!(
        "kept {fields} of {} fields and {bytes} of {total_bytes} bytes",
        candidates.len()
    );
    if !cut_names.is_empty() {
        let listed = cut_names[..cut_names.len().min(LISTED_NAMES)].join(", ");
        note.push_str(&format!("; cut to {MAX_ITEM_BYTES} bytes: {listed}"));
        if cut_names.len() > LISTED_NAMES {
            note.push_str(&format!(" and {} more", cut_names.len() - LISTED_NAMES));
        }
    }
    (out, Some(note))
}

impl DeadLetter {
    /// The fields of the dead-letter entry of an entry given as its fields and its plain stream
    /// id (a sharded queue's entry carries its shard in its id): the original fields within the
    /// bounds of the module docs (minus any earlier dead-letter bookkeeping fields), then
    /// `reason`, `detail`, `attempts`, `failed_at` (RFC 3339), `source_id` and, when the bounds
    /// left something out, [`TRUNCATED`].
    pub fn fields_of(&self, original: &[(String, String)], id: &str) -> Vec<(String, String)> {
        let (mut out, note) = keep(original);
        self.push_own(&mut out, id, note);
        out
    }

    /// A dead letter of the entry with none of its original fields, for when the store refused
    /// the one with them ([`crate::ingest`]): its own fields only, and [`TRUNCATED`] saying how
    /// many original fields were left out.
    pub fn bare_fields_of(&self, original: &[(String, String)], id: &str) -> Vec<(String, String)> {
        let fields = original
            .iter()
            .filter(|(k, _)| !OWN.contains(&k.as_str()))
            .count();
        let mut out = Vec::with_capacity(6);
        self.push_own(&mut out, id, Some(format!("kept 0 of {fields} fields")));
        out
    }

    fn push_own(&self, out: &mut Vec<(String, String)>, id: &str, note: Option<String>) {
        out.push(("reason".into(), self.reason.as_str().into()));
        out.push((
            "detail".into(),
            cut(&self.detail, MAX_DETAIL_BYTES).to_string(),
        ));
        out.push(("attempts".into(), self.attempts.to_string()));
        out.push(("failed_at".into(), rfc3339_ms(self.failed_at_ms)));
        out.push(("source_id".into(), id.to_string()));
        if let Some(note) = note {
            out.push((TRUNCATED.into(), note));
        }
    }
}

impl EventResult {
    /// The fields of the results-stream entry, borrowed: one is written per event, so nothing
    /// is copied or formatted until the backend writes it. `call_sid` and `to` are cut to 256
    /// bytes (only a malformed entry's can be longer).
    pub fn fields(&self) -> [(&'static str, Field<'_>); 5] {
        [
            (
                "call_sid",
                Field::Text(cut(&self.call_sid, MAX_RESULT_TEXT_BYTES)),
            ),
            ("to", Field::Text(cut(&self.to, MAX_RESULT_TEXT_BYTES))),
            ("outcome", Field::Text(self.outcome.as_str())),
            ("devices", Field::Count(self.devices)),
            ("delivered", Field::Count(self.delivered)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::DeadReason;

    fn dead() -> DeadLetter {
        DeadLetter {
            reason: DeadReason::Malformed,
            detail: "field `type`: is missing".into(),
            attempts: 0,
            failed_at_ms: 1_764_727_200_000,
        }
    }

    fn pairs(fields: &[(&str, &str)]) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_small_entry_is_kept_whole_and_in_order() {
        let original = pairs(&[
            ("x_custom", "kept"),
            ("type", "incoming"),
            ("to", "alice"),
            ("reason", "an earlier dead letter's"),
            ("call_sid", "CA1"),
        ]);
        let out = dead().fields_of(&original, "1-0");
        let names: Vec<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "x_custom",
                "type",
                "to",
                "call_sid",
                "reason",
                "detail",
                "attempts",
                "failed_at",
                "source_id"
            ]
        );
        assert_eq!(field(&out, "reason"), Some("malformed"));
        assert_eq!(field(&out, TRUNCATED), None);
    }

    #[test]
    fn a_hundred_thousand_fields_keep_the_replay_fields_first_and_say_what_was_cut() {
        let mut original: Vec<(String, String)> = (0..100_000)
            .map(|i| (format!("f{i}"), "v".repeat(10)))
            .collect();
        // The fields a replay needs come last: they are still kept.
        original.extend(pairs(&[
            ("type", "incoming"),
            ("to", "alice"),
            ("call_sid", "CA1"),
            ("twi_bridge_token", "token"),
        ]));
        let out = dead().fields_of(&original, "1-0");
        let own = 6;
        assert_eq!(out.len(), MAX_FIELDS + own);
        for name in ["type", "to", "call_sid", "twi_bridge_token"] {
            assert!(field(&out, name).is_some(), "{name} kept");
        }
        let note = field(&out, TRUNCATED).unwrap();
        assert!(note.starts_with("kept 256 of 100004 fields and "), "{note}");
    }

    #[test]
    fn a_huge_value_is_cut_and_named_and_the_total_stays_bounded() {
        let huge = "x".repeat(10 * 1024 * 1024);
        let mut original = pairs(&[("type", "incoming"), ("to", "alice")]);
        original.push(("blob".into(), huge.clone()));
        for i in 0..20 {
            original.push((format!("big{i}"), huge[..10_000].to_string()));
        }
        let out = dead().fields_of(&original, "1-0");
        assert_eq!(field(&out, "blob").unwrap().len(), MAX_ITEM_BYTES);
        let bytes: usize = out
            .iter()
            .take_while(|(k, _)| k != "reason")
            .map(|(k, v)| k.len() + v.len())
            .sum();
        assert!(bytes <= MAX_BYTES, "{bytes}");
        let total: usize = original.iter().map(|(k, v)| k.len() + v.len()).sum();
        let note = field(&out, TRUNCATED).unwrap();
        assert!(note.contains("cut to 8192 bytes: blob, big0"), "{note}");
        assert!(
            note.contains(&format!(" of 23 fields and {bytes} of {total} bytes")),
            "{note}"
        );
    }

    #[test]
    fn cuts_fall_on_character_boundaries() {
        assert_eq!(cut("ab\u{FFFD}", 3), "ab");
        assert_eq!(cut("ab\u{FFFD}", 5), "ab\u{FFFD}");
        let long_detail = DeadLetter {
            detail: format!("field `type`: {:?}", "\u{FFFD}".repeat(5_000)),
            ..dead()
        };
        let out = long_detail.fields_of(&[], "1-0");
        assert!(field(&out, "detail").unwrap().len() <= MAX_DETAIL_BYTES);
    }

    #[test]
    fn a_bare_dead_letter_keeps_only_its_own_fields() {
        let original = pairs(&[("type", "incoming"), ("to", "alice"), ("reason", "old")]);
        let out = dead().bare_fields_of(&original, "7-0");
        assert_eq!(field(&out, "type"), None);
        assert_eq!(field(&out, "source_id"), Some("7-0"));
        assert_eq!(field(&out, TRUNCATED), Some("kept 0 of 2 fields"));
    }

    #[test]
    fn results_carry_at_most_256_bytes_of_call_sid_and_to() {
        let result = EventResult {
            call_sid: "C".repeat(10_000).into(),
            to: "alice".into(),
            outcome: crate::outcome::EventOutcome::Malformed,
            devices: 0,
            delivered: 0,
        };
        let fields = result.fields();
        assert_eq!(fields[0].1.to_string().len(), MAX_RESULT_TEXT_BYTES);
        assert_eq!(fields[1].1, Field::Text("alice"));
    }
}
