//! APNs: VoIP (PushKit) pushes to iPhones through Apple's HTTP/2 API, one [`ApnsProvider`] per
//! APNs credential.
//!
//! - [`client`]: the provider — requests, headers, and the shared HTTP/2 pool;
//! - [`token`]: the cached ES256 provider token, re-signed every 40 minutes or when Apple says
//!   it expired;
//! - [`payload`]: the JSON body and the collapse id;
//! - [`classify`]: the one function that turns Apple's answer into an
//!   [`Outcome`](crate::providers::Outcome).

pub(crate) mod classify;
pub mod client;
pub mod payload;
mod token;

use std::path::PathBuf;

pub use classify::wrong_environment;
pub use client::ApnsProvider;

/// A device token no app holds (64 `f` digits): `callpush check` pushes to it to prove a
/// credential without ringing anyone. Apple checks the provider token and the topic
/// first, then answers `400 BadDeviceToken` for this one; the simulators do the same.
pub const PROBE_TOKEN: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

/// Why an APNs provider could not be built from its credential.
#[derive(Debug, thiserror::Error)]
pub enum ApnsError {
    /// The .p8 key file could not be read.
    #[error("credential {sid}: cannot read APNs key file {path}: {source}")]
    KeyFile {
        /// The credential SID.
        sid: String,
        /// The configured `key_file`.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The key file is not a P-256 private key in PKCS#8 PEM (what Apple's .p8 downloads are),
    /// or it cannot sign.
    #[error("credential {sid}: APNs key file {path} (key id {key_id}) is not a usable P-256 .p8 key: {source}")]
    Key {
        /// The credential SID.
        sid: String,
        /// The configured `key_file`.
        path: PathBuf,
        /// The configured `key_id`.
        key_id: String,
        /// What the JWT library said.
        #[source]
        source: jsonwebtoken::errors::Error,
    },
    /// `bundle_id` cannot be sent as the `apns-topic` header.
    #[error("credential {sid}: bundle_id {bundle_id:?} is not a valid APNs topic")]
    Topic {
        /// The credential SID.
        sid: String,
        /// The configured `bundle_id`.
        bundle_id: String,
    },
    /// The endpoint or its CA file is unusable.
    #[error("credential {sid}: {source}")]
    Transport {
        /// The credential SID.
        sid: String,
        /// What the transport said.
        #[source]
        source: crate::transport::TransportError,
    },
}
