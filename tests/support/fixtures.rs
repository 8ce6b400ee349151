//! Test data every suite shares: the key and certificate files of `tests/fixtures/` and device
//! tokens of the right shape.

use std::path::PathBuf;

/// A file of `tests/fixtures/` (see its README for what each is).
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A valid APNs device token (64 hex digits) that differs from the others in its first
/// characters too, so masked tokens in logs and listings tell devices apart: `n` as two hex
/// digits, 32 times.
pub fn apns_token(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

/// A valid APNs device token for any number of devices: `n` in 64 hex digits.
pub fn numbered_apns_token(n: u64) -> String {
    format!("{n:064x}")
}
