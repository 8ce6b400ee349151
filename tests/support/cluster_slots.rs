//! Which master serves which slot, as the nodes of a cluster say (`CLUSTER SLOTS`), asked over
//! fresh connections that give up on a node that does not answer within a second (paused,
//! killed), so the test's questions never wait on the fault it injected.

use std::time::Duration;

use callpush::redis_conn::slots::key_slot;

/// How long the test waits for one node's answer to a question about the cluster.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);

/// Which master serves each slot: `(first, last, port)` ranges from `CLUSTER SLOTS`.
#[derive(Debug, Clone)]
pub struct SlotMap {
    ranges: Vec<(u16, u16, u16)>,
}

impl SlotMap {
    /// The port of the master serving `slot`.
    pub fn master_of_slot(&self, slot: u16) -> u16 {
        self.ranges
            .iter()
            .find(|(first, last, _)| (*first..=*last).contains(&slot))
            .map(|(_, _, port)| *port)
            .unwrap_or_else(|| panic!("no master serves slot {slot}: {:?}", self.ranges))
    }

    /// The port of the master holding `key`.
    pub fn master_of(&self, key: &str) -> u16 {
        self.master_of_slot(key_slot(key))
    }

    /// The first slot of each range `port` serves.
    pub fn slots_of(&self, port: u16) -> Vec<u16> {
        self.ranges
            .iter()
            .filter(|(_, _, p)| *p == port)
            .map(|(first, _, _)| *first)
            .collect()
    }
}

/// The slot map as the first of `ports` that answers within [`ASK_TIMEOUT`] says.
pub async fn slot_map_from(ports: &[u16]) -> Option<SlotMap> {
    for &port in ports {
        let Some(redis::Value::Array(ranges)) = ask(port, &["CLUSTER", "SLOTS"]).await else {
            continue;
        };
        let parsed: Option<Vec<(u16, u16, u16)>> = ranges.iter().map(parse_range).collect();
        if let Some(ranges) = parsed {
            return Some(SlotMap { ranges });
        }
    }
    None
}

/// `[first, last, [host, port, id, …], replicas…]` of `CLUSTER SLOTS`.
fn parse_range(range: &redis::Value) -> Option<(u16, u16, u16)> {
    let redis::Value::Array(items) = range else {
        return None;
    };
    let int = |v: &redis::Value| redis::from_redis_value_ref::<u16>(v).ok();
    let redis::Value::Array(master) = items.get(2)? else {
        return None;
    };
    Some((
        int(items.first()?)?,
        int(items.get(1)?)?,
        int(master.get(1)?)?,
    ))
}

/// The command `args` on the node at `port` over a fresh connection, `None` when it does not
/// answer within [`ASK_TIMEOUT`] (paused, killed) or answers with an error.
pub async fn ask(port: u16, args: &[&str]) -> Option<redis::Value> {
    let mut cmd = redis::cmd(args[0]);
    cmd.arg(&args[1..]);
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(ASK_TIMEOUT))
        .set_response_timeout(Some(ASK_TIMEOUT));
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let question = async {
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .ok()?;
        cmd.query_async::<redis::Value>(&mut conn).await.ok()
    };
    tokio::time::timeout(ASK_TIMEOUT * 2, question)
        .await
        .ok()
        .flatten()
}
