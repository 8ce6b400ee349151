//! The key of one device within a call, `<kind>:<credential>:<digest>`: made once per device of
//! every event, so it is built in place, without an allocation, for credential names of
//! ordinary length.

use std::fmt;
use std::ops::Deref;

use sha2::{Digest, Sha256};

use crate::domain::PushKind;

/// Bytes of a key kept in place: room for a credential name of 86 bytes (a Twilio SID is 34).
const IN_PLACE: usize = 128;

/// Hex digits of the token's digest in a key (half of SHA-256: enough to tell devices apart).
const DIGEST_DIGITS: usize = 32;

/// The key of one device within a call: the push kind, the credential and a digest of the
/// device token (the ledger never stores device tokens). Reads as the `&str` it is stored as.
#[derive(Clone)]
pub struct DeviceKey(Text);

#[derive(Clone)]
enum Text {
    /// The usual key, in `bytes[..len]`.
    InPlace { len: u8, bytes: [u8; IN_PLACE] },
    /// A key whose credential name is too long to keep in place.
    Boxed(Box<str>),
}

/// The key of `device_token` under `credential` for pushes of `kind`.
pub fn device_key(kind: PushKind, credential: &str, device_token: &str) -> DeviceKey {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(device_token.as_bytes());
    let mut hex = [0u8; DIGEST_DIGITS];
    for (pair, byte) in hex.chunks_exact_mut(2).zip(&digest[..DIGEST_DIGITS / 2]) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0xf)];
    }
    let pieces = [
        kind.as_str().as_bytes(),
        b":",
        credential.as_bytes(),
        b":",
        &hex,
    ];
    let len: usize = pieces.iter().map(|p| p.len()).sum();
    if len > IN_PLACE {
        let key: String = pieces
            .iter()
            .map(|p| std::str::from_utf8(p).expect("pieces of a key are text"))
            .collect();
        return DeviceKey(Text::Boxed(key.into_boxed_str()));
    }
    let mut bytes = [0u8; IN_PLACE];
    let mut at = 0;
    for piece in pieces {
        bytes[at..at + piece.len()].copy_from_slice(piece);
        at += piece.len();
    }
    DeviceKey(Text::InPlace {
        len: u8::try_from(len).expect("IN_PLACE fits a u8"),
        bytes,
    })
}

impl Deref for DeviceKey {
    type Target = str;

    fn deref(&self) -> &str {
        match &self.0 {
            // Whole pieces of text copied one after the other: always UTF-8.
            Text::InPlace { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).expect("a key is text")
            }
            Text::Boxed(key) => key,
        }
    }
}

impl PartialEq for DeviceKey {
    fn eq(&self, other: &DeviceKey) -> bool {
        **self == **other
    }
}

impl Eq for DeviceKey {}

impl PartialEq<String> for DeviceKey {
    fn eq(&self, other: &String) -> bool {
        **self == **other
    }
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// A device key is a field of the ledger's hash (tests and tools read it back).
impl redis::ToRedisArgs for DeviceKey {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + redis::RedisWrite,
    {
        out.write_arg(self.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key as callpush wrote it before it was built in place.
    fn as_written_before(kind: PushKind, credential: &str, device_token: &str) -> String {
        let digest = Sha256::digest(device_token.as_bytes());
        format!(
            "{}:{credential}:{}",
            kind.as_str(),
            hex::encode(&digest[..16])
        )
    }

    #[test]
    fn keys_in_place_read_as_the_keys_written_before() {
        let long = "C".repeat(86);
        let cases = [
            (PushKind::Incoming, "CR1", "0123456789abcdef"),
            (PushKind::Cancel, "CR1", "0123456789abcdef"),
            (
                PushKind::Incoming,
                "CRf",
                "fcm:registration-token_with-dashes",
            ),
            (PushKind::Incoming, "crédit", "é"),
            (PushKind::Cancel, "", ""),
            (PushKind::Cancel, long.as_str(), "token"),
        ];
        for (kind, credential, token) in cases {
            let key = device_key(kind, credential, token);
            assert!(matches!(key.0, Text::InPlace { .. }), "{key:?}");
            assert_eq!(key, as_written_before(kind, credential, token));
        }
    }

    #[test]
    fn keys_of_long_credentials_read_as_the_keys_written_before() {
        for len in [87, 200, 1000] {
            let credential = "C".repeat(len);
            let key = device_key(PushKind::Incoming, &credential, "token");
            assert!(matches!(key.0, Text::Boxed(_)), "{len}");
            assert_eq!(
                key,
                as_written_before(PushKind::Incoming, &credential, "token")
            );
        }
    }
}
