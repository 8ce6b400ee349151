//! The push ledger: which devices each call already pushed, consulted before sending, so that a
//! crash never silently drops a ring and an accepted push is never sent twice (SPEC §5).
//!
//! Before the fan-out, an event *claims* every target device for its call in one round trip;
//! only devices it claimed are pushed. A claim records its [`Holder`]: the consumer name, a
//! random id of the process (`instance`), the stream entry it was made for, and since when.
//! As soon as a provider accepts a device's push, its claim becomes [`Claim::Sent`] and that
//! device is never pushed again for the call; after a final failure the claim is released so a
//! later attempt (a replayed dead letter) may send. The one device of an event that pushes a
//! single device is marked sent with the event's outcome instead ([`Settlement`], settled by the
//! dispatcher's finish stage for many events at once, before their entries are acknowledged):
//! nothing else of that event happens in between, so the window in which a crash leaves an
//! accepted push unrecorded is the same, one round trip fewer per event.
//!
//! A claim found [`Claim::Held`] by another attempt is either *live* — its holder is still
//! working on its entry, so it is skipped and two daemons never push one device for one call at
//! once — or *stale*: its holder died, or lost the entry to a reclaim, and the push it had in
//! flight counts as not delivered. The dispatcher tells the two apart ([`liveness`]) and takes
//! stale claims over with a compare-and-set ([`ClaimRequest::take_over`]), so of several
//! attempts racing for one stale claim exactly one wins.
//!
//! A device is `(push kind, credential, device token)`, not a binding id: a device deleted and
//! registered again gets a new binding id but is the same phone; `incoming` and `cancel` of one
//! call claim separately, so the cancel still reaches every device the call rang.
//!
//! [`redis::RedisSentLedger`] is the production ledger (its header documents the key);
//! [`memory::MemoryLedger`] serves one process.

mod device;
pub mod memory;
pub mod redis;

use std::sync::Arc;

use crate::backend::BackendError;

pub use device::{device_key, DeviceKey};
pub use memory::MemoryLedger;

/// How long a claim outlives the event's deadline: redeliveries past the deadline end `expired`
/// without sending, and the margin covers clocks of different hosts disagreeing.
pub const CLAIM_MARGIN_MS: u64 = 60_000;

/// Who holds a claim: one attempt of one stream entry, in one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The stream consumer name of the process (`stream.consumer`).
    pub consumer: Arc<str>,
    /// A random id of the process, new at every start: tells a restarted daemon that kept its
    /// consumer name from the one that died.
    pub instance: Arc<str>,
    /// The stream id of the entry the claim was made for.
    pub entry: String,
    /// When the claim was made, ms since the Unix epoch.
    pub since_ms: u64,
}

/// The state word of a claim in flight; the stored value is `sending|since|instance|entry|consumer`
/// (the consumer last, since it is the only part that may contain `|`).
const SENDING: &str = "sending";
/// The stored value of a device a provider accepted, as written before device acks (read
/// still); now [`sent_value`].
const SENT: &str = "sent";

/// The stored value of a device a provider accepted a push of the stream entry `entry` to:
/// `sent|<entry id>`, so a device's ack can be timed from the entry's stream-id time.
pub fn sent_value(entry: &str) -> String {
    format!("{SENT}|{entry}")
}

/// [`sent_value`] in the pieces it is made of, to be written without joining them first.
pub(crate) fn sent_value_parts(entry: &str) -> [&[u8]; 3] {
    [SENT.as_bytes(), b"|", entry.as_bytes()]
}

