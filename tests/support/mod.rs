//! Test support shared by the integration tests: a real redis-server per test, HTTP/2 test
//! doubles of APNs and FCM (with Google's OAuth token endpoint), and key fixtures.
#![allow(dead_code)]

pub mod apns_double;
pub mod daemon;
pub mod fcm_double;
pub mod process;
pub mod redis_server;
pub mod tally;
pub mod world;
