//! `callpush_stage_seconds{stage}`: where an event spends its time, one histogram per stage of
//! the dispatcher, so an operator sees whether a slow day waits on the stream, on Redis or on
//! the providers. Cheap enough to leave on: the five handles are resolved at start and a lap is
//! one `Instant::now()` and one observation, no allocation.

use std::time::Instant;

use prometheus::{Histogram, Registry};

use super::sharded::Sharded;

/// Stage durations, seconds: 100 µs to 30 s.
const STAGE_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// The stages of one event, in order (the `stage` label values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// From the entry's stream-id time to the dispatcher reading it (waiting in the stream).
    Read,
    /// Reading the callee's bindings.
    Resolve,
    /// Claiming the devices in the push ledger.
    Claim,
    /// Pushing every claimed device until each provider's final answer, retries included.
    Push,
    /// Settling the ledger, recording the outcome and acknowledging the entry.
    Finish,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 5] = [
        Stage::Read,
        Stage::Resolve,
        Stage::Claim,
        Stage::Push,
        Stage::Finish,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Read => "read",
            Stage::Resolve => "resolve",
            Stage::Claim => "claim",
            Stage::Push => "push",
            Stage::Finish => "finish",
        }
    }
}

/// The five cached histogram handles.
pub(crate) struct StageMetrics {
    handles: [Sharded<Histogram>; 5],
}

impl StageMetrics {
    pub(crate) fn new(registry: &Registry) -> prometheus::Result<StageMetrics> {
        let vec = super::register::sharded_histogram(
            registry,
            "callpush_stage_seconds",
            "Time an event spends in each dispatcher stage: read (stream-id time to read), resolve (bindings), claim (push ledger), push (providers' final answers), finish (settle, record, acknowledge).",
            &["stage"],
            STAGE_BUCKETS,
        )?;
        Ok(StageMetrics {
            handles: Stage::ALL.map(|s| vec.handle(|v| v.with_label_values(&[s.as_str()]))),
        })
    }

    /// Observe `seconds` spent in `stage`.
    pub(crate) fn observe(&self, stage: Stage, seconds: f64) {
        self.handles[stage as usize]
            .local()
            .observe(seconds.max(0.0));
    }

    /// A clock for one event's stages, started now.
    pub(crate) fn clock(&self) -> StageClock<'_> {
        StageClock {
            stages: self,
            since: Instant::now(),
        }
    }
}

/// Times consecutive stages of one event: each [`StageClock::lap`] observes the time since the
/// previous one (or since the clock started).
pub(crate) struct StageClock<'a> {
    stages: &'a StageMetrics,
    since: Instant,
}

impl StageClock<'_> {
    /// When the stage now under way began.
    pub(crate) fn since(&self) -> Instant {
        self.since
    }

    /// `stage` ended now.
    pub(crate) fn lap(&mut self, stage: Stage) {
        let now = Instant::now();
        self.stages
            .observe(stage, now.duration_since(self.since).as_secs_f64());
        self.since = now;
    }
}
