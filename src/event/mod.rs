//! Call events as they arrive on the calls stream (SPEC §5), parsed and validated.
//!
//! Parsing never fails silently: a malformed entry yields a [`Malformed`] naming the field,
//! which the dispatcher dead-letters as `malformed` with every original field kept.

use std::sync::Arc;

use crate::domain::{CallContent, PushKind};

/// Default `ttl_ms` of `incoming` and `cancel` events.
pub const DEFAULT_TTL_MS: u64 = 30_000;
/// Largest `ttl_ms` accepted (one day).
pub const MAX_TTL_MS: u64 = 86_400_000;
/// Largest `params` JSON, in bytes.
pub const MAX_PARAMS_BYTES: usize = 2048;
/// Longest identity, in UTF-8 bytes (SPEC §2).
pub const MAX_IDENTITY_BYTES: usize = 121;
/// Longest `call_sid` accepted, in bytes.
pub const MAX_CALL_SID_BYTES: usize = 256;
/// Longest `from` accepted, in bytes.
pub const MAX_FROM_BYTES: usize = 256;
/// Largest `twilio` field (a Twilio call notification as JSON), in bytes: twice the webhook's
/// 16 KiB body limit, room for a form's fields escaped as JSON.
pub const MAX_TWILIO_BYTES: usize = 32 * 1024;

/// A stream entry as read from Redis: its id and its fields in order. The fields are kept in
/// one string, one after the other (`fields` reads them back as pairs): an entry read off the
/// stream costs three allocations however many fields it has, not two per field.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct StreamEntry {
    /// The stream id (`<ms>-<seq>`).
    pub id: String,
    /// Every field's name and value, one after the other.
    text: String,
    /// Where each field's name ends and where its value ends, in `text`.
    ends: Vec<(usize, usize)>,
}

impl StreamEntry {
    /// An entry with no fields yet, with room for `fields` of `bytes` in all.
    pub fn with_capacity(id: impl Into<String>, fields: usize, bytes: usize) -> StreamEntry {
        StreamEntry {
            id: id.into(),
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(fields),
        }
    }

    /// An entry of `fields` in order, as a call server would write them (tests, benchmarks,
    /// replays).
    pub fn of(id: impl Into<String>, fields: &[(&str, &str)]) -> StreamEntry {
        StreamEntry::from_pairs(id, fields.iter().copied())
    }

    /// An entry of the field/value pairs of `fields`, in order.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(
        id: impl Into<String>,
        fields: impl IntoIterator<Item = (K, V)>,
    ) -> StreamEntry {
        let mut entry = StreamEntry::with_capacity(id, 0, 0);
        for (k, v) in fields {
            entry.push(k.as_ref(), v.as_ref());
        }
        entry
    }

    /// An entry of owned field/value pairs, in order.
    pub fn from_slice(id: impl Into<String>, fields: &[(String, String)]) -> StreamEntry {
        let bytes = fields.iter().map(|(k, v)| k.len() + v.len()).sum();
        let mut entry = StreamEntry::with_capacity(id, fields.len(), bytes);
        for (k, v) in fields {
            entry.push(k, v);
        }
        entry
    }

    /// Add a field after the others.
    pub fn push(&mut self, name: &str, value: &str) {
        self.text.push_str(name);
        let name_end = self.text.len();
        self.text.push_str(value);
        self.ends.push((name_end, self.text.len()));
    }

    /// The fields, in order.
    pub fn fields(&self) -> Fields<'_> {
        Fields {
            text: &self.text,
            ends: self.ends.iter(),
            start: 0,
        }
    }

    /// The fields as owned pairs.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        self.fields()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// How many fields there are.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The value of the first field named `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields().find(|(k, _)| *k == name).map(|(_, v)| v)
    }
}

impl std::fmt::Debug for StreamEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamEntry")
            .field("id", &self.id)
            .field("fields", &self.fields().collect::<Vec<_>>())
            .finish()
    }
}

/// The fields of a [`StreamEntry`], in order, as `(name, value)`.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    text: &'a str,
    ends: std::slice::Iter<'a, (usize, usize)>,
    start: usize,
}

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        let (name_end, value_end) = *self.ends.next()?;
        let field = (
            &self.text[self.start..name_end],
            &self.text[name_end..value_end],
        );
        self.start = value_end;
        Some(field)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.ends.size_hint()
    }
}

impl ExactSizeIterator for Fields<'_> {}

