//! Unit tests of event resolution with in-memory stand-ins for Redis and scripted providers.
//! (The integration tests in `tests/` run the same paths against real Redis and HTTP/2 doubles.)

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::dedup::MemoryLedger;
use super::event::{resolve, Resolution};
use super::retry::RetryPolicy;
use super::Shared;
use crate::bindings::{Binding, BindingStore, NewBinding, Registered, StoreError};
use crate::config::RetrySettings;
use crate::event::StreamEntry;
use crate::ingest::{CallQueue, QueueError};
use crate::outcome::{DeadLetter, DeadReason, EventOutcome, EventResult};
use crate::providers::{now_ms, Failure, Outcome, Platform, Provider, Push};

#[derive(Default)]
pub(super) struct Store {
    pub(super) bindings: Vec<Binding>,
    pub(super) pruned: Mutex<Vec<(String, u64)>>,
}

#[async_trait::async_trait]
impl BindingStore for Store {
    async fn register(&self, _: NewBinding, _: u64) -> Result<Registered, StoreError> {
        unreachable!("resolution never registers")
    }
    async fn list(&self, identity: &str) -> Result<Vec<Binding>, StoreError> {
        Ok(self
            .bindings
            .iter()
            .filter(|b| b.identity == identity)
            .cloned()
            .collect())
    }
    async fn delete(&self, _: &str, _: &str) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn unregister(&self, _: &str, _: &str, _: &str) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn prune(&self, binding: &Binding, judged_at_ms: u64) -> Result<bool, StoreError> {
        self.pruned
            .lock()
            .unwrap()
            .push((binding.device_token.clone(), judged_at_ms));
        Ok(true)
    }
}

pub(super) struct NoQueue;

#[async_trait::async_trait]
impl CallQueue for NoQueue {
    async fn ensure_group(&self) -> Result<(), QueueError> {
        Ok(())
    }
    async fn read_new(&self, _: usize, _: Duration) -> Result<Vec<StreamEntry>, QueueError> {
        Ok(Vec::new())
    }
    async fn read_own_pending(&self, _: usize) -> Result<Vec<StreamEntry>, QueueError> {
        Ok(Vec::new())
    }
    async fn claim_stale(&self, _: Duration, _: usize) -> Result<Vec<StreamEntry>, QueueError> {
        Ok(Vec::new())
    }
    async fn finish(
        &self,
        _: &StreamEntry,
        _: &EventResult,
        _: Option<&DeadLetter>,
    ) -> Result<(), QueueError> {
        Ok(())
    }
    async fn enqueue(&self, _: &[(String, String)]) -> Result<String, QueueError> {
        Ok("0-1".into())
    }
}

/// Answers each device token from its script, then `Delivered`; records every send.
pub(super) struct Scripted {
    platform: Platform,
    pub(super) sid: String,
    cancel: bool,
    scripts: Mutex<HashMap<String, VecDeque<Outcome>>>,
    sent: Mutex<Vec<String>>,
}

