//! Stage 3: claim every target device in the push ledger before anything is sent.
//!
//! One round trip claims the free devices (shared with the other events of the moment: the
//! pool's claim stage, [`serve`], claims for many events at once). A device another attempt holds is judged
//! ([`ledger::liveness`]): a live holder keeps it (it is pushing now: never two pushes of one
//! device for one call at once), a stale one — it died, or lost its entry to a reclaim — is
//! taken over in a second round trip, compare-and-set, so its unanswered push is sent again
//! rather than silently dropped. Whether another consumer still holds its entry is asked of the
//! queue (one pipelined round trip), only when such claims turn up.

use std::sync::Arc;

use tokio::sync::oneshot;
use tracing::{debug, info};

use super::super::ledger::{
    self, Claim, ClaimCall, ClaimRequest, Holder, Liveness, CLAIM_MARGIN_MS,
};
use super::super::outage::StoreFailure;
use super::super::Shared;
use super::Target;
use crate::domain::{now_ms, CallContent};
use crate::event::CallEvent;

/// What the claims found.
pub(in crate::dispatch) struct Claimed<'t> {
    /// Who this attempt is in the ledger.
    pub(in crate::dispatch) me: Holder,
    /// The event's targets, and what the claim of each found (in the same order).
    targets: &'t [Target],
    claims: Vec<Claim>,
    /// How many of `claims` are fresh.
    fresh: usize,
    /// Devices an earlier attempt delivered.
    pub(in crate::dispatch) earlier_sent: usize,
}

impl<'t> Claimed<'t> {
    /// The devices this attempt holds now and pushes, in order (read off the claims rather than
    /// listed apart: this runs for every event).
    pub(in crate::dispatch) fn fresh(&self) -> impl Iterator<Item = &'t Target> + '_ {
        self.targets
            .iter()
            .zip(&self.claims)
            .filter(|(_, c)| **c == Claim::Fresh)
            .map(|(t, _)| t)
    }

    /// How many devices this attempt pushes.
    pub(in crate::dispatch) fn fresh_count(&self) -> usize {
        self.fresh
    }

    /// Devices not pushed by this attempt: delivered earlier, or being pushed by a live one.
    pub(in crate::dispatch) fn skipped(&self) -> usize {
        self.targets.len() - self.fresh
    }
}

/// Claim the targets for this attempt of `entry_id`, or say why the ledger or the queue could
/// not be asked (unavailable: the entry stays pending; refused: it is dead-lettered).
pub(super) async fn claim<'t>(
    shared: &Shared,
    event: &CallEvent,
    entry_id: &str,
    targets: &'t Arc<Vec<Target>>,
) -> Result<Claimed<'t>, StoreFailure> {
    let me = Holder {
        consumer: shared.consumer.clone(),
        instance: shared.instance.clone(),
        entry: entry_id.to_string(),
        since_ms: now_ms(),
    };
    let expire_at = event.deadline_ms() + CLAIM_MARGIN_MS;
    let (me, mut claims) = first_claims(shared, event, me, targets, expire_at).await?;

    // Held claims: which of them are stale?
    let held: Vec<(usize, Option<Holder>)> = claims
        .iter()
        .enumerate()
        .filter_map(|(i, c)| match c {
            Claim::Held(h) => Some((i, h.clone())),
            _ => None,
        })
        .collect();
    if !held.is_empty() {
        let stale = stale_claims(shared, &me, held).await?;
        if !stale.is_empty() {
            let takeovers: Vec<ClaimRequest> = stale
                .iter()
                .map(|(i, h)| ClaimRequest {
                    device: &targets[*i].device,
                    take_over: Some(h),
                })
                .collect();
            let taken = ledger_claim(shared, event, &me, &takeovers, expire_at).await?;
            for ((i, h), claim) in stale.iter().zip(taken) {
                if claim == Claim::Fresh {
                    info!(
                        holder = %h.consumer,
                        held_for_ms = now_ms().saturating_sub(h.since_ms),
                        "taking over a device claim whose holder stopped working on it; its push is sent again"
                    );
                }
                claims[*i] = claim;
            }
        }
    }
    let earlier_sent = claims.iter().filter(|c| **c == Claim::Sent).count();
    let fresh = claims.iter().filter(|c| **c == Claim::Fresh).count();
    Ok(Claimed {
        me,
        targets: targets.as_slice(),
        claims,
        fresh,
        earlier_sent,
    })
}

/// One event's first claims, served with others' ([`serve`]). It shares the event's call and
/// targets and lends its holder, which comes back with the answer, so asking copies nothing.
pub(in crate::dispatch) struct ClaimAsk {
    call: Arc<CallContent>,
    me: Holder,
    /// The event's targets, whose device keys are claimed (free devices only).
    targets: Arc<Vec<Target>>,
    expire_at_ms: u64,
    answer: oneshot::Sender<ClaimAnswer>,
}

