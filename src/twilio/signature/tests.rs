use serde_json::Value;

use super::*;
use crate::twilio::body;

fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn header<'a>(vector: &'a Value, name: &str) -> Option<&'a str> {
    vector["headers"]
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}

/// Every request of the shared vectors, signed and judged by twilio-python 9.13.0: the
/// verifier agrees with every verdict, reading the URL as the handler does (the configured URL
/// and the request's query).
#[test]
fn every_vector_gets_the_verdict_of_twilios_library() {
    let vectors: Value = serde_json::from_str(include_str!(
        "../../../tests/fixtures/twilio-webhook-vectors.json"
    ))
    .unwrap();
    let vectors = vectors["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 9);
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let secret = Secret::new(v["secret"].as_str().unwrap());
        let secrets = match v["secret_kind"].as_str().unwrap() {
            "auth_token" => Secrets {
                auth_tokens: vec![Secret::new("another-token"), secret],
                shared_keys: vec![Secret::new("another-shared-key")],
            },
            "shared_key" => Secrets {
                auth_tokens: vec![Secret::new("another-token")],
                shared_keys: vec![Secret::new("another-shared-key"), secret],
            },
            other => panic!("{name}: secret kind {other}"),
        };
        let full = v["url"].as_str().unwrap();
        let (configured, query) = match full.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (full, None),
        };
        let url = called_url(configured, query);
        assert_eq!(url, full, "{name}");
        let raw = v["body"].as_str().unwrap().as_bytes();
        let form;
        let body = if v["content_type"] == "application/json" {
            Body::Json(raw)
        } else {
            form = body::parse_form(raw).unwrap();
            Body::Form(&form)
        };
        let verdict = verify(
            &secrets,
            &Signed {
                url: &url,
                body,
                signature: header(v, "X-Twilio-Signature"),
                settings: header(v, SETTINGS_HEADER),
            },
        );
        assert_eq!(
            verdict.is_ok(),
            v["valid"].as_bool().unwrap(),
            "{name}: {verdict:?}"
        );
    }
}

#[test]
fn a_json_body_is_covered_by_its_hash_and_the_url_alone() {
    let token = Secret::new("tok");
    let secrets = Secrets {
        auth_tokens: vec![token.clone()],
        shared_keys: Vec::new(),
    };
    let body = br#"{"twi_to":"client:bob"}"#;
    let hash = hex::encode(Sha256::digest(body));
    let url = format!("https://h/p?{BODY_HASH_PARAM}={hash}");
    let request = |url: &str, body: &'static [u8], sig: &str| {
        verify(
            &secrets,
            &Signed {
                url,
                body: Body::Json(body),
                signature: Some(sig),
                settings: None,
            },
        )
    };
    let sig = sign(Algorithm::HmacSha1, &token, &url);
    assert_eq!(request(&url, body, &sig), Ok(Algorithm::HmacSha1));
    assert_eq!(
        request(&url, br#"{"twi_to": "client:bob"}"#, &sig),
        Err(Refusal::BodyHash),
        "the bytes count, not what they mean"
    );
    let bare = "https://h/p";
    let sig = sign(Algorithm::HmacSha1, &token, bare);
    assert_eq!(request(bare, body, &sig), Err(Refusal::NoBodyHash));
    // Signed over the URL with the default port, checked against the URL without it.
    let with_port = format!("https://h:443/p?{BODY_HASH_PARAM}={hash}");
    let sig = sign(Algorithm::HmacSha1, &token, &with_port);
    assert_eq!(request(&url, body, &sig), Ok(Algorithm::HmacSha1));
}

