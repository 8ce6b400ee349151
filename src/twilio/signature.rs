//! `X-Twilio-Signature` (SPEC §10), checked the way Twilio's helper libraries check it
//! (twilio-python `RequestValidator.validate`, twilio-node `validateRequest` and
//! `validateRequestWithBody`), so a request the libraries accept is accepted here and one they
//! refuse is refused — `tests/fixtures/twilio-webhook-vectors.json` holds requests signed and
//! judged by the real library.
//!
//! The signature is base64(HMAC(secret, message)), where the message is the URL Twilio called,
//! query string included, followed for a form body by every field's name and value sorted by
//! name (values of one name sorted too), and for a JSON body by nothing: Twilio puts
//! `bodySHA256=<hex SHA-256 of the body bytes>` in the URL's query instead, and the body must
//! hash to it. The URL is accepted with and without the scheme's default port.
//!
//! The secret and the HMAC: without `X-Twilio-Webhooks-Signature-Settings`, an account auth
//! token and HMAC-SHA1; with it (`key=<SharedKey id>,algorithm=HMAC_SHA256|HMAC_SHA1`), a
//! Webhooks SharedKey's secret and the algorithm the header names. Every configured secret of
//! the kind is tried (rotation), each comparison in constant time.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use percent_encoding::percent_decode;
use ring::hmac;
use sha2::{Digest, Sha256};

use crate::secret::Secret;

/// The header naming a SharedKey and its algorithm.
pub const SETTINGS_HEADER: &str = "x-twilio-webhooks-signature-settings";

/// The query parameter that carries a JSON body's hash.
pub const BODY_HASH_PARAM: &str = "bodySHA256";

/// The HMACs Twilio signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC-SHA1: auth tokens always, SharedKeys when the settings header says `HMAC_SHA1`.
    HmacSha1,
    /// HMAC-SHA256: SharedKeys when the settings header says `HMAC_SHA256`.
    HmacSha256,
}

impl Algorithm {
    fn ring(self) -> hmac::Algorithm {
        match self {
            Algorithm::HmacSha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Algorithm::HmacSha256 => hmac::HMAC_SHA256,
        }
    }
}

/// Every secret the webhook accepts, by kind.
#[derive(Debug, Default)]
pub struct Secrets {
    /// The account's auth tokens (`twilio.auth_token_file`), several during a rotation.
    pub auth_tokens: Vec<Secret>,
    /// Webhooks SharedKey secrets (`twilio.shared_key_file`), several during a rotation.
    pub shared_keys: Vec<Secret>,
}

impl Secrets {
    /// Whether no secret at all is configured (the webhook is off).
    pub fn is_empty(&self) -> bool {
        self.auth_tokens.is_empty() && self.shared_keys.is_empty()
    }
}

/// What the signature covers besides the URL.
#[derive(Debug, Clone, Copy)]
pub enum Body<'a> {
    /// A JSON body, as received: its hash must be the URL's `bodySHA256`.
    Json(&'a [u8]),
    /// A form body's fields, decoded, in any order.
    Form(&'a [(String, String)]),
}

/// A webhook request as far as its signature is concerned.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    /// The URL Twilio called, with its query ([`called_url`]).
    pub url: &'a str,
    /// The body.
    pub body: Body<'a>,
    /// `X-Twilio-Signature`, when present.
    pub signature: Option<&'a str>,
    /// `X-Twilio-Webhooks-Signature-Settings`, when present.
    pub settings: Option<&'a str>,
}

/// Why a request's signature is refused (every one answers 403).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No `X-Twilio-Signature`.
    #[error("the request has no X-Twilio-Signature header")]
    Missing,
    /// The settings header names no algorithm callpush knows.
    #[error(
        "X-Twilio-Webhooks-Signature-Settings names no known algorithm (HMAC_SHA256, HMAC_SHA1)"
    )]
    UnknownAlgorithm,
    /// Signed with a SharedKey, and none is configured.
    #[error(
        "the request is signed with a Webhooks SharedKey and twilio.shared_key_file is not set"
    )]
    NoSharedKey,
    /// Signed with an auth token, and none is configured.
    #[error("the request is signed with an auth token and twilio.auth_token_file is not set")]
    NoAuthToken,
    /// A JSON body without `bodySHA256` in the URL: nothing covers the body.
    #[error("the URL's query has no bodySHA256 for the JSON body")]
    NoBodyHash,
    /// The body does not hash to the URL's `bodySHA256`.
    #[error("the body does not hash to the URL's bodySHA256")]
    BodyHash,
    /// No secret gives this signature.
    #[error("X-Twilio-Signature does not match the request under any configured secret")]
    Mismatch,
}

