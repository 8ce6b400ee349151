//! Where device acks are kept (SPEC §11), and `GET /v1/acks` (admin) to read them.
//!
//! On Redis: the stream `<p>acks` (capped with `MAXLEN ~` [`ACKS_MAX_LEN`]), which call servers
//! `XREAD`. On the in-memory backend (`callpush dev`): the last [`MEMORY_ACKS_LEN`] in this
//! process, with ids as a stream's. `GET /v1/acks?after=<id>&limit=<n>` answers
//! `{"acks": [...]}`, oldest first, on either backend: in memory it is the only way to read
//! them from outside the process (as `/v1/dead-letters` is for dead letters).

use std::sync::{Arc, Mutex};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::ApiContext;
use crate::backend::BackendError;
use crate::bindings::feed::{entries_after, parse_id, MemoryLog};
use crate::redis_conn::RedisConn;

/// The `<p>acks` stream's approximate cap.
pub const ACKS_MAX_LEN: u64 = 1_000_000;
/// How many acks the in-memory backend keeps.
pub const MEMORY_ACKS_LEN: usize = 10_000;
/// Acks per page when `limit` is not given, and the largest `limit`.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// One device's first ack of a call, as `<p>acks` holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AckEntry {
    /// The entry's stream id (in memory too), for reading on after it.
    pub id: String,
    pub call_sid: String,
    /// The callee.
    pub to: String,
    pub binding_id: String,
    pub platform: String,
    pub credential: String,
    /// The call event's stream-id time (`None` for a push recorded before device acks).
    pub pushed_ms: Option<u64>,
    pub acked_ms: u64,
}

impl AckEntry {
    fn fields(&self) -> [(&'static str, String); 7] {
        [
            ("call_sid", self.call_sid.clone()),
            ("to", self.to.clone()),
            ("binding_id", self.binding_id.clone()),
            ("platform", self.platform.clone()),
            ("credential", self.credential.clone()),
            (
                "pushed_ms",
                self.pushed_ms.map(|p| p.to_string()).unwrap_or_default(),
            ),
            ("acked_ms", self.acked_ms.to_string()),
        ]
    }

    fn from_fields(id: String, flat: &[String]) -> AckEntry {
        let get = |name: &str| {
            flat.chunks(2)
                .find(|kv| kv.first().is_some_and(|k| k == name))
                .and_then(|kv| kv.get(1).cloned())
                .unwrap_or_default()
        };
        AckEntry {
            id,
            call_sid: get("call_sid"),
            to: get("to"),
            binding_id: get("binding_id"),
            platform: get("platform"),
            credential: get("credential"),
            pushed_ms: get("pushed_ms").parse().ok(),
            acked_ms: get("acked_ms").parse().unwrap_or_default(),
        }
    }
}

/// The acks of one daemon's backend (see the module docs).
pub enum AckLog {
    /// `<p>acks` on Redis.
    Redis { conn: RedisConn, key: String },
    /// In memory.
    Memory(Mutex<MemoryLog<AckEntry, MEMORY_ACKS_LEN>>),
}

impl AckLog {
    /// The stream `key` on `redis`, or in memory without Redis.
    pub fn new(redis: Option<RedisConn>, key: String) -> Arc<AckLog> {
        Arc::new(match redis {
            Some(conn) => AckLog::Redis { conn, key },
            None => AckLog::Memory(Mutex::default()),
        })
    }

    /// Add `entry` (its `id` is given here).
    pub async fn add(&self, entry: AckEntry) -> Result<(), BackendError> {
        match self {
            AckLog::Redis { conn, key } => {
                let mut cmd = redis::cmd("XADD");
                cmd.arg(key)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(ACKS_MAX_LEN)
                    .arg("*");
                for (name, value) in entry.fields() {
                    cmd.arg(name).arg(value);
                }
                cmd.query_async::<String>(&mut conn.clone()).await?;
            }
            AckLog::Memory(log) => log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(entry.acked_ms, |id| AckEntry { id, ..entry }),
        }
        Ok(())
    }

    /// Up to `count` acks after the id `after` (`None`: the oldest kept), oldest first.
    pub async fn read(
        &self,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<AckEntry>, BackendError> {
        match self {
            AckLog::Redis { conn, key } => {
                let entries = entries_after(&mut conn.clone(), key, after, count).await?;
                Ok(entries
                    .into_iter()
                    .map(|(id, flat)| AckEntry::from_fields(id, &flat))
                    .collect())
            }
            AckLog::Memory(log) => Ok(log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .read(after, count)),
        }
    }
}

/// The query of `GET /v1/acks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/acks?after=&limit=`: `{"acks": [...]}`, oldest first.
pub async fn list(
    State(ctx): State<Arc<ApiContext>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    if let Some(after) = &query.after {
        if parse_id(after).is_none() {
            return Err(ApiError::InvalidRequest(format!(
                "after: {after:?} is not an ack id (like 1733580000000-0)"
            )));
        }
    }
    let limit = match query.limit {
        None => DEFAULT_LIMIT,
        Some(n) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::InvalidRequest(format!(
                "limit: {n} is not from 1 to {MAX_LIMIT}"
            )))
        }
    };
    let acks = ctx.acks.read(query.after.as_deref(), limit).await?;
    Ok(Json(json!({ "acks": acks })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(call_sid: &str, acked_ms: u64) -> AckEntry {
        AckEntry {
            id: String::new(),
            call_sid: call_sid.into(),
            to: "alice".into(),
            binding_id: "BS1".into(),
            platform: "fcm".into(),
            credential: "CRfcm".into(),
            pushed_ms: Some(acked_ms - 900),
            acked_ms,
        }
    }

    #[tokio::test]
    async fn acks_in_memory_read_on_after_an_id() {
        let log = AckLog::new(None, "cp:acks".into());
        log.add(entry("CA1", 5_000)).await.unwrap();
        log.add(entry("CA2", 5_000)).await.unwrap();
        let all = log.read(None, 10).await.unwrap();
        let ids: Vec<&str> = all.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["5000-0", "5000-1"]);
        let rest = log.read(Some("5000-0"), 10).await.unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].call_sid, "CA2");
        assert_eq!(rest[0].pushed_ms, Some(4_100));
    }

    #[test]
    fn an_entry_reads_back_from_its_stream_fields() {
        let e = AckEntry {
            id: "7-0".into(),
            ..entry("CA9", 2_000)
        };
        let flat: Vec<String> = e
            .fields()
            .into_iter()
            .flat_map(|(k, v)| [k.to_string(), v])
            .collect();
        assert_eq!(AckEntry::from_fields("7-0".into(), &flat), e);
    }
}