#[test]
fn the_settings_header_picks_shared_keys_and_the_algorithm() {
    let token = Secret::new("auth-token");
    let key = Secret::new("shared-key");
    let secrets = Secrets {
        auth_tokens: vec![token.clone()],
        shared_keys: vec![key.clone()],
    };
    let f = fields(&[("twi_to", "client:bob")]);
    let message = signed_string("https://h/p", &f);
    let check = |sig: &str, settings: Option<&str>| {
        verify(
            &secrets,
            &Signed {
                url: "https://h/p",
                body: Body::Form(&f),
                signature: Some(sig),
                settings,
            },
        )
    };
    let sha256 = sign(Algorithm::HmacSha256, &key, &message);
    let sha1 = sign(Algorithm::HmacSha1, &key, &message);
    let settings256 = Some("key=KS1,algorithm=HMAC_SHA256");
    assert_eq!(check(&sha256, settings256), Ok(Algorithm::HmacSha256));
    assert_eq!(
        check(&sha1, Some(" algorithm = HMAC_SHA1 , key=KS1")),
        Ok(Algorithm::HmacSha1)
    );
    assert_eq!(check(&sha1, settings256), Err(Refusal::Mismatch));
    // The auth token is not a SharedKey, and a SharedKey is not an auth token.
    let by_token = sign(Algorithm::HmacSha256, &token, &message);
    assert_eq!(check(&by_token, settings256), Err(Refusal::Mismatch));
    assert_eq!(check(&sha1, None), Err(Refusal::Mismatch));
    for bad in ["key=KS1,algorithm=HMAC_MD5", "key=KS1", "", "algorithm"] {
        assert_eq!(check(&sha256, Some(bad)), Err(Refusal::UnknownAlgorithm));
    }
    let only_tokens = Secrets {
        auth_tokens: vec![token],
        shared_keys: Vec::new(),
    };
    let request = Signed {
        url: "https://h/p",
        body: Body::Form(&f),
        signature: Some(&sha256),
        settings: settings256,
    };
    assert_eq!(verify(&only_tokens, &request), Err(Refusal::NoSharedKey));
    let request = Signed {
        signature: None,
        ..request
    };
    assert_eq!(verify(&secrets, &request), Err(Refusal::Missing));
}

#[test]
fn signed_string_sorts_by_name_then_value() {
    let f = fields(&[("b", "2"), ("a", "1"), ("c", ""), ("a", "0")]);
    assert_eq!(
        signed_string("https://x/y?q=1", &f),
        "https://x/y?q=1a0a1b2c"
    );
}

#[test]
fn the_called_url_takes_the_requests_query() {
    let configured = "https://h.example/p?region=eu";
    assert_eq!(
        called_url(configured, Some("region=eu&bodySHA256=ab")),
        "https://h.example/p?region=eu&bodySHA256=ab"
    );
    assert_eq!(called_url(configured, None), configured);
    assert_eq!(called_url(configured, Some("")), configured);
    assert_eq!(called_url("https://h/p", Some("a=1")), "https://h/p?a=1");
    assert_eq!(
        query_param(
            "https://h/p?x=1&bodySHA256=a%62c&bodySHA256=no",
            BODY_HASH_PARAM
        ),
        Some("abc".into())
    );
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
fn rotated_auth_tokens_are_all_tried() {
    let old = Secret::new("old-token");
    let new = Secret::new("new-token");
    let f = fields(&[("twi_to", "client:bob")]);
    let sig = sign(Algorithm::HmacSha1, &old, &signed_string("https://h/p", &f));
    let check = |tokens: Vec<Secret>, url: &str, sig: &str| {
        let secrets = Secrets {
            auth_tokens: tokens,
            shared_keys: Vec::new(),
        };
        verify(
            &secrets,
            &Signed {
                url,
                body: Body::Form(&f),
                signature: Some(sig),
                settings: None,
            },
        )
    };
    assert!(check(vec![new.clone(), old.clone()], "https://h/p", &sig).is_ok());
    assert_eq!(
        check(vec![new], "https://h/p", &sig),
        Err(Refusal::Mismatch)
    );
    assert_eq!(
        check(vec![old.clone()], "https://h/p2", &sig),
        Err(Refusal::Mismatch)
    );
    assert_eq!(
        check(vec![old], "https://h/p", "not base64!"),
        Err(Refusal::Mismatch)
    );
}
