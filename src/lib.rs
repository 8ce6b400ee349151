//! callpush: a push notification gateway for incoming calls.
//!
//! The path of a call event through the crate:
//!
//! 1. [`ingest`]: the calls stream, read with a consumer group ([`event`] parses entries);
//! 2. [`bindings`]: the callee's identity resolved to its registered devices;
//! 3. [`dispatch`]: the worker pool fans the event out to every device, with retries within the
//!    call's deadline;
//! 4. [`providers`]: the boundary to [`apns`] and [`fcm`], which speak HTTP/2 through
//!    [`transport`] and answer with domain outcomes;
//! 5. [`outcome`]: the event's one result, dead letters, and the stream acknowledgement.
//!
//! Beside the path: [`api`] (the public and admin HTTP listeners), [`dlq`] (dead letters for
//! on-call: list, replay, purge), [`metrics`] (every Prometheus metric, in one module), [`auth`]
//! (access tokens),
//! [`config`] (one typed, layered configuration), [`daemon`] (wiring and
//! lifecycle) and [`cli`] (the `callpush` command line).

pub mod api;
pub mod apns;
pub mod auth;
pub mod backend;
pub mod bindings;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dispatch;
pub mod dlq;
pub mod domain;
pub mod event;
pub mod fcm;
pub mod ingest;
pub mod lifecycle;
pub mod metrics;
pub mod outcome;
pub mod providers;
pub mod redis_conn;
pub mod transport;
