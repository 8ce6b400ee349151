//! Checking the device tokens and Firebase Installation IDs an app registers (SPEC §3), and
//! their one stored form.

use crate::domain::Platform;

/// Check a device token against SPEC §3 and normalise it: APNs tokens are 64 to 200 hex digits,
/// an even number of them (stored lower-case); FCM tokens are 1 to 4096 characters of `[A-Za-z0-9_:.-]`.
pub fn normalize_device_token(platform: Platform, token: &str) -> Result<String, String> {
    match platform {
        Platform::Apns => {
            if !(64..=200).contains(&token.len()) {
                return Err(format!(
                    "an APNs device token is 64 to 200 hex digits; this one has {} characters",
                    token.len()
                ));
            }
            if !token.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err("an APNs device token has only hex digits (0-9, a-f)".into());
            }
            // Two hex digits per byte: an odd count is no token APNs ever handed out.
            if token.len() % 2 != 0 {
                return Err(format!(
                    "an APNs device token has an even number of hex digits; this one has {}",
                    token.len()
                ));
            }
            Ok(token.to_ascii_lowercase())
        }
        Platform::Fcm => {
            if token.is_empty() || token.len() > 4096 {
                return Err(format!(
                    "an FCM registration token is 1 to 4096 characters; this one has {}",
                    token.len()
                ));
            }
            if !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'.' | b'-'))
            {
                return Err(
                    "an FCM registration token has only letters, digits and `_ : . -`".into(),
                );
            }
            Ok(token.to_string())
        }
    }
}

/// How long a Firebase Installation ID is: 22 characters of URL-safe base64 (128 bits after the
/// 4-bit FID header, as the Firebase SDKs generate them).
pub const FID_LEN: usize = 22;

/// Check a Firebase Installation ID as device tokens are checked (SPEC §3): exactly
/// [`FID_LEN`] characters of `[A-Za-z0-9_-]`, kept as given (FIDs are case-sensitive).
pub fn normalize_fid(fid: &str) -> Result<String, String> {
    if fid.len() != FID_LEN {
        return Err(format!(
            "a Firebase Installation ID is {FID_LEN} characters; this one has {}",
            fid.chars().count()
        ));
    }
    if !fid
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    {
        return Err("a Firebase Installation ID has only letters, digits, `_` and `-`".into());
    }
    Ok(fid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apns_tokens_are_hex_and_lower_cased() {
        let upper = "AB".repeat(32);
        assert_eq!(
            normalize_device_token(Platform::Apns, &upper).unwrap(),
            "ab".repeat(32)
        );
        assert!(normalize_device_token(Platform::Apns, &"a".repeat(63)).is_err());
        assert!(normalize_device_token(Platform::Apns, &"a".repeat(65)).is_err());
        assert!(normalize_device_token(Platform::Apns, &"a".repeat(201)).is_err());
        assert!(normalize_device_token(Platform::Apns, &"g".repeat(64)).is_err());
    }

    #[test]
    fn fcm_tokens_have_a_restricted_alphabet() {
        assert!(normalize_device_token(Platform::Fcm, "abc:DEF_1.2-3").is_ok());
        assert!(normalize_device_token(Platform::Fcm, "").is_err());
        assert!(normalize_device_token(Platform::Fcm, "a b").is_err());
        assert!(normalize_device_token(Platform::Fcm, &"a".repeat(4097)).is_err());
    }

    #[test]
    fn fids_are_22_url_safe_characters() {
        assert_eq!(
            normalize_fid("cF3kq9zYRv2X-B8mN1pQ_w").as_deref(),
            Ok("cF3kq9zYRv2X-B8mN1pQ_w")
        );
        assert!(normalize_fid("cF3kq9zYRv2X-B8mN1pQ_").is_err());
        assert!(normalize_fid("cF3kq9zYRv2X-B8mN1pQ_ww").is_err());
        assert!(normalize_fid("cF3kq9zYRv2X:B8mN1pQ_w").is_err());
        assert!(normalize_fid("").is_err());
        assert!(normalize_fid("ééééééééééé").is_err());
    }
}
