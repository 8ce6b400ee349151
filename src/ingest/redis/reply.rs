//! Decoding stream replies (XREADGROUP, XAUTOCLAIM, XRANGE) from raw values, because the
//! typed replies of the `redis` crate cannot represent what the queue must see: entries that
//! were deleted while pending come back with nil fields (XREADGROUP … 0, XAUTOCLAIM before
//! Redis 7) or as a list of ids (XAUTOCLAIM since Redis 7), and both must be acknowledged.
//! RESP2 arrays and RESP3 maps are both accepted.

use redis::{ErrorKind, RedisError, Value};

use crate::event::StreamEntry;
use crate::redis_conn::wire::{Items, Reply};

/// One entry of a reply: its id and its fields (an entry whose id [`split`] fills in), `None`
/// when the entry was deleted.
pub(super) type RawEntry = (String, Option<StreamEntry>);

fn unexpected(what: &str, value: &Value) -> RedisError {
    RedisError::from((
        ErrorKind::UnexpectedReturnType,
        "unexpected stream reply",
        format!("{what}: {value:?}"),
    ))
}

/// A scalar as text (stream ids, field names and values are bulk strings).
pub(super) fn text(value: &Value) -> Result<String, RedisError> {
    match value {
        Value::BulkString(bytes) => Ok(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Ok(s.clone()),
        Value::VerbatimString { text, .. } => Ok(text.clone()),
        Value::Int(i) => Ok(i.to_string()),
        other => Err(unexpected("expected a string", other)),
    }
}

/// Field/value pairs, flat (`[f, v, f, v]`) or as a RESP3 map; `None` for nil (deleted).
fn fields(value: &Value) -> Result<Option<StreamEntry>, RedisError> {
    match value {
        Value::Nil => Ok(None),
        Value::Array(items) => {
            if items.len() % 2 != 0 {
                return Err(unexpected("odd number of field items", value));
            }
            let mut entry = StreamEntry::with_capacity(String::new(), items.len() / 2, 0);
            for kv in items.chunks(2) {
                entry.push(&text(&kv[0])?, &text(&kv[1])?);
            }
            Ok(Some(entry))
        }
        Value::Map(pairs) => {
            let mut entry = StreamEntry::with_capacity(String::new(), pairs.len(), 0);
            for (k, v) in pairs {
                entry.push(&text(k)?, &text(v)?);
            }
            Ok(Some(entry))
        }
        other => Err(unexpected("expected fields", other)),
    }
}

/// A list of `[id, fields]` entries.
pub(super) fn entries(value: &Value) -> Result<Vec<RawEntry>, RedisError> {
    let items = match value {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(items) => items,
        other => return Err(unexpected("expected a list of entries", other)),
    };
    items
        .iter()
        .map(|item| match item {
            Value::Array(pair) if pair.len() == 2 => Ok((text(&pair[0])?, fields(&pair[1])?)),
            other => Err(unexpected("expected an [id, fields] entry", other)),
        })
        .collect()
}

/// The entries of an XREADGROUP reply for one stream; nil (BLOCK timed out) is empty.
pub(super) fn read_reply(value: &Value) -> Result<Vec<RawEntry>, RedisError> {
    match value {
        Value::Nil => Ok(Vec::new()),
        Value::Array(streams) => match streams.first() {
            None => Ok(Vec::new()),
            Some(Value::Array(pair)) if pair.len() == 2 => entries(&pair[1]),
            Some(other) => Err(unexpected("expected a [stream, entries] pair", other)),
        },
        Value::Map(streams) => match streams.first() {
            None => Ok(Vec::new()),
            Some((_, list)) => entries(list),
        },
        other => Err(unexpected("expected an XREADGROUP reply", other)),
    }
}

/// [`read_reply`] of a reply read in place off the wire connection (RESP2).
pub(super) fn read_reply_wire(reply: Reply<'_>) -> Result<Vec<RawEntry>, RedisError> {
    match reply.ok()? {
        Reply::Nil => Ok(Vec::new()),
        Reply::Array(mut streams) => match streams.next() {
            None => Ok(Vec::new()),
            Some(Reply::Array(mut pair)) if pair.remaining() == 2 => {
                pair.next();
                entries_wire(pair.next())
            }
            Some(other) => Err(unexpected_wire("expected a [stream, entries] pair", &other)),
        },
        other => Err(unexpected_wire("expected an XREADGROUP reply", &other)),
    }
}

fn unexpected_wire(what: &str, reply: &Reply<'_>) -> RedisError {
    RedisError::from((
        ErrorKind::UnexpectedReturnType,
        "unexpected stream reply",
        format!("{what}: {reply:?}"),
    ))
}

/// [`entries`] off the wire.
fn entries_wire(list: Option<Reply<'_>>) -> Result<Vec<RawEntry>, RedisError> {
    let items = match list {
        Some(Reply::Nil) => return Ok(Vec::new()),
        Some(Reply::Array(items)) => items,
        Some(other) => return Err(unexpected_wire("expected a list of entries", &other)),
        None => return Err(unexpected_wire("expected a list of entries", &Reply::Nil)),
    };
    let mut out = Vec::with_capacity(items.remaining());
    for item in items {
        let Reply::Array(mut pair) = item else {
            return Err(unexpected_wire("expected an [id, fields] entry", &item));
        };
        if pair.remaining() != 2 {
            return Err(unexpected_wire(
                "expected an [id, fields] entry",
                &Reply::Array(pair),
            ));
        }
        let id = text_wire(pair.next())?;
        out.push((id, fields_wire(pair.next())?));
    }
    Ok(out)
}

/// [`fields`] off the wire, copied once into the entry's one string.
fn fields_wire(value: Option<Reply<'_>>) -> Result<Option<StreamEntry>, RedisError> {
    let mut items: Items<'_> = match value {
        Some(Reply::Nil) | None => return Ok(None),
        Some(Reply::Array(items)) => items,
        Some(other) => return Err(unexpected_wire("expected fields", &other)),
    };
    if items.remaining() % 2 != 0 {
        return Err(unexpected_wire(
            "odd number of field items",
            &Reply::Array(items),
        ));
    }
    let bytes = items
        .clone()
        .map(|item| match item {
            Reply::Bulk(b) => b.len(),
            _ => 0,
        })
        .sum();
    let mut entry = StreamEntry::with_capacity(String::new(), items.remaining() / 2, bytes);
    while items.remaining() > 0 {
        let (name, value) = (items.next(), items.next());
        entry.push(&word_wire(&name)?, &word_wire(&value)?);
    }
    Ok(Some(entry))
}

