//! What the logs may never show. The real binary runs with JSON logs at debug level for
//! callpush; an app registers two devices over HTTP, a call server enqueues calls over the
//! admin API, pushes reach both doubles and one dead token is pruned. Its stderr must hold the
//! device tokens only masked (first 8 characters) and none of the admin token, the API key
//! secret, the access token or a private key — and each event's lines carry `call_sid` and the
//! stream id.
//!
//! The same run goes through the error paths a client can reach (a wrong admin token, a token
//! signed with the wrong secret, an expired one, a garbled header, an oversized header, a slow
//! body) and scrapes `/metrics`: neither the log nor the scrape may show a secret. Secret files
//! other users may read get a start-up warning naming the key and the mode; private ones none.
//! The tests' short `stream.claim_idle_ms` is accepted with a start-up warning that names the
//! key, the risk and the suggested minimum.

mod support;

use std::process::{Command, Stdio};

use http::{Method, StatusCode};
use serde_json::{json, Value};
use support::api::{
    claims, http, request, sign, token, ACCOUNT_SID, ADMIN_TOKEN, KEY_SECRET, KEY_SID,
};
use support::apns_double::fixture;
use support::process::{config_toml, listeners, Knobs};
use support::world::World;

/// The config of `world` plus the secrets the API needs, all in files under `dir`: the admin
/// token readable by everyone (0644), the API key secret private (0600).
fn config(world: &World, dir: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let admin = dir.join("admin-token");
    std::fs::write(&admin, format!("{ADMIN_TOKEN}\n")).unwrap();
    std::fs::set_permissions(&admin, std::fs::Permissions::from_mode(0o644)).unwrap();
    let key = dir.join("api-key.secret");
    std::fs::write(&key, format!("{KEY_SECRET}\n")).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = config_toml(world, "logs", &Knobs::default()).replace(
        "[admin]\nlisten = \"127.0.0.1:0\"\n",
        &format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n\n[auth]\naccount_sid = \
             \"{ACCOUNT_SID}\"\n[[auth.api_keys]]\nsid = \"{KEY_SID}\"\nsecret_file = \"{}\"\n",
            admin.display(),
            key.display()
        ),
    );
    let path = dir.join("callpush.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The base64 body lines of a PEM file (long enough to be worth looking for).
fn pem_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .map(str::to_string)
        .collect()
}

