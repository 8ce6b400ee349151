//! Dead letters for the `dlq` tests: written straight to `<p>dead` (or the in-memory dead-letter
//! stream of a [`World`] on [`super::world::Backend::Memory`]) with the fields the outcome
//! script writes (the original event, then `reason`, `detail`, `attempts`, `failed_at`,
//! `source_id`), at chosen times, so filters by time can be checked.

use std::collections::HashMap;

use callpush::domain::rfc3339_ms;
use redis::AsyncCommands;

use super::world::World;

/// One dead letter to write.
#[derive(Debug, Clone)]
pub struct Dead<'a> {
    pub kind: &'a str,
    pub to: Option<&'a str>,
    pub call_sid: &'a str,
    pub reason: &'a str,
    pub detail: &'a str,
    /// When the original event was added (its source id's time).
    pub added_ms: u64,
    /// When it was dead-lettered (the dead letter's id time).
    pub failed_ms: u64,
    pub ttl_ms: Option<&'a str>,
}

impl<'a> Dead<'a> {
    pub fn new(reason: &'a str, to: &'a str, call_sid: &'a str, failed_ms: u64) -> Self {
        Dead {
            kind: "incoming",
            to: Some(to),
            call_sid,
            reason,
            detail: match reason {
                "provider_rejected" => "APNs 403 InvalidProviderToken",
                "retries_exhausted" => "FCM 503 UNAVAILABLE after 4 attempts",
                "expired" => "deadline passed",
                _ => "field `to`: is missing",
            },
            added_ms: failed_ms.saturating_sub(500),
            failed_ms,
            ttl_ms: None,
        }
    }

    pub fn fields(&self) -> Vec<(String, String)> {
        let mut f = vec![("type".to_string(), self.kind.to_string())];
        if let Some(to) = self.to {
            f.push(("to".into(), to.into()));
        }
        f.push(("call_sid".into(), self.call_sid.into()));
        f.push(("from".into(), "+15551234567".into()));
        if let Some(ttl) = self.ttl_ms {
            f.push(("ttl_ms".into(), ttl.into()));
        }
        f.push(("reason".into(), self.reason.into()));
        f.push(("detail".into(), self.detail.into()));
        f.push(("attempts".into(), "2".into()));
        f.push(("failed_at".into(), rfc3339_ms(self.failed_ms)));
        f.push(("source_id".into(), format!("{}-0", self.added_ms)));
        f
    }
}

/// XADD `dead` to `<prefix>dead` at its `failed_ms` (ids must increase); returns its id.
pub async fn add(
    conn: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
    dead: &Dead<'_>,
) -> String {
    conn.xadd(
        format!("{prefix}dead"),
        format!("{}-*", dead.failed_ms),
        &dead.fields(),
    )
    .await
    .expect("XADD dead letter")
}

/// XLEN of `<prefix><name>`.
pub async fn len(conn: &mut redis::aio::MultiplexedConnection, prefix: &str, name: &str) -> usize {
    conn.xlen(format!("{prefix}{name}")).await.expect("XLEN")
}

/// The ids of `<prefix>dead`, and of `<prefix>calls` the `replayed_from` of each entry.
pub async fn streams(
    conn: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
) -> (Vec<String>, Vec<HashMap<String, String>>) {
    let dead = super::daemon::read_all(conn, &format!("{prefix}dead")).await;
    let calls = super::daemon::read_all(conn, &format!("{prefix}calls")).await;
    (
        dead.into_iter().map(|(id, _)| id).collect(),
        calls.into_iter().map(|(_, f)| f).collect(),
    )
}

/// Add `dead` to the world's dead letters (Redis or memory) at its `failed_ms`; its id.
pub async fn add_to(world: &mut World, dead: &Dead<'_>) -> String {
    match world.memory_queue() {
        Some(queue) => queue.add_dead_letter_at(dead.failed_ms, dead.fields()),
        None => {
            let prefix = world.prefix.clone();
            add(&mut world.conn, &prefix, dead).await
        }
    }
}

/// The world's dead-letter ids, and the fields of its calls stream's entries.
pub async fn world_streams(world: &mut World) -> (Vec<String>, Vec<HashMap<String, String>>) {
    match world.memory_queue() {
        Some(queue) => {
            let calls = queue.calls();
            (
                queue.dead_letters().into_iter().map(|e| e.id).collect(),
                calls
                    .into_iter()
                    .map(|e| e.to_pairs().into_iter().collect())
                    .collect(),
            )
        }
        None => {
            let prefix = world.prefix.clone();
            streams(&mut world.conn, &prefix).await
        }
    }
}
