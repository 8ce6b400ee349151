//! Reading any stream by id range (XRANGE), outside the consumer group: the results and
//! dead-letter streams, for the `callpush dlq` CLI, the admin API and the tests.

use redis::aio::ConnectionLike;
use redis::Value;

use super::reply;
use crate::backend::BackendError;
use crate::event::StreamEntry;

/// Read up to `count` entries of any stream from `start` on (XRANGE `start` `+`): `-` for the
/// beginning, an id to include it, `(id` to start after it. For the results and dead-letter
/// streams (CLI, admin API, tests).
pub async fn read_stream(
    conn: &mut impl ConnectionLike,
    key: &str,
    start: &str,
    count: usize,
) -> Result<Vec<StreamEntry>, BackendError> {
    read_range(conn, key, start, "+", count).await
}

/// Read up to `count` entries of any stream between `start` and `end` (XRANGE bounds: `-`,
/// `+`, an id, `(id` exclusive), oldest first.
pub async fn read_range(
    conn: &mut impl ConnectionLike,
    key: &str,
    start: &str,
    end: &str,
    count: usize,
) -> Result<Vec<StreamEntry>, BackendError> {
    let value: Value = redis::cmd("XRANGE")
        .arg(key)
        .arg(start)
        .arg(end)
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await?;
    Ok(reply::split(reply::entries(&value)?).0)
}

/// Decode a list of stream entries (`[[id, [field, value, …]], …]`, as XRANGE answers, also when
/// a script passes such a list on).
pub fn decode_entries(value: &Value) -> Result<Vec<StreamEntry>, BackendError> {
    Ok(reply::split(reply::entries(value)?).0)
}