/// Every error a client can cause, each answered in the error shape; returns a `/metrics`
/// scrape taken afterwards. The tokens sent are added to `tokens`, to be looked for in the log.
async fn error_paths(api: &str, admin: &str, tokens: &mut Vec<(&str, String)>) -> String {
    let body = json!({"platform": "fcm", "device_token": "fcm-device-token:x"});
    let mut wrong_secret = claims("alice");
    wrong_secret["jti"] = "wrong".into();
    let forged = sign(&wrong_secret, "not-the-api-key-secret");
    let mut old = claims("alice");
    old["nbf"] = 1_000.into();
    old["exp"] = 2_000.into();
    let expired = sign(&old, KEY_SECRET);
    tokens.push(("a forged access token", forged.clone()));
    tokens.push(("an expired access token", expired.clone()));
    for (bearer, status) in [
        (forged.as_str(), StatusCode::UNAUTHORIZED),
        (expired.as_str(), StatusCode::UNAUTHORIZED),
        ("not-a-jwt", StatusCode::UNAUTHORIZED),
    ] {
        let reply = http(
            Method::POST,
            api,
            "/v1/registrations",
            Some(bearer),
            Some(body.clone()),
        )
        .await;
        assert_eq!(reply.status, status, "{}", reply.body);
        assert!(reply.body["error"]["code"].is_string(), "{}", reply.body);
    }
    let wrong_admin = format!("{ADMIN_TOKEN}-wrong");
    tokens.push(("a wrong admin token", wrong_admin.clone()));
    let reply = http(
        Method::GET,
        admin,
        "/v1/dead-letters",
        Some(&wrong_admin),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    let reply = http(
        Method::GET,
        admin,
        "/v1/dead-letters",
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let huge = format!("Bearer {}", "x".repeat(20 * 1024));
    let headers = [("authorization", huge.as_str())];
    let (status, _, _) = request(Method::GET, api, "/healthz", &headers, None).await;
    assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let (status, _, scrape) = request(Method::GET, admin, "/metrics", &[], None).await;
    assert_eq!(status, StatusCode::OK);
    String::from_utf8(scrape.to_vec()).unwrap()
}

#[tokio::test]
async fn a_registration_and_a_push_never_log_a_token_or_a_secret() {
    let mut w = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(&w, dir.path());
    let log = dir.path().join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_callpush"))
        .args(["serve", "--log-format", "json", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info,callpush=trace")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let (api, admin) = listeners(&log).await;
    let (api, admin) = (format!("http://{api}"), format!("http://{admin}"));

    let apns_token = "AB12CD34".repeat(8);
    let dead_token = "ef56".repeat(16);
    let fcm_token = "fcm-device-token:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx";
    let mut access_tokens = Vec::new();
    for (identity, platform, device) in [
        ("alice", "apns", apns_token.as_str()),
        ("alice", "fcm", fcm_token),
        ("bob", "apns", dead_token.as_str()),
    ] {
        let access = token(identity);
        access_tokens.push(("an access token", access.clone()));
        let reply = http(
            Method::POST,
            &api,
            "/v1/registrations",
            Some(&access),
            Some(json!({"platform": platform, "device_token": device})),
        )
        .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    }
    w.apns
        .set_unregistered(&dead_token, callpush::domain::now_ms() + 1);
    for (to, sid) in [("alice", "CAlog1"), ("bob", "CAlog2")] {
        let reply = http(
            Method::POST,
            &admin,
            "/v1/calls",
            Some(ADMIN_TOKEN),
            Some(json!({"type": "incoming", "to": to, "call_sid": sid})),
        )
        .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    }
    w.results(2).await;
    assert_eq!((w.apns.count(), w.fcm.count()), (2, 1));
    let scrape = error_paths(&api, &admin, &mut access_tokens).await;
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());

    let text = std::fs::read_to_string(&log).unwrap();
    let warning = text
        .lines()
        .find(|l| l.contains("secret file is readable") && l.contains("admin.token_file"))
        .unwrap_or_else(|| panic!("no warning about the 0644 admin token file:\n{text}"));
    assert!(
        warning.contains("\"0644\"") && warning.contains("WARN"),
        "{warning}"
    );
    assert!(
        !text.contains("auth.api_keys[0].secret_file"),
        "a 0600 file is not warned about:\n{text}"
    );
    let short = text
        .lines()
        .find(|l| l.contains("stream.claim_idle_ms") && l.contains("WARN"))
        .unwrap_or_else(|| panic!("no warning about the 1 s stream.claim_idle_ms:\n{text}"));
    assert!(
        short.contains("pushed again") && short.contains("5000 or more is suggested"),
        "{short}"
    );
    for line in text.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
    let mut secrets = vec![
        ("the APNs device token", apns_token.clone()),
        (
            "the APNs device token (stored form)",
            apns_token.to_lowercase(),
        ),
        ("the pruned device token", dead_token.clone()),
        ("the FCM device token", fcm_token.to_string()),
        ("the admin token", ADMIN_TOKEN.to_string()),
        ("the API key secret", KEY_SECRET.to_string()),
    ];
    secrets.extend(access_tokens);
    for pem in ["apns_auth_key.p8", "fcm_sa_key.pk8.pem"] {
        for line in pem_lines(&fixture(pem)) {
            secrets.push(("a private key", line));
        }
    }
    for (what, secret) in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "the log shows {what}:\n{text}"
        );
        assert!(
            !scrape.contains(secret.as_str()),
            "/metrics shows {what}:\n{scrape}"
        );
    }
    // They were logged, masked: the first 8 characters only.
    assert!(
        text.contains("ab12cd34…") || text.contains("\"ab12cd34"),
        "{text}"
    );
    assert!(text.contains("binding pruned"), "{text}");
    let event_line = text
        .lines()
        .find(|l| l.contains("CAlog2") && l.contains("stream_id"))
        .unwrap_or_else(|| panic!("no line of event CAlog2 with its stream id:\n{text}"));
    assert!(event_line.contains("call_sid"), "{event_line}");
}
