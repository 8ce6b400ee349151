//! Stand-ins for the unit tests of the worker pool: an in-memory binding store, a queue that
//! holds nothing, providers answering from a script, and a [`Shared`] built from them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::ledger::MemoryLedger;
use super::resolve::{resolve, Resolution};
use super::retry::RetryPolicy;
use super::Shared;
use crate::backend::BackendError;
use crate::bindings::{Binding, BindingStore, NewBinding, Registered};
use crate::config::RetrySettings;
use crate::domain::{now_ms, ApnsEnvironment, ApnsEnvironments, Platform, Push};
use crate::event::StreamEntry;
use crate::ingest::CallQueue;
use crate::outcome::{DeadLetter, EventResult};
use crate::providers::{Failure, Outcome, Provider};

#[derive(Default)]
pub(super) struct Store {
    pub(super) bindings: Vec<Binding>,
    pub(super) pruned: Mutex<Vec<(String, u64)>>,
    /// Environments learned: (device token, environment).
    pub(super) learned: Mutex<Vec<(String, ApnsEnvironment)>>,
    /// Fail this many `list` calls first, as Redis in an outage would.
    pub(super) failing_lists: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl BindingStore for Store {
    async fn register(&self, _: NewBinding, _: u64) -> Result<Registered, BackendError> {
        unreachable!("resolution never registers")
    }
    async fn list(&self, identity: &str) -> Result<Vec<Binding>, BackendError> {
        use std::sync::atomic::Ordering;
        let failing = &self.failing_lists;
        if failing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            // An outage: the store does not answer.
            let down = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
            return Err(BackendError::Redis(down.into()));
        }
        Ok(self
            .bindings
            .iter()
            .filter(|b| b.identity == identity)
            .cloned()
            .collect())
    }
    async fn delete(&self, _: &str, _: &str) -> Result<bool, BackendError> {
        Ok(false)
    }
    async fn unregister(&self, _: &str, _: &str, _: &str) -> Result<bool, BackendError> {
        Ok(false)
    }
    async fn prune(
        &self,
        binding: &Binding,
        judged_at_ms: u64,
        _: &str,
    ) -> Result<bool, BackendError> {
        self.pruned
            .lock()
            .unwrap()
            .push((binding.device_token.clone(), judged_at_ms));
        Ok(true)
    }
    async fn erase(&self, _: &str) -> Result<Vec<Binding>, BackendError> {
        Ok(Vec::new())
    }
    async fn feed(
        &self,
        _: Option<&str>,
        _: usize,
    ) -> Result<Vec<crate::bindings::feed::FeedEvent>, BackendError> {
        Ok(Vec::new())
    }
    async fn learn_environment(
        &self,
        _: &str,
        _: &str,
        device_token: &str,
        environment: ApnsEnvironment,
    ) -> Result<bool, BackendError> {
        self.learned
            .lock()
            .unwrap()
            .push((device_token.to_string(), environment));
        Ok(true)
    }
}

/// A queue that reads nothing; `pending` says which consumer holds an entry (for claims of
/// other consumers).
#[derive(Default)]
pub(super) struct NoQueue {
    pub(super) pending: Mutex<HashMap<String, String>>,
}

#[async_trait::async_trait]
impl CallQueue for NoQueue {
    fn consumer(&self) -> &str {
        "test"
    }
    async fn owners(&self, ids: &[&str]) -> Result<Vec<Option<String>>, BackendError> {
        let pending = self.pending.lock().unwrap();
        Ok(ids.iter().map(|id| pending.get(*id).cloned()).collect())
    }
    async fn ensure_group(&self) -> Result<(), BackendError> {
        Ok(())
    }
    async fn read_new(&self, _: usize, _: Duration) -> Result<Vec<StreamEntry>, BackendError> {
        Ok(Vec::new())
    }
    async fn read_own_pending(&self, _: &str, _: usize) -> Result<Vec<StreamEntry>, BackendError> {
        Ok(Vec::new())
    }
    async fn claim_stale(&self, _: Duration, _: usize) -> Result<Vec<StreamEntry>, BackendError> {
        Ok(Vec::new())
    }
    async fn finish(
        &self,
        _: &StreamEntry,
        _: &EventResult,
        _: Option<&DeadLetter>,
    ) -> Result<(), BackendError> {
        Ok(())
    }
    async fn enqueue(&self, _: &[(String, String)]) -> Result<String, BackendError> {
        Ok("0-1".into())
    }
}

/// Answers each device token from its script, then `Delivered`; records every send.
pub(super) struct Scripted {
    platform: Platform,
    pub(super) sid: String,
    cancel: bool,
    /// APNs: the environments the credential pushes to.
    environments: Option<ApnsEnvironments>,
    scripts: Mutex<HashMap<String, VecDeque<Outcome>>>,
    sent: Mutex<Vec<String>>,
    /// Each send's environment, as the push named it.
    environments_sent: Mutex<Vec<Option<ApnsEnvironment>>>,
}

