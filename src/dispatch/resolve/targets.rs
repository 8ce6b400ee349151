//! Stage 2: the devices an event goes to — the callee's live bindings, narrowed to the event's
//! `credential` when it names one, to credentials this daemon has a provider for, and, for a
//! `cancel`, to providers that send cancels.

use std::sync::Arc;

use tracing::debug;

use super::super::ledger::device_key;
use super::super::Shared;
use crate::bindings::Binding;
use crate::domain::PushKind;
use crate::event::CallEvent;
use crate::providers::Provider;

/// One device the event goes to.
pub(in crate::dispatch) struct Target {
    pub(in crate::dispatch) binding: Binding,
    pub(in crate::dispatch) provider: Arc<dyn Provider>,
    /// The device's key in the ledger.
    pub(in crate::dispatch) device: String,
}

/// The event's targets; `None` when the bindings cannot be read (the entry stays pending).
pub(super) async fn resolve(shared: &Shared, event: &CallEvent) -> Option<Vec<Target>> {
    let bindings = match shared.store.list(event.to()).await {
        Ok(b) => {
            shared.outage.recovered();
            b
        }
        Err(err) => {
            shared
                .outage
                .failed("list_bindings", "resolving bindings", &err);
            debug!(error = %err, "cannot resolve bindings; event left pending");
            return None;
        }
    };
    Some(
        bindings
            .into_iter()
            .filter(|b| event.credential.as_ref().is_none_or(|c| *c == b.credential))
            .filter_map(|b| {
                let provider = shared.providers.get(&b.credential)?.clone();
                let device = device_key(event.kind(), &b.credential, &b.device_token);
                Some(Target {
                    binding: b,
                    provider,
                    device,
                })
            })
            .filter(|t| event.kind() == PushKind::Incoming || t.provider.sends_cancel())
            .collect(),
    )
}
