//! Stage 2: the devices an event goes to — the callee's live bindings, narrowed to the event's
//! `credential` when it names one, to credentials this daemon has a provider for, and, for a
//! `cancel`, to providers that send cancels.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::oneshot;
use tracing::debug;

use super::super::ledger::{device_key, DeviceKey};
use super::super::outage::StoreFailure;
use super::super::Shared;
use crate::bindings::Device;
use crate::domain::PushKind;
use crate::event::CallEvent;
use crate::providers::Provider;

/// One device the event goes to.
pub(in crate::dispatch) struct Target {
    pub(in crate::dispatch) binding: Device,
    pub(in crate::dispatch) provider: Arc<dyn Provider>,
    /// The device's key in the ledger.
    pub(in crate::dispatch) device: DeviceKey,
}

/// One event's request for its callee's bindings, served with others ([`serve`]).
pub(in crate::dispatch) struct Lookup {
    /// Shared with the event.
    pub(in crate::dispatch) identity: Arc<str>,
    /// The bindings, or why they could not be read (an outage is logged once, by [`serve`]).
    pub(in crate::dispatch) answer: oneshot::Sender<Result<Vec<Device>, StoreFailure>>,
}

/// Read the bindings of every identity `batch` asks for in one [`BindingStore::list_devices`]
/// (each identity once) and answer each request.
///
/// [`BindingStore::list_devices`]: crate::bindings::BindingStore::list_devices
pub(in crate::dispatch) async fn serve(shared: &Shared, batch: Vec<Lookup>) {
    let mut position: HashMap<&str, usize> = HashMap::with_capacity(batch.len());
    let mut distinct: Vec<Arc<str>> = Vec::with_capacity(batch.len());
    let mut askers: Vec<usize> = Vec::with_capacity(batch.len());
    let index: Vec<usize> = batch
        .iter()
        .map(|l| {
            let i = *position.entry(&*l.identity).or_insert_with(|| {
                distinct.push(l.identity.clone());
                askers.push(0);
                distinct.len() - 1
            });
            askers[i] += 1;
            i
        })
        .collect();
    let lists = shared.store.list_devices(&distinct).await;
    let mut lists: Vec<Option<Result<Vec<Device>, StoreFailure>>> = shared
        .outage
        .judge_all("list_bindings", "resolving bindings", lists)
        .into_iter()
        .map(Some)
        .collect();
    for (lookup, i) in batch.into_iter().zip(index) {
        askers[i] -= 1;
        let bindings = if askers[i] == 0 {
            lists[i].take()
        } else {
            lists[i].clone()
        };
        let _ = lookup
            .answer
            .send(bindings.unwrap_or(Err(StoreFailure::Unavailable)));
    }
}

/// The callee's bindings: through the lookup stage when the pool runs one, else served alone
/// here (the unit tests' pools).
async fn bindings(shared: &Shared, identity: Arc<str>) -> Result<Vec<Device>, StoreFailure> {
    let (answer, got) = oneshot::channel();
    let lookup = Lookup { identity, answer };
    match shared.batches.as_ref() {
        Some(stage) => {
            if stage.lookups.send(lookup).await.is_err() {
                return Err(StoreFailure::Unavailable);
            }
        }
        None => serve(shared, vec![lookup]).await,
    }
    got.await.unwrap_or(Err(StoreFailure::Unavailable))
}

/// The event's targets, or why the bindings cannot be read (unavailable: the entry stays
/// pending; refused: it is dead-lettered).
pub(super) async fn resolve(
    shared: &Shared,
    event: &CallEvent,
) -> Result<Vec<Target>, StoreFailure> {
    let bindings = bindings(shared, event.call.callee.clone())
        .await
        .inspect_err(|_| {
            debug!("cannot resolve bindings");
        })?;
    Ok(bindings
        .into_iter()
        .filter(|b| {
            event
                .credential
                .as_ref()
                .is_none_or(|c| **c == *b.credential)
        })
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
        .collect())
}