/// A valid call event.
#[derive(Debug, Clone)]
pub struct CallEvent {
    /// What to send, shared by every device of the event.
    pub call: Arc<CallContent>,
    /// Restrict the fan-out to this credential.
    pub credential: Option<String>,
    /// When the entry was added (the time part of its stream id), ms since the Unix epoch.
    pub enqueued_at_ms: u64,
    /// The event's `ttl_ms`.
    pub ttl_ms: u64,
}

impl CallEvent {
    /// The callee's identity.
    pub fn to(&self) -> &str {
        &self.call.callee
    }
    /// The call's id.
    pub fn call_sid(&self) -> &str {
        &self.call.call_sid
    }
    /// `incoming` or `cancel`.
    pub fn kind(&self) -> PushKind {
        self.call.kind
    }
    /// When the event stops being useful, ms since the Unix epoch.
    pub fn deadline_ms(&self) -> u64 {
        self.call.deadline_ms
    }
}

/// Why an entry is not a valid call event. The message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {problem}")]
pub struct Malformed {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

fn malformed(field: &'static str, problem: impl Into<String>) -> Malformed {
    Malformed {
        field,
        problem: problem.into(),
    }
}

/// What invalid UTF-8 in a stream field reads as: the consumer decodes fields lossily, so a
/// byte that is not UTF-8 arrives as U+FFFD. Identities and call sids refuse it; free text
/// (`from`, `params`) keeps it.
const REPLACEMENT: char = char::REPLACEMENT_CHARACTER;

/// The fields of an entry SPEC §5 names, read in one pass over the entry (an event is parsed
/// once per push it leads to: one pass instead of one per name).
struct Known<'a> {
    values: [Option<&'a str>; KNOWN.len()],
    counts: [u32; KNOWN.len()],
    /// Whether a `twi_*` field is there (most entries have none: no second pass for them).
    twi: bool,
}

/// The prefix of a Twilio field added as a stream field of its own (`twi_to`, …).
const TWI: &str = "twi_";

/// The names [`Known`] reads, in the order of its arrays.
const KNOWN: [&str; 8] = [
    "type",
    "to",
    "call_sid",
    "from",
    "ttl_ms",
    "credential",
    "params",
    "twilio",
];

impl<'a> Known<'a> {
    fn read(entry: &'a StreamEntry) -> Known<'a> {
        let mut known = Known {
            values: [None; KNOWN.len()],
            counts: [0; KNOWN.len()],
            twi: false,
        };
        for (name, value) in entry.fields() {
            if let Some(i) = KNOWN.iter().position(|k| *k == name) {
                known.counts[i] += 1;
                known.values[i].get_or_insert(value);
            }
            known.twi |= name.starts_with(TWI);
        }
        known
    }

    /// The one value of the known field `name`: a field given twice is ambiguous (which one
    /// did the call server mean?).
    fn get(&self, name: &'static str) -> Result<Option<&'a str>, Malformed> {
        let i = KNOWN
            .iter()
            .position(|k| *k == name)
            .expect("only names of KNOWN are asked for");
        match self.counts[i] {
            0 | 1 => Ok(self.values[i]),
            n => Err(malformed(name, format!("is given {n} times"))),
        }
    }
}

/// The time part of a stream id, in ms since the Unix epoch.
pub fn stream_id_ms(id: &str) -> Option<u64> {
    id.split('-').next()?.parse().ok()
}

/// Check an identity against SPEC §2: non-empty, at most 121 UTF-8 bytes, no control characters;
/// and no U+FFFD, so an identity that arrived as invalid UTF-8 is refused rather than read as
/// another one.
pub fn check_identity(identity: &str) -> Result<(), String> {
    if identity.is_empty() {
        return Err("must not be empty".into());
    }
    if identity.len() > MAX_IDENTITY_BYTES {
        return Err(format!(
            "is {} bytes long; at most {MAX_IDENTITY_BYTES} are allowed",
            identity.len()
        ));
    }
    if identity.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    if identity.contains(REPLACEMENT) {
        return Err("must be valid UTF-8 without U+FFFD (which invalid UTF-8 reads as)".into());
    }
    Ok(())
}

/// Check `params`: a JSON object of string → string, at most 2048 bytes, no key twice (the app
/// and callpush might keep different ones). Returns its compact JSON text.
pub fn check_params(raw: &str) -> Result<String, String> {
    if raw.len() > MAX_PARAMS_BYTES {
        return Err(format!(
            "is {} bytes; at most {MAX_PARAMS_BYTES} are allowed",
            raw.len()
        ));
    }
    let value = crate::strict_json::from_slice(raw.as_bytes())
        .map_err(|e| format!("is not valid JSON: {e}"))?;
    let serde_json::Value::Object(map) = &value else {
        return Err("must be a JSON object of string values".into());
    };
    if let Some((k, _)) = map.iter().find(|(_, v)| !v.is_string()) {
        return Err(format!("value of {k:?} must be a string"));
    }
    Ok(value.to_string())
}

/// A Twilio call notification's fields (SPEC §10): the `twilio` field, a JSON object of string
/// values in the order Twilio sent them (what the webhook adds); else, for entries without it
/// (an earlier callpush's webhook, a call server's own XADD), every `twi_*` stream field.
fn twilio_fields(entry: &StreamEntry, known: &Known) -> Result<Vec<(String, String)>, Malformed> {
    match known.get("twilio")? {
        None | Some("") if !known.twi => Ok(Vec::new()),
        None | Some("") => Ok(entry
            .fields()
            .filter(|(k, _)| k.starts_with(TWI))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()),
        Some(raw) if raw.len() > MAX_TWILIO_BYTES => Err(malformed(
            "twilio",
            format!(
                "is {} bytes; at most {MAX_TWILIO_BYTES} are allowed",
                raw.len()
            ),
        )),
        Some(raw) => crate::strict_json::string_object(raw.as_bytes())
            .map_err(|e| malformed("twilio", e.to_string())),
    }
}

impl CallEvent {
    /// Parse and validate a stream entry. Unknown fields are ignored (they stay in the entry,
    /// and so in any dead letter made from it).
    pub fn parse(entry: &StreamEntry) -> Result<CallEvent, Malformed> {
        let enqueued_at_ms =
            stream_id_ms(&entry.id).ok_or_else(|| malformed("id", "is not a stream id"))?;
        let known = Known::read(entry);
        let kind = match known.get("type")? {
            None => return Err(malformed("type", "is missing")),
            Some("incoming") => PushKind::Incoming,
            Some("cancel") => PushKind::Cancel,
            Some(other) => {
                return Err(malformed(
                    "type",
                    format!("{other:?} is not one of \"incoming\", \"cancel\""),
                ))
            }
        };
        let to = known
            .get("to")?
            .ok_or_else(|| malformed("to", "is missing"))?;
        check_identity(to).map_err(|p| malformed("to", p))?;
        let call_sid = known
            .get("call_sid")?
            .ok_or_else(|| malformed("call_sid", "is missing"))?;
        if call_sid.is_empty() {
            return Err(malformed("call_sid", "must not be empty"));
        }
        if call_sid.len() > MAX_CALL_SID_BYTES || call_sid.chars().any(char::is_control) {
            return Err(malformed(
                "call_sid",
                format!("must be at most {MAX_CALL_SID_BYTES} bytes without control characters"),
            ));
        }
        if call_sid.contains(REPLACEMENT) {
            return Err(malformed(
                "call_sid",
                "must be valid UTF-8 without U+FFFD (which invalid UTF-8 reads as)",
            ));
        }
        let caller = match known.get("from")? {
            None | Some("") => None,
            Some(f) if f.len() > MAX_FROM_BYTES || f.chars().any(char::is_control) => {
                return Err(malformed(
                    "from",
                    format!("must be at most {MAX_FROM_BYTES} bytes without control characters"),
                ))
            }
            Some(f) => Some(Arc::from(f)),
        };
        let ttl_ms = match known.get("ttl_ms")? {
            None => DEFAULT_TTL_MS,
            Some(raw) => {
                let ttl: u64 = raw.parse().map_err(|_| {
                    malformed(
                        "ttl_ms",
                        format!("{raw:?} is not a whole number of milliseconds"),
                    )
                })?;
                if ttl == 0 || ttl > MAX_TTL_MS {
                    return Err(malformed(
                        "ttl_ms",
                        format!("{ttl} is outside 1..={MAX_TTL_MS}"),
                    ));
                }
                ttl
            }
        };
        let credential = match known.get("credential")? {
            None | Some("") => None,
            Some(c) => Some(c.to_string()),
        };
        let params = match known.get("params")? {
            None | Some("") => None,
            Some(raw) => Some(Arc::from(
                check_params(raw).map_err(|p| malformed("params", p))?,
            )),
        };
        let twilio = twilio_fields(entry, &known)?;
        Ok(CallEvent {
            call: Arc::new(CallContent {
                kind,
                call_sid: Arc::from(call_sid),
                caller,
                callee: Arc::from(to),
                params,
                deadline_ms: enqueued_at_ms.saturating_add(ttl_ms),
                twilio,
            }),
            credential,
            enqueued_at_ms,
            ttl_ms,
        })
    }
}

#[cfg(test)]
mod tests;
