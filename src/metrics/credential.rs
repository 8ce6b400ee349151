//! The series of one push credential, made the same way for the credentials of the start and
//! for one a reload adds (`Metrics::add_credential`): every label combination the push path
//! can emit is created at once, so a credential shows in `/metrics` (at 0) before its first
//! push.

use prometheus::{HistogramVec, IntCounterVec, IntGaugeVec};

use super::sharded::ShardedVec;

use super::{environment_labels, prune_reasons, retry_reasons, CredentialHandles};
use crate::domain::Platform;

/// The metric families that hold per-credential series.
pub(super) struct Families {
    pub(super) pushes: ShardedVec<IntCounterVec>,
    pub(super) push_duration: ShardedVec<HistogramVec>,
    pub(super) connections: IntGaugeVec,
    pub(super) pauses: IntCounterVec,
    pub(super) paused: IntGaugeVec,
}

impl Families {
    /// The series of credential `sid` of `platform`, and its cached handles.
    pub(super) fn handles(&self, platform: Platform, sid: &str) -> CredentialHandles {
        let p = platform.as_str();
        let envs = environment_labels(platform);
        for env in envs {
            for reason in retry_reasons(platform) {
                self.pushes
                    .any()
                    .with_label_values(&[p, sid, env, "retry", reason]);
            }
            for reason in prune_reasons(platform) {
                self.pushes
                    .any()
                    .with_label_values(&[p, sid, env, "invalid_token", reason]);
            }
        }
        CredentialHandles {
            delivered: envs.map(|env| {
                self.pushes
                    .handle(|v| v.with_label_values(&[p, sid, env, "delivered", ""]))
            }),
            duration: self
                .push_duration
                .handle(|v| v.with_label_values(&[p, sid])),
            connections: envs.map(|env| self.connections.with_label_values(&[p, sid, env])),
            pauses: self.pauses.with_label_values(&[p, sid]),
            paused: self.paused.with_label_values(&[p, sid]),
        }
    }
}