impl Scripted {
    pub(super) fn new(platform: Platform, sid: &str, cancel: bool) -> Self {
        Scripted {
            platform,
            sid: sid.into(),
            cancel,
            scripts: Mutex::default(),
            sent: Mutex::default(),
        }
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
    async fn send(&self, push: &Push) -> Outcome {
        self.sent
            .lock()
            .unwrap()
            .push(push.device_token.to_string());
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
    Shared {
        store,
        queue: Arc::new(NoQueue),
        credential_slots: super::credential_slots(&providers, 16),
        providers,
        ledger: Arc::new(MemoryLedger::default()),
        pushes: tokio::sync::Semaphore::new(16),
        retry: RetryPolicy::new(&RetrySettings {
            base_ms: 100,
            max_ms: 2_000,
            max_attempts,
        }),
        limits: super::limits::Limits::default(),
        outage: super::outage::Outage::default(),
        in_flight: Default::default(),
        hard_stop: CancellationToken::new(),
    }
}

pub(super) fn entry(fields: &[(&str, &str)]) -> StreamEntry {
    StreamEntry {
        id: format!("{}-0", now_ms()),
        fields: fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
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
        Resolution::Final(r, d) => (r, d),
        Resolution::LeavePending => panic!("expected a final outcome"),
    }
}

#[tokio::test(start_paused = true)]
async fn one_good_device_is_enough_for_delivered() {
    let apns = Arc::new(
        Scripted::new(Platform::Apns, "CRa", false)
            .script("t1", vec![Outcome::Rejected(fail("BadTopic"))]),
    );
    let fcm = Arc::new(Scripted::new(Platform::Fcm, "CRf", true));
    let s = shared(
        vec![
            binding("alice", Platform::Apns, "CRa", "t1"),
            binding("alice", Platform::Fcm, "CRf", "t2"),
            binding("bob", Platform::Fcm, "CRf", "t3"),
        ],
        vec![apns, fcm.clone()],
        3,
    );
    let (result, dead) = final_of(&s, &incoming("alice")).await;
    assert_eq!(result.outcome, EventOutcome::Delivered);
    assert_eq!((result.devices, result.delivered), (2, 1));
    assert!(dead.is_none());
    assert_eq!(fcm.sent(), vec!["t2"]);
}

#[tokio::test(start_paused = true)]
async fn retries_then_delivers() {
    let fcm = Arc::new(
        Scripted::new(Platform::Fcm, "CRf", true)
            .script("t1", vec![retry("UNAVAILABLE"), retry("UNAVAILABLE")]),
    );
    let s = shared(
        vec![binding("alice", Platform::Fcm, "CRf", "t1")],
        vec![fcm.clone()],
        3,
    );
    let (result, _) = final_of(&s, &incoming("alice")).await;
    assert_eq!(result.outcome, EventOutcome::Delivered);
    assert_eq!(fcm.sent().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn attempts_are_bounded() {
    let fcm = Arc::new(
        Scripted::new(Platform::Fcm, "CRf", true).script("t1", vec![retry("INTERNAL"); 10]),
    );
    let s = shared(
        vec![binding("alice", Platform::Fcm, "CRf", "t1")],
        vec![fcm.clone()],
        4,
    );
    let (result, dead) = final_of(&s, &incoming("alice")).await;
    assert_eq!(result.outcome, EventOutcome::DeadLettered);
    let dead = dead.unwrap();
    assert_eq!(dead.reason, DeadReason::RetriesExhausted);
    assert_eq!(dead.attempts, 4);
    assert!(dead.detail.contains("test INTERNAL"), "{}", dead.detail);
    assert_eq!(fcm.sent().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_past_the_deadline_expires_the_event() {
    let fcm = Arc::new(Scripted::new(Platform::Fcm, "CRf", true).script(
        "t1",
        vec![Outcome::Retry {
            failure: fail("QUOTA_EXCEEDED"),
            retry_after: Some(Duration::from_secs(60)),
        }],
    ));
    let s = shared(
        vec![binding("alice", Platform::Fcm, "CRf", "t1")],
        vec![fcm.clone()],
        6,
    );
    let (result, dead) = final_of(&s, &incoming("alice")).await;
    assert_eq!(result.outcome, EventOutcome::Expired);
    assert_eq!(dead.unwrap().reason, DeadReason::Expired);
    assert_eq!(fcm.sent().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn dead_tokens_are_pruned_and_leave_no_bindings() {
    let fcm = Arc::new(Scripted::new(Platform::Fcm, "CRf", true).script(
        "t1",
        vec![Outcome::InvalidToken {
            failure: fail("UNREGISTERED"),
            judged_at_ms: 1234,
        }],
    ));
    let store = Arc::new(Store {
        bindings: vec![binding("alice", Platform::Fcm, "CRf", "t1")],
        ..Store::default()
    });
    let s = shared_with_store(store.clone(), vec![fcm], 6);
    let (result, dead) = final_of(&s, &incoming("alice")).await;
    assert_eq!(result.outcome, EventOutcome::NoBindings);
    assert_eq!(result.devices, 1);
    assert!(dead.is_none());
    assert_eq!(
        *store.pruned.lock().unwrap(),
        vec![("t1".to_string(), 1234)],
        "pruned with the provider's judgement time"
    );
}

#[tokio::test(start_paused = true)]
async fn rejection_is_dead_lettered_with_the_provider_reason() {
    let apns = Arc::new(
        Scripted::new(Platform::Apns, "CRa", false)
            .script("t1", vec![Outcome::Rejected(fail("TopicDisallowed"))]),
    );
    let s = shared(
        vec![binding("alice", Platform::Apns, "CRa", "t1")],
        vec![apns.clone()],
        6,
    );
    let (result, dead) = final_of(&s, &incoming("alice")).await;
    assert_eq!(result.outcome, EventOutcome::DeadLettered);
    let dead = dead.unwrap();
    assert_eq!(dead.reason, DeadReason::ProviderRejected);
    assert!(
        dead.detail.contains("test TopicDisallowed"),
        "{}",
        dead.detail
    );
    assert!(dead.detail.contains("apns CRa"), "{}", dead.detail);
    assert_eq!(apns.sent().len(), 1, "a rejection is not retried");
}

#[tokio::test(start_paused = true)]
async fn cancel_skips_apns_unless_send_cancel() {
    let quiet = Arc::new(Scripted::new(Platform::Apns, "CRa", false));
    let loud = Arc::new(Scripted::new(Platform::Apns, "CRb", true));
    let fcm = Arc::new(Scripted::new(Platform::Fcm, "CRf", true));
    let s = shared(
        vec![
            binding("alice", Platform::Apns, "CRa", "t1"),
            binding("alice", Platform::Apns, "CRb", "t2"),
            binding("alice", Platform::Fcm, "CRf", "t3"),
        ],
        vec![quiet.clone(), loud.clone(), fcm.clone()],
        6,
    );
    let cancel = entry(&[("type", "cancel"), ("to", "alice"), ("call_sid", "CA1")]);
    let (result, _) = final_of(&s, &cancel).await;
    assert_eq!((result.devices, result.delivered), (2, 2));
    assert!(quiet.sent().is_empty());
    assert_eq!(loud.sent(), vec!["t2"]);
    assert_eq!(fcm.sent(), vec!["t3"]);
}

#[tokio::test(start_paused = true)]
async fn credential_field_restricts_the_fan_out() {
    let a = Arc::new(Scripted::new(Platform::Fcm, "CRa", true));
    let b = Arc::new(Scripted::new(Platform::Fcm, "CRb", true));
    let s = shared(
        vec![
            binding("alice", Platform::Fcm, "CRa", "t1"),
            binding("alice", Platform::Fcm, "CRb", "t2"),
        ],
        vec![a.clone(), b.clone()],
        6,
    );
    let e = entry(&[
        ("type", "incoming"),
        ("to", "alice"),
        ("call_sid", "CA1"),
        ("credential", "CRb"),
    ]);
    let (result, _) = final_of(&s, &e).await;
    assert_eq!(result.devices, 1);
    assert!(a.sent().is_empty());
    assert_eq!(b.sent(), vec!["t2"]);
}

#[tokio::test(start_paused = true)]
async fn malformed_and_expired_entries_end_at_once() {
    let s = shared(Vec::new(), Vec::new(), 6);
    let (result, dead) = final_of(&s, &entry(&[("type", "incoming"), ("call_sid", "CA1")])).await;
    assert_eq!(result.outcome, EventOutcome::Malformed);
    let dead = dead.unwrap();
    assert_eq!(dead.reason, DeadReason::Malformed);
    assert!(dead.detail.contains("`to`"), "{}", dead.detail);

    let old = StreamEntry {
        id: "1000-0".into(),
        fields: incoming("alice").fields,
    };
    let (result, dead) = final_of(&s, &old).await;
    assert_eq!(result.outcome, EventOutcome::Expired);
    assert_eq!(dead.unwrap().reason, DeadReason::Expired);

    let (result, dead) = final_of(&s, &incoming("nobody")).await;
    assert_eq!(result.outcome, EventOutcome::NoBindings);
    assert!(dead.is_none());
}