/// A field name or value off the wire, borrowed when it is UTF-8 (as [`text`] reads it).
fn word_wire<'a>(value: &'a Option<Reply<'a>>) -> Result<std::borrow::Cow<'a, str>, RedisError> {
    match value {
        Some(Reply::Int(i)) => Ok(std::borrow::Cow::Owned(i.to_string())),
        Some(other) => other
            .text()
            .ok_or_else(|| unexpected_wire("expected a string", other)),
        None => Err(unexpected_wire("expected a string", &Reply::Nil)),
    }
}

/// [`text`] off the wire.
fn text_wire(value: Option<Reply<'_>>) -> Result<String, RedisError> {
    match value {
        Some(Reply::Int(i)) => Ok(i.to_string()),
        Some(other) => match other.text() {
            Some(text) => Ok(text.into_owned()),
            None => Err(unexpected_wire("expected a string", &other)),
        },
        None => Err(unexpected_wire("expected a string", &Reply::Nil)),
    }
}

/// An XAUTOCLAIM reply: the next cursor, the claimed entries, and the ids of entries that were
/// deleted while pending (Redis 7 lists them; Redis 6.2 returns them with nil fields).
pub(super) fn autoclaim_reply(
    value: &Value,
) -> Result<(String, Vec<RawEntry>, Vec<String>), RedisError> {
    let Value::Array(parts) = value else {
        return Err(unexpected("expected an XAUTOCLAIM reply", value));
    };
    let cursor = text(
        parts
            .first()
            .ok_or_else(|| unexpected("missing cursor", value))?,
    )?;
    let claimed = match parts.get(1) {
        Some(list) => entries(list)?,
        None => Vec::new(),
    };
    let deleted = match parts.get(2) {
        Some(Value::Array(ids)) => ids.iter().map(text).collect::<Result<Vec<_>, _>>()?,
        _ => Vec::new(),
    };
    Ok((cursor, claimed, deleted))
}

