//! Registration bodies → `read_registration_body` (what `POST`/`DELETE /v1/registrations` do
//! after the access token): never panics, every refusal is a 400 of a SPEC §3 code, and an
//! accepted device token is of its platform's shape.
#![no_main]

use callpush::api::read_registration_body;
use callpush::bindings::normalize_device_token;
use callpush::domain::Platform;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match read_registration_body(data) {
        Ok((platform, token)) => {
            // Stored form is a fixed point: normalizing it again changes nothing.
            assert_eq!(
                normalize_device_token(platform, &token).as_deref(),
                Ok(token.as_str())
            );
            match platform {
                Platform::Apns => assert!(token
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))),
                Platform::Fcm => assert!(!token.contains(['{', '}', ' ', '*'])),
            }
        }
        Err(rejection) => {
            assert_eq!(rejection.status, 400);
            assert!(matches!(
                rejection.code,
                "invalid_request" | "invalid_device_token"
            ));
        }
    }
});