/// The holder an ask lent, and the claims or why they could not be made (an outage is logged
/// once, by [`serve`]).
type ClaimAnswer = (Holder, Result<Vec<Claim>, StoreFailure>);

/// Make the claims of every event of `batch` in one [`SentLedger::claim_many`] and answer each.
///
/// [`SentLedger::claim_many`]: super::super::ledger::SentLedger::claim_many
pub(in crate::dispatch) async fn serve(shared: &Shared, batch: Vec<ClaimAsk>) {
    // The requests of every event in one list, each event's a slice of it.
    let mut requests = Vec::with_capacity(batch.iter().map(|ask| ask.targets.len()).sum());
    for ask in &batch {
        requests.extend(ask.targets.iter().map(|target| ClaimRequest {
            device: &target.device,
            take_over: None,
        }));
    }
    let mut rest = requests.as_slice();
    let calls: Vec<ClaimCall> = batch
        .iter()
        .map(|ask| {
            let (requests, others) = rest.split_at(ask.targets.len());
            rest = others;
            ClaimCall {
                call_sid: &ask.call.call_sid,
                me: &ask.me,
                requests,
                expire_at_ms: ask.expire_at_ms,
            }
        })
        .collect();
    let answers = shared.ledger.claim_many(&calls).await;
    drop(calls);
    let answers = shared
        .outage
        .judge_all("claim_devices", "claiming devices", answers);
    for (ask, claims) in batch.into_iter().zip(answers) {
        let _ = ask.answer.send((ask.me, claims));
    }
}

/// The first claims of an event (free devices only): through the claim stage when the pool runs
/// one, else served alone here (the unit tests' pools).
async fn first_claims(
    shared: &Shared,
    event: &CallEvent,
    me: Holder,
    targets: &Arc<Vec<Target>>,
    expire_at: u64,
) -> Result<(Holder, Vec<Claim>), StoreFailure> {
    let (answer, got) = oneshot::channel();
    let ask = ClaimAsk {
        call: event.call.clone(),
        me,
        targets: targets.clone(),
        expire_at_ms: expire_at,
        answer,
    };
    match shared.batches.as_ref() {
        Some(stage) => {
            if stage.claims.send(ask).await.is_err() {
                return Err(StoreFailure::Unavailable);
            }
        }
        None => serve(shared, vec![ask]).await,
    }
    match got.await {
        Ok((me, Ok(claims))) => Ok((me, claims)),
        Ok((_, Err(failure))) => {
            debug!("cannot claim devices");
            Err(failure)
        }
        Err(_) => {
            debug!("cannot claim devices");
            Err(StoreFailure::Unavailable)
        }
    }
}

async fn ledger_claim(
    shared: &Shared,
    event: &CallEvent,
    me: &Holder,
    requests: &[ClaimRequest<'_>],
    expire_at: u64,
) -> Result<Vec<Claim>, StoreFailure> {
    let claims = shared
        .ledger
        .claim(event.call_sid(), me, requests, expire_at)
        .await;
    shared
        .outage
        .judge("claim_devices", "taking over device claims", claims)
}

/// The held claims (by index) whose holders stopped working on them.
async fn stale_claims(
    shared: &Shared,
    me: &Holder,
    held: Vec<(usize, Option<Holder>)>,
) -> Result<Vec<(usize, Holder)>, StoreFailure> {
    let in_flight = |id: &str| shared.is_in_flight(id);
    let judged: Vec<(usize, Option<Holder>, Liveness)> = held
        .into_iter()
        .map(|(i, h)| {
            let live = ledger::liveness(me, h.as_ref(), in_flight);
            (i, h, live)
        })
        .collect();
    let ask: Vec<&str> = judged
        .iter()
        .filter_map(|(_, _, l)| match l {
            Liveness::IfPendingWith { entry, .. } => Some(entry.as_str()),
            _ => None,
        })
        .collect();
    let owners = if ask.is_empty() {
        Vec::new()
    } else {
        let owners = shared.queue.owners(&ask).await;
        shared
            .outage
            .judge("claim_devices", "checking who holds device claims", owners)?
    };
    let mut owners = owners.into_iter();
    let mut stale = Vec::new();
    for (i, h, live) in judged {
        let is_stale = match live {
            Liveness::Live => false,
            Liveness::Stale => true,
            Liveness::IfPendingWith { consumer, .. } => {
                owners.next().flatten().as_deref() != Some(consumer.as_str())
            }
        };
        if let (true, Some(h)) = (is_stale, h) {
            stale.push((i, h));
        }
    }
    Ok(stale)
}
