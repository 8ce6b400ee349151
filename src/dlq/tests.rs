use super::*;

fn entry(id: &str, fields: &[(&str, &str)]) -> DeadEntry {
    DeadEntry {
        id: id.into(),
        fields: fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

const NOW: u64 = 1_764_727_200_000;

fn incoming(source_ms: u64, ttl: Option<&str>, reason: &str) -> DeadEntry {
    let source = format!("{source_ms}-0");
    let mut fields = vec![("type", "incoming"), ("to", "alice"), ("call_sid", "CA1")];
    if let Some(ttl) = ttl {
        fields.push(("ttl_ms", ttl));
    }
    fields.extend([
        ("reason", reason),
        ("detail", "APNs 403 InvalidProviderToken"),
        ("attempts", "1"),
        ("failed_at", "2026-12-03T02:00:00.000Z"),
        ("source_id", source.as_str()),
    ]);
    entry(&format!("{}-0", source_ms + 100), &fields)
}

#[test]
fn an_incoming_call_past_its_deadline_is_skipped_unless_forced() {
    let fresh = incoming(NOW - 10_000, None, "provider_rejected");
    assert_eq!(fresh.skip(false, NOW), None);
    let ended = incoming(NOW - 31_000, None, "provider_rejected");
    assert_eq!(ended.skip(false, NOW), Some(Skip::DeadlinePassed));
    assert_eq!(ended.skip(true, NOW), None);
    // Its own ttl_ms counts.
    let long = incoming(NOW - 31_000, Some("60000"), "expired");
    assert_eq!(long.skip(false, NOW), None);
    // A cancel has nothing to ring: replayed whatever its age.
    let mut cancel = ended.clone();
    cancel.fields[0].1 = "cancel".into();
    assert_eq!(cancel.skip(false, NOW), None);
}

#[test]
fn malformed_entries_are_skipped_unless_forced() {
    let bad = entry(
        "5-0",
        &[
            ("type", "incoming"),
            ("reason", "malformed"),
            ("source_id", "4-0"),
        ],
    );
    assert_eq!(bad.skip(false, NOW), Some(Skip::Malformed));
    assert_eq!(bad.skip(true, NOW), None);
}

#[test]
fn a_replay_carries_the_original_fields_a_fresh_ttl_and_where_it_came_from() {
    let mut e = incoming(NOW - 1_000, Some("20000"), "retries_exhausted");
    // A dead letter of an earlier replay: its old `replayed_from` is replaced.
    e.fields.insert(3, ("replayed_from".into(), "1-0".into()));
    let fields = e.replay_fields(None);
    let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        ["type", "to", "call_sid", "ttl_ms", "replayed_from"],
        "no dead-letter bookkeeping"
    );
    assert_eq!(fields[3].1, "20000", "the event's own ttl_ms");
    assert_eq!(fields[4].1, e.id);
    assert_eq!(e.replay_fields(Some(5_000))[3].1, "5000");
    let plain = incoming(NOW, None, "expired");
    assert_eq!(plain.replay_fields(None)[3].1, "30000");
}

#[test]
fn json_puts_the_event_first_and_attempts_as_a_number() {
    let e = incoming(NOW, None, "expired");
    let v = e.to_json();
    assert_eq!(v["id"], e.id);
    assert_eq!(v["event"]["to"], "alice");
    assert!(v["event"].get("reason").is_none());
    assert_eq!(v["reason"], "expired");
    assert_eq!(v["attempts"], 1);
    assert_eq!(v["source_id"], format!("{NOW}-0"));
}

#[test]
fn summaries_name_what_was_done() {
    let mut s = ActionSummary::new(Action::Replay, true);
    s.matched = 3;
    s.did("expired");
    s.skip(Skip::DeadlinePassed);
    s.skip(Skip::Gone);
    let v = s.to_json();
    assert_eq!(v["replayed"], 1);
    assert_eq!(v["skipped"]["deadline_passed"], 1);
    assert_eq!(v["skipped"]["gone"], 1);
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["by_reason"]["expired"], 1);
    assert_eq!(s.processed(), 3);
    let mut list = Summary::default();
    list.add(&incoming(NOW, None, "expired"));
    list.add(&incoming(NOW + 5, None, "malformed"));
    assert_eq!(list.matched, 2);
    assert_eq!(list.oldest.unwrap().id, format!("{}-0", NOW + 100));
    assert_eq!(list.newest.unwrap().id, format!("{}-0", NOW + 105));
}
