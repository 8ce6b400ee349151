//! The walkthrough `callpush dev` prints: where everything is, and commands that work as
//! printed (the binary's own path, the real addresses, the generated config).

use std::fmt::Write;
use std::net::SocketAddr;

use super::DevFiles;
use callpush_sim::{Simulators, FLAKY_PREFIX, GONE_PREFIX, REJECT_PREFIX, SANDBOX_PREFIX};

/// The walkthrough for a dev daemon on these listeners.
pub fn text(
    files: &DevFiles,
    sims: &Simulators,
    api: SocketAddr,
    admin: SocketAddr,
    redis: Option<&str>,
) -> String {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "callpush".into());
    let config = files.path("callpush.toml").display().to_string();
    let admin_token = files.path("admin_token").display().to_string();
    let backend = match redis {
        Some(url) => format!("Redis at {}", crate::daemon::redacted_url(url)),
        None => "in memory (not durable: everything is gone when this process exits)".into(),
    };
    let dir_note = if files.temporary() {
        "removed on exit"
    } else {
        "kept on exit"
    };
    let post = |addr: SocketAddr, path: &str, auth: &str, body: &str| {
        format!(
            "curl -s -X POST http://{addr}{path} -H \"Authorization: Bearer {auth}\" \
             -H 'Content-Type: application/json' -d '{body}'"
        )
    };
    let admin_auth = format!("$(cat {admin_token})");
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\ncallpush dev is running: the real daemon, simulated APNs and FCM.\n"
    );
    let _ = writeln!(t, "  public API   http://{api}");
    let _ = writeln!(
        t,
        "  admin API    http://{admin}   (admin token: {admin_token})"
    );
    let _ = writeln!(t, "  backend      {backend}");
    let _ = writeln!(
        t,
        "  simulators   APNs {} (sandbox {})   FCM {}",
        sims.apns_endpoint(),
        sims.apns_sandbox_endpoint(),
        sims.fcm_base_url()
    );
    let _ = writeln!(t, "  data dir     {} ({dir_note})", files.dir().display());
    let _ = writeln!(t, "  config       {config}\n");
    let _ = writeln!(t, "Try it from another terminal:\n");
    let alice_phone = r#"{"platform":"fcm","device_token":"alice-phone-1"}"#;
    step(
        &mut t,
        "1. an access token for alice (your backend mints these)",
        &[format!(
            "TOKEN=$({exe} token --config {config} --identity alice)"
        )],
    );
    step(
        &mut t,
        "2. register alice's phone (what the app does)",
        &[post(api, "/v1/registrations", "$TOKEN", alice_phone)],
    );
    step(
        &mut t,
        "3. ring alice (what a call server does)",
        &[post(
            admin,
            "/v1/calls",
            &admin_auth,
            r#"{"type":"incoming","to":"alice","call_sid":"CA0001","from":"+15551234567"}"#,
        )],
    );
    step(
        &mut t,
        "4. this terminal logs the push the simulator received, e.g.\n  \
         #    FCM sim: incoming push for call CA0001 to alice-ph… answered 200\n  \
         #    and the daemon counts it:",
        &[format!(
            "curl -s http://{admin}/metrics | grep -E '^callpush_(events|pushes)_total'"
        )],
    );
    step(
        &mut t,
        "4b. the app says the push woke the phone: 204 (iOS: in \
         pushRegistry(_:didReceiveIncomingPushWith:…),\n  \
         #     Android: in onMessageReceived; docs/closing-the-loop.md has the two lines)",
        &[post(api, "/v1/calls/CA0001/ack", "$TOKEN", alice_phone)],
    );
    step(
        &mut t,
        "4c. what call servers read: each device's first ack (on Redis also the stream \
         <prefix>acks)",
        &[format!(
            "curl -s http://{admin}/v1/acks -H \"Authorization: Bearer {admin_auth}\""
        )],
    );
    let mut dead_letter = vec![
        format!("BOB=$({exe} token --config {config} --identity bob)"),
        post(
            api,
            "/v1/registrations",
            "$BOB",
            &format!(r#"{{"platform":"fcm","device_token":"{REJECT_PREFIX}-bob-phone"}}"#),
        ),
        post(
            admin,
            "/v1/calls",
            &admin_auth,
            r#"{"type":"incoming","to":"bob","call_sid":"CA0002"}"#,
        ),
    ];
    // In memory the dead letters live in this process: `callpush dlq` reaches them through the
    // admin API (`--admin`), as it would a production daemon without access to its Redis.
    let target = match redis {
        Some(_) => format!("--config {config}"),
        None => {
            dead_letter.push(
                "# the dead letters live in this process: callpush dlq reaches them through the \
                 admin API"
                    .into(),
            );
            format!("--admin http://{admin} --config {config}")
        }
    };
    dead_letter.push(format!("{exe} dlq list {target}"));
    dead_letter.push(format!(
        "{exe} dlq replay {target} --reason provider_rejected --yes"
    ));
    step(
        &mut t,
        &format!("5. a dead letter: the simulators refuse tokens starting with {REJECT_PREFIX}"),
        &dead_letter,
    );
    // The simulators answer check's probes as Apple and Google do.
    let skip_redis = if redis.is_some() { "" } else { " --skip-redis" };
    step(
        &mut t,
        &format!(
            "6. before a deploy, check a configuration without ringing anyone (here dev's own):\n  \
             #    each credential's key proven against the simulators{}",
            if redis.is_some() {
                ", and Redis"
            } else {
                "; in memory there is no Redis to check"
            }
        ),
        &[format!("{exe} check --config {config}{skip_redis}")],
    );
    let _ = writeln!(
        t,
        "Simulated device tokens: {GONE_PREFIX}… answers 410 Unregistered / 404 UNREGISTERED \
         (the binding is pruned); {REJECT_PREFIX}… 400 TopicDisallowed / 403 PERMISSION_DENIED \
         (dead letter); {FLAKY_PREFIX}… 503 once per call, then 200 (a retry); anything else \
         200. APNs tokens are 64+ hex digits, e.g. {GONE_PREFIX}{}; one starting with \
         {SANDBOX_PREFIX} is a debug build's (sandbox) token, which callpush learns by trying \
         the sandbox after production's 400 BadDeviceToken (or registers with \
         \"environment\":\"sandbox\"). An FCM app registered by Firebase Installation ID \
         sends \"fid\" (22 characters) in place of \"device_token\".",
        "0".repeat(60)
    );
    let _ = writeln!(t, "Stop with Ctrl-C.");
    t
}

/// One step of the walkthrough: its `# comment`, its commands, a blank line.
fn step(t: &mut String, comment: &str, commands: &[String]) {
    let _ = writeln!(t, "  # {comment}");
    for command in commands {
        let _ = writeln!(t, "  {command}");
    }
    let _ = writeln!(t);
}