impl Scripted {
    pub(super) fn new(platform: Platform, sid: &str, cancel: bool) -> Self {
        Scripted {
            platform,
            sid: sid.into(),
            cancel,
            environments: None,
            scripts: Mutex::default(),
            sent: Mutex::default(),
            environments_sent: Mutex::default(),
        }
    }
    /// An APNs credential pushing to `environments`.
    pub(super) fn in_environments(mut self, environments: ApnsEnvironments) -> Self {
        self.environments = Some(environments);
        self
    }
    /// The environment each send named, in order.
    pub(super) fn environments_sent(&self) -> Vec<Option<ApnsEnvironment>> {
        self.environments_sent.lock().unwrap().clone()
    }
    pub(super) fn script(self, token: &str, answers: Vec<Outcome>) -> Self {
        self.scripts
            .lock()
            .unwrap()
            .insert(token.into(), answers.into());
        self
    }
    pub(super) fn sent(&self) -> Vec<String> {
        self.sent.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Provider for Scripted {
    fn platform(&self) -> Platform {
        self.platform
    }
    fn credential(&self) -> &str {
        &self.sid
    }
    fn sends_cancel(&self) -> bool {
        self.cancel
    }
    fn environments(&self) -> Option<ApnsEnvironments> {
        self.environments
    }
    async fn send(&self, push: &Push) -> Outcome {
        self.sent
            .lock()
            .unwrap()
            .push(push.device_token.to_string());
        self.environments_sent
            .lock()
            .unwrap()
            .push(push.environment);
        self.scripts
            .lock()
            .unwrap()
            .get_mut(&*push.device_token)
            .and_then(|q| q.pop_front())
            .unwrap_or(Outcome::Delivered)
    }
}

pub(super) fn binding(
    identity: &str,
    platform: Platform,
    credential: &str,
    token: &str,
) -> Binding {
    Binding {
        binding_id: format!("BS{token}"),
        identity: identity.into(),
        platform,
        credential: credential.into(),
        device_token: token.into(),
        target: Default::default(),
        environment: None,
        environment_learned: false,
        created_at_ms: 0,
        updated_at_ms: 0,
        expires_at_ms: u64::MAX,
    }
}

pub(super) fn shared(
    bindings: Vec<Binding>,
    providers: Vec<Arc<Scripted>>,
    max_attempts: u32,
) -> Shared {
    shared_with_store(
        Arc::new(Store {
            bindings,
            ..Store::default()
        }),
        providers,
        max_attempts,
    )
}

pub(super) fn shared_with_store(
    store: Arc<Store>,
    providers: Vec<Arc<Scripted>>,
    max_attempts: u32,
) -> Shared {
    let providers: HashMap<String, Arc<dyn Provider>> = providers
        .into_iter()
        .map(|p| (p.sid.clone(), p as Arc<dyn Provider>))
        .collect();
    let metrics = crate::metrics::Metrics::new(&prometheus::Registry::new(), [])
        .expect("a fresh registry takes every metric");
    Shared {
        store,
        queue: Arc::new(NoQueue::default()),
        consumer: "test".into(),
        instance: "i-test".into(),
        credential_slots: super::slots::CredentialSlots::new(&providers, 16),
        quota: super::quota::QuotaGates::new(&providers),
        providers: Arc::new(super::providers::ProviderSet::new(providers)),
        ledger: Arc::new(MemoryLedger::default()),
        pushes: tokio::sync::Semaphore::new(16),
        retry: RetryPolicy::new(&RetrySettings {
            base_ms: 100,
            max_ms: 2_000,
            max_attempts,
        }),
        limits: super::limits::Limits::default(),
        outage: super::outage::Outage::new(metrics.clone()),
        in_flight: Default::default(),
        hard_stop: CancellationToken::new(),
        metrics,
        batches: None,
    }
}

pub(super) fn entry(fields: &[(&str, &str)]) -> StreamEntry {
    StreamEntry::of(format!("{}-0", now_ms()), fields)
}

pub(super) fn incoming(to: &str) -> StreamEntry {
    entry(&[("type", "incoming"), ("to", to), ("call_sid", "CA1")])
}

pub(super) fn fail(reason: &str) -> Failure {
    Failure::new(reason, format!("test {reason}"))
}

pub(super) fn retry(reason: &str) -> Outcome {
    Outcome::Retry {
        failure: fail(reason),
        retry_after: None,
    }
}

pub(super) async fn final_of(
    shared: &Shared,
    entry: &StreamEntry,
) -> (EventResult, Option<DeadLetter>) {
    match resolve(shared, entry).await {
        // What the finish stage does before it records the outcome.
        Resolution::Final(r, d, settlement) => {
            if let Some(settlement) = &settlement {
                for settled in shared.ledger.settle_many(&[settlement]).await {
                    settled.unwrap();
                }
            }
            (r, d)
        }
        Resolution::LeavePending => panic!("expected a final outcome"),
    }
}