impl Holder {
    /// [`Holder::encode`] in the pieces it is made of (`since` holds the digits of its time),
    /// to be written without joining them first.
    pub(crate) fn encode_parts<'a>(&'a self, since: &'a mut [u8; 20]) -> [&'a [u8]; 9] {
        [
            SENDING.as_bytes(),
            b"|",
            crate::redis_conn::wire::digits(self.since_ms, since),
            b"|",
            self.instance.as_bytes(),
            b"|",
            self.entry.as_bytes(),
            b"|",
            self.consumer.as_bytes(),
        ]
    }

    /// The stored form of a claim held by `self`.
    pub fn encode(&self) -> String {
        format!(
            "{SENDING}|{}|{}|{}|{}",
            self.since_ms, self.instance, self.entry, self.consumer
        )
    }

    /// A stored claim value read back. `None` for a claim without a holder (written by callpush
    /// before claims recorded one) or one this version cannot read.
    fn decode(stored: &str) -> Option<Holder> {
        let mut parts = stored.splitn(5, '|');
        if parts.next()? != SENDING {
            return None;
        }
        let since_ms = parts.next()?.parse().ok()?;
        let instance = parts.next()?.into();
        let entry = parts.next()?.to_string();
        let consumer = parts.next()?.into();
        Some(Holder {
            consumer,
            instance,
            entry,
            since_ms,
        })
    }
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The device is ours to push now.
    Fresh,
    /// Another attempt claimed it and has not settled: it is pushing, or it died mid-push.
    /// `None`: a claim that records no holder (see [`Holder::decode`]); treated as live.
    Held(Option<Holder>),
    /// A provider accepted a push of this call to this device.
    Sent,
}

impl Claim {
    /// Read a stored value (`fresh` is what the claim script answers for a claim it made).
    fn parse(stored: &str) -> Claim {
        match stored {
            "fresh" => Claim::Fresh,
            SENT => Claim::Sent,
            sent if sent.starts_with("sent|") => Claim::Sent,
            other => Claim::Held(Holder::decode(other)),
        }
    }
}

/// One device to claim.
#[derive(Debug, Clone, Copy)]
pub struct ClaimRequest<'a> {
    /// The device key ([`device_key`]).
    pub device: &'a str,
    /// Take the claim over if it is still held by exactly this (stale) holder; `None` claims
    /// only a free device.
    pub take_over: Option<&'a Holder>,
}

/// The claims of one event, among the claims of many ([`SentLedger::claim_many`]).
#[derive(Debug, Clone, Copy)]
pub struct ClaimCall<'a> {
    /// The call the devices are claimed for.
    pub call_sid: &'a str,
    /// Who claims them.
    pub me: &'a Holder,
    /// The devices.
    pub requests: &'a [ClaimRequest<'a>],
    /// When the call's claims may expire, ms since the Unix epoch.
    pub expire_at_ms: u64,
}

/// How a claimed device ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// The provider accepted the push: remember it until the claim expires.
    Sent,
    /// A final failure (or the push never left): forget the claim, if it is still ours, so a
    /// later attempt may send.
    Release,
}

/// How one attempt's claims of one call end, settled with the event's outcome
/// ([`SentLedger::settle_many`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// The call (shared with the event's call).
    pub call_sid: Arc<str>,
    /// The attempt that made the claims.
    pub me: Holder,
    /// Device keys and how each ended.
    pub devices: Vec<(String, Settle)>,
}

/// Whether the attempt holding a claim still works on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// It does: skip the device.
    Live,
    /// It is gone: its push counts as not delivered; take the claim over.
    Stale,
    /// It depends on whether `entry` is still pending with `consumer` (ask the queue).
    IfPendingWith {
        /// The holder's entry.
        entry: String,
        /// The holder's consumer.
        consumer: String,
    },
}

/// Judge a claim held by `held`, seen by `me` (this attempt), where `mine_in_flight` says
/// whether an entry is being worked on in this process. Pure: the table is unit-tested.
///
/// - a claim made for the entry `me` works on now belongs to an earlier attempt of that entry,
///   which is over (this process holds the entry now, and one process runs an entry once at a
///   time): stale;
/// - a claim of this process: live while its entry is in flight here;
/// - a claim of an earlier process with this consumer name (a restart): stale;
/// - a claim of another consumer: live while its entry is still pending with that consumer; an
///   entry acknowledged, or reclaimed by someone else after `stream.claim_idle_ms`, means the
///   holder is no longer working on it;
/// - a claim that records no holder: live (the old rule: possibly rung, not pushed again).
pub fn liveness(
    me: &Holder,
    held: Option<&Holder>,
    mine_in_flight: impl Fn(&str) -> bool,
) -> Liveness {
    let Some(held) = held else {
        return Liveness::Live;
    };
    if held.entry == me.entry {
        return Liveness::Stale;
    }
    if held.consumer == me.consumer {
        if held.instance != me.instance {
            return Liveness::Stale;
        }
        return if mine_in_flight(&held.entry) {
            Liveness::Live
        } else {
            Liveness::Stale
        };
    }
    Liveness::IfPendingWith {
        entry: held.entry.clone(),
        consumer: held.consumer.to_string(),
    }
}

