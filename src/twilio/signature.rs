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

/// The URL forms Twilio's helper libraries accept for one webhook URL: as given, without its
/// port, and with the scheme's default port when it has none (Twilio signs the URL as it was
/// configured in the console, which may or may not spell out `:443`).
pub fn url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_string()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return out;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    // A port is digits after the last `:` that is not inside an IPv6 literal's brackets.
    let host_end = authority
        .rfind(':')
        .filter(|&i| i > authority.rfind(']').unwrap_or(0))
        .filter(|&i| authority[i + 1..].bytes().all(|b| b.is_ascii_digit()));
    match host_end {
        Some(i) => out.push(format!("{scheme}://{}{tail}", &authority[..i])),
        None => {
            let port = match scheme.to_ascii_lowercase().as_str() {
                "https" => "443",
                "http" => "80",
                _ => return out,
            };
            out.push(format!("{scheme}://{authority}:{port}{tail}"));
        }
    }
    out
}

/// Whether `presented` is the signature of `url` (in any of its [`url_variants`]) and
/// `fields` under any of `tokens`. Every token and variant is tried (no early exit) and each
/// comparison takes the same time wherever the strings differ, so timing tells nothing about
/// which token matched or how much of a signature was right.
pub fn verify(tokens: &[Secret], url: &str, fields: &[(String, String)], presented: &str) -> bool {
    let Ok(presented) = STANDARD.decode(presented.trim()) else {
        return false;
    };
    let messages: Vec<String> = url_variants(url)
        .iter()
        .map(|u| signed_string(u, fields))
        .collect();
    let mut matched = false;
    for token in tokens {
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, token.expose());
        for message in &messages {
            // ring's verify compares in constant time.
            matched |= hmac::verify(&key, message.as_bytes(), &presented).is_ok();
        }
    }
    matched
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
    fn url_variants_add_or_drop_the_port() {
        assert_eq!(
            url_variants("https://h.example/p?q=1"),
            ["https://h.example/p?q=1", "https://h.example:443/p?q=1"]
        );
        assert_eq!(
            url_variants("https://h.example:8443/p"),
            ["https://h.example:8443/p", "https://h.example/p"]
        );
        assert_eq!(url_variants("http://h"), ["http://h", "http://h:80"]);
        assert_eq!(
            url_variants("http://[::1]/p"),
            ["http://[::1]/p", "http://[::1]:80/p"]
        );
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