/// The URL Twilio called: the configured `twilio.webhook_url` (what Twilio was told, which a
/// proxy in front of callpush may not preserve) with the query of the request as received,
/// which is where Twilio puts `bodySHA256`. A request without a query keeps the configured URL
/// as it is.
pub fn called_url(configured: &str, query: Option<&str>) -> String {
    match query {
        Some(query) if !query.is_empty() => {
            let base = configured.split(['?', '#']).next().unwrap_or(configured);
            format!("{base}?{query}")
        }
        _ => configured.to_string(),
    }
}

/// The string Twilio signs for a form: the URL, then each field's name and value, sorted by
/// name and then by value, as twilio-python sorts them.
pub fn signed_string(url: &str, fields: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = fields.iter().collect();
    sorted.sort();
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

/// The algorithm `X-Twilio-Webhooks-Signature-Settings` names: comma-separated `name=value`
/// pairs, of which `algorithm` counts (`key` names the SharedKey, which callpush does not need:
/// it tries every configured one).
pub fn settings_algorithm(header: &str) -> Result<Algorithm, Refusal> {
    let value = header
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("algorithm"))
        .map(|(_, value)| value.trim());
    match value {
        Some(v) if v.eq_ignore_ascii_case("HMAC_SHA256") => Ok(Algorithm::HmacSha256),
        Some(v) if v.eq_ignore_ascii_case("HMAC_SHA1") => Ok(Algorithm::HmacSha1),
        _ => Err(Refusal::UnknownAlgorithm),
    }
}

/// The first value of `name` in the URL's query, decoded as a form value.
fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            let spaced = s.replace('+', " ");
            percent_decode(spaced.as_bytes())
                .decode_utf8_lossy()
                .into_owned()
        };
        (decode(k) == name).then(|| decode(v))
    })
}

/// Check a request's signature; `Ok` names the algorithm that verified it. Every secret of the
/// kind and every URL form is tried (no early exit), so timing tells nothing about which secret
/// matched or how much of a signature was right.
pub fn verify(secrets: &Secrets, request: &Signed<'_>) -> Result<Algorithm, Refusal> {
    let presented = request.signature.ok_or(Refusal::Missing)?;
    let (algorithm, candidates) = match request.settings {
        None => (Algorithm::HmacSha1, &secrets.auth_tokens),
        Some(header) => (settings_algorithm(header)?, &secrets.shared_keys),
    };
    if candidates.is_empty() {
        return Err(match request.settings {
            None => Refusal::NoAuthToken,
            Some(_) => Refusal::NoSharedKey,
        });
    }
    let messages: Vec<String> = match request.body {
        Body::Json(bytes) => {
            let expected = query_param(request.url, BODY_HASH_PARAM).ok_or(Refusal::NoBodyHash)?;
            if hex::encode(Sha256::digest(bytes)) != expected {
                return Err(Refusal::BodyHash);
            }
            url_variants(request.url)
        }
        Body::Form(fields) => url_variants(request.url)
            .iter()
            .map(|u| signed_string(u, fields))
            .collect(),
    };
    let presented = STANDARD
        .decode(presented.trim())
        .map_err(|_| Refusal::Mismatch)?;
    let mut matched = false;
    for secret in candidates {
        let key = hmac::Key::new(algorithm.ring(), secret.expose());
        for message in &messages {
            // ring's verify compares in constant time.
            matched |= hmac::verify(&key, message.as_bytes(), &presented).is_ok();
        }
    }
    if matched {
        Ok(algorithm)
    } else {
        Err(Refusal::Mismatch)
    }
}

/// The signature `secret` gives `message` under `algorithm` (tests sign with it).
#[cfg(test)]
pub fn sign(algorithm: Algorithm, secret: &Secret, message: &str) -> String {
    let key = hmac::Key::new(algorithm.ring(), secret.expose());
    STANDARD.encode(hmac::sign(&key, message.as_bytes()).as_ref())
}

#[cfg(test)]
mod tests;
