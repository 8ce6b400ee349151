//! Coalescing: a stage that serves many events' requests in one round trip.
//!
//! Event tasks hand their request (with a channel for the answer) to the stage's task, which
//! takes every request that is waiting, up to a read batch, and serves them together. Several
//! batches may be in flight at once (`in_flight`): while one round trip is out, the requests
//! that arrive meanwhile gather into the next, so a burst travels in a few large batches and a
//! lone event at a quiet time goes at once, alone (nothing waits for a batch to fill).
//!
//! On a Redis Cluster (`split`) every request is served on its own, at once: the keys of a
//! batch live on different nodes, and a batch that waited for its slowest node would hold every
//! event in it — and, with its in-flight slot, the stage — while one node hangs. The cluster
//! connection still shares the round trips: the commands bound for one node go out together on
//! that node's connection (redis-rs pipelines a multiplexed connection's queued commands).

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Batches of the stage at most in flight at once.
pub(super) const IN_FLIGHT: usize = 4;

/// Serve `requests` in batches of at most `max`, at most `in_flight` batches at once — or, with
/// `split`, each request alone and at once (module docs) — until `stop` (every event task has
/// ended, so no request waits) or every sender is gone; then wait for the work in flight.
/// `serve` answers every request of its batch.
pub(super) async fn run<R, F, Fut>(
    mut requests: mpsc::Receiver<R>,
    max: usize,
    in_flight: usize,
    split: bool,
    stop: CancellationToken,
    serve: F,
) where
    R: Send + 'static,
    F: Fn(Vec<R>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(in_flight.max(1)));
    let mut running = JoinSet::new();
    loop {
        // Split requests take no slot: each event task has at most one request out at a time,
        // so the senders bound them.
        let slot = match split {
            true => None,
            false => Some(
                slots
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the batch semaphore is never closed"),
            ),
        };
        let first = tokio::select! {
            request = requests.recv() => request,
            _ = stop.cancelled() => None,
        };
        let Some(first) = first else {
            break;
        };
        let mut batch = Vec::with_capacity(if split {
            1
        } else {
            max.min(requests.len() + 1)
        });
        batch.push(first);
        while !split && batch.len() < max {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let work = serve(batch);
        running.spawn(async move {
            work.await;
            drop(slot);
        });
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::oneshot;

    #[tokio::test]
    async fn waiting_requests_go_together_and_every_one_is_answered() {
        let (tx, rx) = mpsc::channel::<(u32, oneshot::Sender<u32>)>(64);
        let batches = Arc::new(AtomicUsize::new(0));
        let mut answers = Vec::new();
        // Queued before the stage starts: they are all waiting when it takes its first batch.
        for i in 0..10 {
            let (answer, got) = oneshot::channel();
            tx.send((i, answer)).await.unwrap();
            answers.push(got);
        }
        let stop = CancellationToken::new();
        let counted = batches.clone();
        let stage = tokio::spawn(run(rx, 4, 2, false, stop.clone(), move |batch| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                for (i, answer) in batch {
                    let _ = answer.send(i * 2);
                }
            }
        }));
        for (i, got) in answers.into_iter().enumerate() {
            assert_eq!(got.await.unwrap(), i as u32 * 2);
        }
        // 10 requests waiting, 4 per batch: 3 batches, not 10 round trips.
        assert_eq!(batches.load(Ordering::SeqCst), 3);
        stop.cancel();
        stage.await.unwrap();
    }

    #[tokio::test]
    async fn a_slow_batch_does_not_hold_up_the_next() {
        let (tx, rx) = mpsc::channel::<(bool, oneshot::Sender<()>)>(8);
        let stop = CancellationToken::new();
        let (release, hold) = tokio::sync::watch::channel(false);
        let stage = tokio::spawn(run(rx, 1, 2, false, stop.clone(), move |batch| {
            let mut hold = hold.clone();
            async move {
                for (slow, answer) in batch {
                    if slow {
                        let _ = hold.wait_for(|go| *go).await;
                    }
                    let _ = answer.send(());
                }
            }
        }));
        let (slow_answer, slow_got) = oneshot::channel();
        tx.send((true, slow_answer)).await.unwrap();
        let (fast_answer, fast_got) = oneshot::channel();
        tx.send((false, fast_answer)).await.unwrap();
        // The second batch is answered while the first is still out.
        fast_got.await.unwrap();
        release.send(true).unwrap();
        slow_got.await.unwrap();
        stop.cancel();
        stage.await.unwrap();
    }

    #[tokio::test]
    async fn split_serves_each_request_alone_and_a_hung_one_holds_no_other() {
        let (tx, rx) = mpsc::channel::<(bool, oneshot::Sender<usize>)>(8);
        let stop = CancellationToken::new();
        let (release, hold) = tokio::sync::watch::channel(false);
        // One batch in flight at most: without split, the hung request would hold the stage.
        let stage = tokio::spawn(run(rx, 8, 1, true, stop.clone(), move |batch| {
            let mut hold = hold.clone();
            async move {
                let size = batch.len();
                for (hung, answer) in batch {
                    if hung {
                        let _ = hold.wait_for(|go| *go).await;
                    }
                    let _ = answer.send(size);
                }
            }
        }));
        let (hung_answer, hung_got) = oneshot::channel();
        tx.send((true, hung_answer)).await.unwrap();
        let mut others = Vec::new();
        for _ in 0..3 {
            let (answer, got) = oneshot::channel();
            tx.send((false, answer)).await.unwrap();
            others.push(got);
        }
        for got in others {
            assert_eq!(got.await.unwrap(), 1, "served alone");
        }
        release.send(true).unwrap();
        assert_eq!(hung_got.await.unwrap(), 1);
        stop.cancel();
        stage.await.unwrap();
    }
}
