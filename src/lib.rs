//! callpush: a push notification gateway for incoming calls.
//!
//! The binary (`src/main.rs`) parses the command line and calls [`cli`]; the daemon's tests call
//! the same [`daemon::run`] the binary does, with listeners bound on port 0.
//!
//! # Layout
//!
//! The path of a call event through the crate, top to bottom:
//!
//! 1. `ingest`: the calls stream, read with a consumer group; `event` parses entries;
//! 2. `bindings`: the callee's identity resolved to its registered devices;
//! 3. `dispatch`: the worker pool takes each event through its stages (targets → claim →
//!    fan-out → settle/prune → decide), with retries within the call's deadline and the push
//!    ledger that keeps a crash from dropping or doubling a ring;
//! 4. `providers`: the boundary to `apns` and `fcm`, which speak HTTP/2 through `transport`
//!    and answer with domain outcomes, never HTTP;
//! 5. `outcome`: the event's one result, its dead letter, and the stream acknowledgement.
//!
//! Beside the path: `api` (the public and admin HTTP listeners), `dlq` (dead letters for
//! on-call: list, show, replay, purge), `memory` (the in-memory backend behind the same traits
//! as Redis, not durable), `dev` (`callpush dev`: the whole gateway locally with one command, on
//! the simulated APNs and FCM of the `callpush-sim` crate), `twilio` (the Twilio Voice webhook),
//! `metrics` (every Prometheus metric, in one module), `auth` (access tokens and the admin
//! token), `config` (one typed, layered configuration), `reload` (SIGHUP and the admin reload),
//! `lifecycle` (one owner of tasks and of the grace deadline), `daemon` (wiring) and `cli`. At
//! the bottom, importing nothing of callpush's: `domain` (platform, push kind, call content,
//! push, time helpers, token masking), `log_throttle` (one log line per key and period),
//! `secret` (the redacting `Secret` every secret lives in, and the start-up check of secret
//! files' permissions), `backend` (the one "store failed" error) and `strict_json` (JSON without
//! duplicate keys, for tokens, `params` and bodies).
//!
//! The rest of the workspace: `crates/sim` (`callpush-sim`, the simulators, which depend on
//! nothing of callpush's) and `crates/bench` (`callpush-bench`, the load benchmark, which drives
//! this library and the `callpush` binary).
//!
//! Imports point down: a stage never imports the stage after it. The modules public here are
//! the ones the binary, the benchmark, the examples, the tests and the fuzz targets use; the
//! rest (`transport`, `metrics`, `lifecycle`, `dlq`, `twilio`, `reload`, `secret`,
//! `strict_json`, …) are private to the crate, so the compiler keeps those boundaries.

pub mod api;
pub mod apns;
pub mod auth;
pub(crate) mod backend;
pub mod bindings;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dev;
pub mod dispatch;
pub(crate) mod dlq;
pub mod domain;
pub mod event;
pub mod fcm;
pub mod ingest;
pub(crate) mod lifecycle;
pub(crate) mod log_throttle;
pub mod memory;
pub(crate) mod metrics;
pub mod outcome;
pub mod providers;
pub mod redis_conn;
pub(crate) mod reload;
pub(crate) mod secret;
pub(crate) mod strict_json;
pub(crate) mod transport;
pub(crate) mod twilio;

pub use backend::{BackendError, Fate};
pub use metrics::Metrics;
pub use transport::TransportError;
