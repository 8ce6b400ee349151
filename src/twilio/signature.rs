//! `X-Twilio-Signature`: base64(HMAC-SHA1(auth token, URL + every POST field's name and value,
//! sorted by name, concatenated)), as Twilio's helper libraries compute it. The URL is the
//! configured `twilio.webhook_url` (what Twilio called, not what a proxy forwarded).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::hmac;

use crate::auth::Secret;

/// The string Twilio signs: the URL, then each field's name and value, sorted by name (fields
/// of one name keep their order, as Twilio's libraries sort stably).
pub fn signed_string(url: &str, fields: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = fields.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::with_capacity(
        url.len() + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>(),
    );
    out.push_str(url);
    for (name, value) in sorted {
        out.push_str(name);
        out.push_str(value);
    }
    out
}

/// The signature `token` gives `url` and `fields`.
#[cfg(test)]
pub fn sign(token: &Secret, url: &str, fields: &[(String, String)]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, token.expose());
    STANDARD.encode(hmac::sign(&key, signed_string(url, fields).as_bytes()).as_ref())
}

/// Whether `presented` is the signature of `url` and `fields` under any of `tokens`. Every
/// token is tried (no early exit) and each comparison takes the same time wherever the
/// strings differ, so timing tells nothing about which token or how much of it matched.
pub fn verify(tokens: &[Secret], url: &str, fields: &[(String, String)], presented: &str) -> bool {
    let Ok(presented) = STANDARD.decode(presented.trim()) else {
        return false;
    };
    let message = signed_string(url, fields);
    tokens.iter().fold(false, |matched, token| {
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, token.expose());
        // ring's verify compares in constant time.
        hmac::verify(&key, message.as_bytes(), &presented).is_ok() | matched
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn signed_string_sorts_by_name() {
        let f = fields(&[("b", "2"), ("a", "1"), ("c", "")]);
        assert_eq!(signed_string("https://x/y?q=1", &f), "https://x/y?q=1a1b2c");
    }

    #[test]
    fn sign_and_verify_with_rotation() {
        let old = Secret::new("old-token");
        let new = Secret::new("new-token");
        let f = fields(&[("twi_to", "client:bob")]);
        let sig = sign(&old, "https://h/p", &f);
        assert!(verify(&[new.clone(), old.clone()], "https://h/p", &f, &sig));
        assert!(!verify(&[new], "https://h/p", &f, &sig));
        assert!(!verify(
            std::slice::from_ref(&old),
            "https://h/p2",
            &f,
            &sig
        ));
        assert!(!verify(&[old], "https://h/p", &f, "not base64!"));
    }
}
