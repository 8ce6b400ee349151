//! Limits counted in Redis (`limits.scope = "cluster"`), shared by every daemon of the group.
//!
//! Each limit is a GCRA cell per key (`gcra.lua`): the same burst as the in-process limiter
//! (a limit of N per period lets N through at once, then one every period / N), the server's
//! clock for every daemon. The requests of the moment go together ([`super::super::batch`]):
//! one round trip for every callee check and credential slot asked for meanwhile, never one
//! per push on its own.
//!
//! Keys (`<p>` is `redis.key_prefix`), each touched alone by the script, so any cluster slot
//! will do; each expires a second after its limiter is full again:
//! - `<p>limit:callee:<identity>` — the callee's incoming calls (`calls_per_identity_per_min`);
//! - `<p>limit:credential:<sid>` — the credential's pushes (`rate_limit_per_sec`).
//!
//! When Redis does not answer, the daemon counts on its own ([`super::Limits`] falls back to
//! its in-process limiters) and says so once; it asks Redis again a second later.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::Script;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::redis_conn::{invoke_each, RedisConn, ScriptCall};

/// Requests served per round trip at most.
const BATCH: usize = 256;
/// How long after a failed round trip the daemon counts on its own before asking Redis again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// One cell asked of a shared limiter.
pub(super) struct Cell {
    /// The limiter's key.
    pub key: String,
    /// Milliseconds between cells once the burst is spent.
    pub interval_ms: f64,
    /// Cells available at once.
    pub burst: u32,
    /// The longest the caller may wait for its cell, in ms (0: now or never).
    pub max_wait_ms: u64,
}

/// What Redis said about a [`Cell`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Granted {
    /// The cell is the caller's after this wait.
    After(Duration),
    /// Over the limit (or not before `max_wait_ms`); nothing taken.
    Refused,
}

type Ask = (Cell, oneshot::Sender<Option<Granted>>);

/// The shared limiters: a stage that sends the cells asked for meanwhile in one round trip.
pub(super) struct ClusterCounter {
    asks: mpsc::Sender<Ask>,
    /// Whether the last round trip failed (logged once per outage).
    degraded: AtomicBool,
    /// Until when the daemon counts on its own after a failure.
    local_until: Mutex<Option<Instant>>,
    stop: CancellationToken,
}

impl ClusterCounter {
    /// Start the stage on `conn`; on a Redis Cluster (`split`) each cell goes on its own
    /// command at once (see `batch`).
    pub(super) fn start(conn: RedisConn, split: bool) -> ClusterCounter {
        let (asks, inbox) = mpsc::channel::<Ask>(BATCH * 4);
        let script = Arc::new(Script::new(include_str!("gcra.lua")));
        let stop = CancellationToken::new();
        let serve = move |batch: Vec<Ask>| {
            let conn = conn.clone();
            let script = script.clone();
            async move {
                let calls = batch
                    .iter()
                    .map(|(cell, _)| {
                        let mut call = ScriptCall::new(&script, &cell.key);
                        call.arg(format!("{:.3}", cell.interval_ms))
                            .arg(cell.burst)
                            .arg(cell.max_wait_ms);
                        call
                    })
                    .collect();
                let answers = invoke_each::<i64>(&conn, &script, calls).await;
                for ((_, answer), got) in batch.into_iter().zip(answers) {
                    let granted = got.ok().map(|wait| match u64::try_from(wait) {
                        Ok(ms) => Granted::After(Duration::from_millis(ms)),
                        Err(_) => Granted::Refused,
                    });
                    let _ = answer.send(granted);
                }
            }
        };
        tokio::spawn(super::super::batch::run(
            inbox,
            BATCH,
            super::super::batch::IN_FLIGHT,
            split,
            stop.clone(),
            serve,
        ));
        ClusterCounter {
            asks,
            degraded: AtomicBool::new(false),
            local_until: Mutex::new(None),
            stop,
        }
    }

    /// Take `cell` from its shared limiter; `None` when Redis did not answer (the caller counts
    /// on its own then).
    pub(super) async fn take(&self, cell: Cell) -> Option<Granted> {
        if self.counting_locally() {
            return None;
        }
        let (answer, got) = oneshot::channel();
        if self.asks.send((cell, answer)).await.is_err() {
            return None;
        }
        let granted = got.await.ok().flatten();
        self.note(granted.is_some());
        granted
    }

    fn counting_locally(&self) -> bool {
        let mut until = self.local_until.lock().expect("never poisoned");
        match *until {
            Some(at) if Instant::now() < at => true,
            Some(_) => {
                *until = None;
                false
            }
            None => false,
        }
    }

    /// Log the start and the end of an outage once each.
    fn note(&self, answered: bool) {
        if answered {
            if self.degraded.swap(false, Ordering::Relaxed) {
                info!("limits.scope = \"cluster\": Redis answers again; limits are counted across the cluster");
            }
            return;
        }
        *self.local_until.lock().expect("never poisoned") = Some(Instant::now() + RETRY_AFTER);
        if !self.degraded.swap(true, Ordering::Relaxed) {
            warn!(
                "limits.scope = \"cluster\": Redis did not answer; each daemon counts the call \
                 and credential limits on its own until it does"
            );
        }
    }
}

impl Drop for ClusterCounter {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
