//! How `callpush dlq` prints for people: list rows, the list summary, one entry, and the
//! one-line summary of a replay or purge.

use crate::cli::output::age;
use crate::dlq::{ActionSummary, DeadEntry, Summary, OWN_FIELDS};
use crate::event::stream_id_ms;

/// The cells of one `dlq list` row.
pub fn list_row(e: &DeadEntry, now: u64) -> Vec<String> {
    let f = |name: &str| e.field(name).unwrap_or("-").to_string();
    vec![
        e.id.clone(),
        age(stream_id_ms(&e.id).unwrap_or(0), now),
        e.reason().to_string(),
        f("type"),
        f("to"),
        f("call_sid"),
        f("attempts"),
        e.field("detail").unwrap_or("").to_string(),
    ]
}

/// The lines after the table: counts, oldest and newest, where the next page starts.
pub fn print_list_summary(s: &Summary) {
    let reasons: Vec<String> = s
        .by_reason
        .iter()
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    println!(
        "\n{} matched, {} shown{}",
        s.matched,
        s.shown,
        if reasons.is_empty() {
            String::new()
        } else {
            format!(": {}", reasons.join(", "))
        }
    );
    if let (Some(oldest), Some(newest)) = (&s.oldest, &s.newest) {
        println!(
            "oldest {} ({}), newest {} ({})",
            oldest.id, oldest.failed_at, newest.id, newest.failed_at
        );
    }
    if let Some(next) = &s.next_after {
        println!("more: --after {next}");
    }
}

/// Every field of one dead letter: the event's first, then the dead letter's own.
pub fn print_entry(e: &DeadEntry) {
    let mut rows: Vec<(&str, &str)> = vec![("id", e.id.as_str())];
    rows.extend(e.original().map(|(k, v)| (k.as_str(), v.as_str())));
    rows.extend(
        OWN_FIELDS
            .iter()
            .filter_map(|k| e.field(k).map(|v| (*k, v))),
    );
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        println!("{k:<w$}  {v}");
    }
}

/// `replayed 12 (provider_rejected 12), skipped 3 (deadline_passed 2, malformed 1), failed 0`.
pub fn summary_line(s: &ActionSummary) -> String {
    let by = |pairs: Vec<String>| {
        if pairs.is_empty() {
            String::new()
        } else {
            format!(" ({})", pairs.join(", "))
        }
    };
    let done: Vec<String> = s
        .by_reason
        .iter()
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    let skipped: Vec<String> = s
        .skipped
        .iter()
        .map(|(w, n)| format!("{} {n}", w.as_str()))
        .collect();
    format!(
        "{}{} {}{}, skipped {}{}, failed {}",
        if s.dry_run {
            "dry run: would have "
        } else {
            ""
        },
        s.action.done_name(),
        s.done,
        by(done),
        s.skipped.values().sum::<u64>(),
        by(skipped),
        s.failed
    )
}
