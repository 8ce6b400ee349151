//! Access tokens → `Auth::verify`: never panics, every refusal is a 401/403 of a SPEC §3 code,
//! and an accepted token carries a usable identity.
//!
//! The first byte picks the mode: 0 — the rest is the token as sent; 1 — the rest is the claims
//! JSON, signed with the configured key under a fixed HS256 header (so the fuzzer gets past the
//! signature to the claim rules); 2 — the rest is header and claims split at the first 0xFF,
//! both signed.
#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use callpush::auth::Auth;
use callpush::config::Settings;
use callpush::event::check_identity;
use libfuzzer_sys::fuzz_target;
use ring::hmac;

const SECRET: &str = "fuzz-api-key-secret";
const NOW: u64 = 1_700_000_000;

fn auth() -> &'static Auth {
    static AUTH: OnceLock<Auth> = OnceLock::new();
    AUTH.get_or_init(|| {
        let file = std::env::temp_dir().join(format!("callpush-fuzz-{}.secret", std::process::id()));
        std::fs::write(&file, SECRET).unwrap();
        let toml = format!(
            "[auth]\naccount_sid = \"AC1\"\n[[auth.api_keys]]\nsid = \"SK1\"\nsecret_file = \"{}\"\n",
            file.display()
        );
        let settings = Settings::from_toml_with_env(&toml, Vec::new()).unwrap();
        let auth = Auth::from_settings(&settings).unwrap();
        let _ = std::fs::remove_file(&file);
        auth
    })
}

fn signed(header: &[u8], claims: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes()),
        input.as_bytes(),
    );
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let token = match mode % 3 {
        0 => String::from_utf8_lossy(rest).into_owned(),
        1 => signed(br#"{"alg":"HS256","typ":"JWT"}"#, rest),
        _ => {
            let at = rest.iter().position(|b| *b == 0xFF).unwrap_or(rest.len());
            signed(&rest[..at], rest.get(at + 1..).unwrap_or_default())
        }
    };
    match auth().verify(&token, NOW) {
        Ok(verified) => {
            assert!(check_identity(&verified.identity).is_ok());
            assert_eq!(verified.api_key_sid, "SK1");
        }
        Err(e) => {
            assert!(matches!(e.status(), 401 | 403));
            assert!(matches!(
                e.code(),
                "invalid_token" | "token_expired" | "grant_missing"
            ));
        }
    }
});