/// Remembers which devices each call already pushed.
#[async_trait::async_trait]
pub trait SentLedger: Send + Sync + 'static {
    /// Claim each device of `requests` for `call_sid` as `me`, keeping the claims until
    /// `expire_at_ms` (ms since the epoch) at least. Returns one [`Claim`] per request, in
    /// order: [`Claim::Fresh`] for each device `me` holds now.
    async fn claim(
        &self,
        call_sid: &str,
        me: &Holder,
        requests: &[ClaimRequest<'_>],
        expire_at_ms: u64,
    ) -> Result<Vec<Claim>, BackendError>;

    /// [`SentLedger::claim`] for the first claims of many events at once: one answer per call,
    /// in order, each its own. An event whose claims failed may not act on any of them (it is
    /// left pending, or dead-lettered when the failure is permanent); the others go on. The
    /// default claims one call after the other.
    async fn claim_many(&self, calls: &[ClaimCall<'_>]) -> Vec<Result<Vec<Claim>, BackendError>> {
        let mut answers = Vec::with_capacity(calls.len());
        for c in calls {
            answers.push(
                self.claim(c.call_sid, c.me, c.requests, c.expire_at_ms)
                    .await,
            );
        }
        answers
    }

    /// Settle claims `me` made (see [`Settle`]). A release leaves a claim someone else took
    /// over in place.
    async fn settle(
        &self,
        call_sid: &str,
        me: &Holder,
        settled: &[(&str, Settle)],
    ) -> Result<(), BackendError>;

    /// [`SentLedger::settle`] for the claims of many calls at once: one answer per settlement,
    /// in order, each its own. Settling twice is harmless, so what failed is simply repeated.
    /// The default settles one call after the other.
    async fn settle_many(&self, batch: &[&Settlement]) -> Vec<Result<(), BackendError>> {
        let mut answers = Vec::with_capacity(batch.len());
        for s in batch {
            let devices: Vec<(&str, Settle)> = s
                .devices
                .iter()
                .map(|(d, how)| (d.as_str(), *how))
                .collect();
            answers.push(self.settle(&s.call_sid, &s.me, &devices).await);
        }
        answers
    }

    /// A device says a push of `call_sid` woke it (SPEC §11): whether a provider accepted a
    /// push of the call to `device` (a [`device_key`]) and the call is not over, and whether
    /// this is the device's first ack. With `record`, `now_ms` is recorded as the ack's time
    /// (so the next ack is [`Acked::Again`]); without, the ledger is only read.
    async fn ack(
        &self,
        call_sid: &str,
        device: &str,
        now_ms: u64,
        record: bool,
    ) -> Result<Acked, BackendError>;
}

/// What a device's ack found on the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acked {
    /// No push of the call to that device was accepted, or the call is over.
    NotPushed,
    /// The first ack of the device: the stream id of the entry whose push was accepted (`None`
    /// for a push recorded before device acks).
    First(Option<String>),
    /// The device acked the call before.
    Again,
}

impl Acked {
    /// Read the ack script's answer: `no`, `again`, or `first` and the stored sent value.
    fn parse(answer: &[String]) -> Acked {
        match answer {
            [first, sent] if first == "first" => {
                Acked::First(sent.strip_prefix("sent|").map(str::to_string))
            }
            [again] if again == "again" => Acked::Again,
            _ => Acked::NotPushed,
        }
    }
}

#[cfg(test)]
mod tests;