/// Split raw entries into live ones and the ids of deleted ones.
pub(super) fn split(raw: Vec<RawEntry>) -> (Vec<StreamEntry>, Vec<String>) {
    let mut live = Vec::with_capacity(raw.len());
    let mut deleted = Vec::new();
    for (id, fields) in raw {
        match fields {
            Some(mut entry) => {
                entry.id = id;
                live.push(entry);
            }
            None => deleted.push(id),
        }
    }
    (live, deleted)
}

/// The `last-delivered-id` of `group` in an `XINFO GROUPS` reply (a list of flat field lists
/// in RESP2, of maps in RESP3).
pub(super) fn group_last_delivered(value: &Value, group: &str) -> Option<String> {
    let Value::Array(groups) = value else {
        return None;
    };
    groups.iter().find_map(|g| {
        let pairs: Vec<(String, &Value)> = match g {
            Value::Array(items) => items
                .chunks(2)
                .filter_map(|kv| Some((text(&kv[0]).ok()?, kv.get(1)?)))
                .collect(),
            Value::Map(items) => items
                .iter()
                .filter_map(|(k, v)| Some((text(k).ok()?, v)))
                .collect(),
            _ => return None,
        };
        let field = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| text(v).ok())
        };
        (field("name")? == group).then(|| field("last-delivered-id"))?
    })
}

/// The consumer of an extended `XPENDING key group id id 1` reply: `[[id, consumer, idle,
/// deliveries]]`, or `None` when the entry is not pending.
pub(super) fn pending_owner(value: &Value) -> Result<Option<String>, RedisError> {
    match value {
        Value::Array(rows) => match rows.first() {
            None => Ok(None),
            Some(Value::Array(row)) if row.len() >= 2 => Ok(Some(text(&row[1])?)),
            Some(other) => Err(unexpected("expected a pending entry", other)),
        },
        other => Err(unexpected("expected pending entries", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn pending_entries_with_nil_fields_are_deleted_ones() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("calls"),
            Value::Array(vec![
                Value::Array(vec![bulk("1-0"), Value::Array(vec![bulk("to"), bulk("a")])]),
                Value::Array(vec![bulk("2-0"), Value::Nil]),
            ]),
        ])]);
        let (live, deleted) = split(read_reply(&reply).unwrap());
        assert_eq!(live, vec![StreamEntry::of("1-0", &[("to", "a")])]);
        assert_eq!(deleted, vec!["2-0".to_string()]);
    }

    #[test]
    fn a_read_off_the_wire_gives_live_and_deleted_entries() {
        let wire = b"*1\r\n*2\r\n$5\r\ncalls\r\n*2\r\n\
            *2\r\n$3\r\n1-0\r\n*4\r\n$4\r\ntype\r\n$8\r\nincoming\r\n$2\r\nto\r\n$5\r\nalice\r\n\
            *2\r\n$3\r\n2-0\r\n$-1\r\n";
        let replies = crate::redis_conn::wire::Replies::from_static(wire, 1);
        let raw = read_reply_wire(replies.iter().next().unwrap()).unwrap();
        let (live, deleted) = split(raw);
        assert_eq!(
            live,
            vec![StreamEntry::of(
                "1-0",
                &[("type", "incoming"), ("to", "alice")]
            )]
        );
        assert_eq!(deleted, vec!["2-0".to_string()]);
        let timed_out = crate::redis_conn::wire::Replies::from_static(b"*-1\r\n", 1);
        assert!(read_reply_wire(timed_out.iter().next().unwrap())
            .unwrap()
            .is_empty());
        let refused = crate::redis_conn::wire::Replies::from_static(b"-NOGROUP No such key\r\n", 1);
        let err = read_reply_wire(refused.iter().next().unwrap()).unwrap_err();
        assert_eq!(err.code(), Some("NOGROUP"));
    }

    #[test]
    fn a_timed_out_read_is_empty() {
        assert!(read_reply(&Value::Nil).unwrap().is_empty());
    }

    #[test]
    fn autoclaim_lists_deleted_ids() {
        let reply = Value::Array(vec![
            bulk("0-0"),
            Value::Array(vec![]),
            Value::Array(vec![bulk("3-0")]),
        ]);
        let (cursor, claimed, deleted) = autoclaim_reply(&reply).unwrap();
        assert_eq!(cursor, "0-0");
        assert!(claimed.is_empty());
        assert_eq!(deleted, vec!["3-0".to_string()]);
    }
}
