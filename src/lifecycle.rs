//! One owner for the daemon's lifecycle: every background task (worker pool, heartbeat,
//! limiter cleanup, metrics sampler, HTTP listeners) is spawned here, watches a child of one
//! shutdown token, and is waited for against one grace deadline.
//!
//! Stopping has two steps. *Shutdown* (SIGTERM, or a listener that failed): tasks stop taking
//! new work and finish what they hold. *Hard stop*, when `shutdown.grace_ms` has passed since
//! shutdown began: tasks drop what they still hold (events stay pending for another consumer)
//! and return. The whole stop takes at most the grace period plus the time tasks need to drop
//! their work, never two grace periods (mini-redis's `shutdown.rs` is the model).

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// The tasks of one daemon and the two signals that stop them.
#[derive(Clone)]
pub struct Lifecycle {
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
    tracker: TaskTracker,
    grace: Duration,
}

impl Lifecycle {
    /// A lifecycle that shuts down when `shutdown` is cancelled and stops hard `grace` later.
    pub fn new(shutdown: CancellationToken, grace: Duration) -> Lifecycle {
        Lifecycle {
            shutdown,
            hard_stop: CancellationToken::new(),
            tracker: TaskTracker::new(),
            grace,
        }
    }

    /// A token cancelled when shutdown begins (a child: cancelling it stops only its holder).
    pub fn stopping(&self) -> CancellationToken {
        self.shutdown.child_token()
    }

    /// Begin shutdown for everyone.
    pub fn shut_down(&self) {
        self.shutdown.cancel();
    }

    /// A token cancelled when the grace period is over.
    pub fn hard_stop(&self) -> CancellationToken {
        self.hard_stop.clone()
    }

    /// Run `task` as one of the daemon's tasks: [`Lifecycle::wait`] waits for it.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(task)
    }

    /// Wait for shutdown to begin, then for every task until the grace deadline; past it, stop
    /// hard and wait for the tasks to drop what they hold.
    pub async fn wait(self) {
        self.shutdown.cancelled().await;
        self.tracker.close();
        let deadline = tokio::time::Instant::now() + self.grace;
        if tokio::time::timeout_at(deadline, self.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                grace = ?self.grace,
                "grace period over; unfinished events stay pending for another consumer"
            );
            self.hard_stop.cancel();
            self.tracker.wait().await;
        }
        info!("callpush stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_grace_period_for_the_whole_stop() {
        let shutdown = CancellationToken::new();
        let life = Lifecycle::new(shutdown.clone(), Duration::from_secs(10));
        // Two tasks that each finish only when stopped hard.
        for _ in 0..2 {
            let hard = life.hard_stop();
            life.spawn(async move { hard.cancelled().await });
        }
        let quick = life.stopping();
        life.spawn(async move { quick.cancelled().await });
        let started = tokio::time::Instant::now();
        shutdown.cancel();
        life.wait().await;
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn no_wait_when_everything_finishes() {
        let shutdown = CancellationToken::new();
        let life = Lifecycle::new(shutdown.clone(), Duration::from_secs(10));
        let stop = life.stopping();
        life.spawn(async move { stop.cancelled().await });
        let started = tokio::time::Instant::now();
        shutdown.cancel();
        life.wait().await;
        assert!(started.elapsed() < Duration::from_millis(1));
    }
}
