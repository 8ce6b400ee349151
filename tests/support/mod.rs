//! Test support shared by the integration tests: a real redis-server per test (or a local Redis
//! Cluster, with faults: a node paused, killed, failed over), the APNs and FCM simulators of
//! `callpush_sim` (with Google's OAuth token endpoint) started with the test identity, key
//! fixtures, and HTTP API helpers (independently minted access tokens, `oneshot` and
//! real-socket requests).
#![allow(dead_code)]

/// For each test body `name(backend: world::Backend)`, a module `name` with one test per
/// backend (`name::redis`, `name::memory`); the test file imports `Backend`.
#[allow(unused_macros)]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use super::Backend;

                #[tokio::test]
                async fn redis() {
                    super::$name(Backend::Redis).await
                }

                #[tokio::test]
                async fn memory() {
                    super::$name(Backend::Memory).await
                }
            }
        )*
    };
}

pub mod api;
pub mod apns_double;
pub mod cluster_calls;
pub mod cluster_slots;
pub mod cluster_world;
pub mod config_file;
pub mod daemon;
pub mod dead;
pub mod fcm_double;
pub mod fixtures;
pub mod observed;
pub mod process;
pub mod queue;
pub mod redis_cluster;
pub mod redis_server;
pub mod scrape;
pub mod tally;
pub mod twilio;
pub mod world;
