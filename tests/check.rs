//! `callpush check --config FILE` against the simulators and a real Redis: a good
//! configuration passes; each way a credential or Redis can be wrong fails with one line on
//! stderr naming what to fix, and a non-zero exit status.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use tokio::process::Command;

use serde_json::Value;
use support::apns_double::{ApnsDouble, DoubleOptions};
use support::fcm_double::{write_json, FcmDouble, FcmDoubleOptions};
use support::redis_server::{unique_prefix, RedisServer};

/// The simulators and a Redis, and the settings of a configuration that works with them.
struct Rig {
    redis: RedisServer,
    apns: ApnsDouble,
    fcm: FcmDouble,
    dir: tempfile::TempDir,
}

/// What a test changes in the good configuration.
#[derive(Default)]
struct Wrong<'a> {
    redis_url: Option<&'a str>,
    redis_user: Option<(&'a str, &'a str)>,
    key_id: Option<&'a str>,
    team_id: Option<&'a str>,
    bundle_id: Option<&'a str>,
    service_account: Option<PathBuf>,
}

impl Rig {
    async fn start() -> Rig {
        Rig {
            redis: RedisServer::start().await,
            apns: ApnsDouble::start(DoubleOptions::default()).await,
            fcm: FcmDouble::start(FcmDoubleOptions::default()).await,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// `callpush check` of the good configuration with `wrong` in it.
    async fn check(&self, wrong: Wrong<'_>) -> Output {
        check(&self.config(wrong), false).await
    }

    fn config(&self, wrong: Wrong<'_>) -> PathBuf {
        let apns = self.apns.credential("CRapns");
        let sa = wrong
            .service_account
            .unwrap_or_else(|| self.fcm.write_service_account(self.dir.path()));
        let mut redis = format!(
            "url = \"{}\"\nkey_prefix = \"{}\"\n",
            wrong
                .redis_url
                .map_or_else(|| self.redis.url(), str::to_string),
            unique_prefix()
        );
        if let Some((user, password)) = wrong.redis_user {
            let file = self.dir.path().join("redis-password");
            std::fs::write(&file, password).unwrap();
            redis.push_str(&format!(
                "username = \"{user}\"\npassword_file = \"{}\"\n",
                file.display()
            ));
        }
        let text = format!(
            r#"
[redis]
{redis}
[[credentials]]
sid = "CRapns"
platform = "apns"
bundle_id = "{}"
team_id = "{}"
key_id = "{}"
key_file = "{}"
environment = "{}"
endpoint = "{}"

{}"#,
            wrong.bundle_id.unwrap_or(&apns.bundle_id),
            wrong.team_id.unwrap_or(&apns.team_id),
            wrong.key_id.unwrap_or(&apns.key_id),
            apns.key_file.display(),
            apns.environment,
            apns.endpoint.unwrap(),
            self.fcm.credential_toml("CRfcm", &sa),
        );
        let path = self.dir.path().join("callpush.toml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// Run `callpush check` (without blocking this runtime: the simulators answer on it).
async fn check(config: &Path, json: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_callpush"));
    cmd.arg("check").arg("--config").arg(config);
    if json {
        cmd.arg("--json");
    }
    cmd.env("CALLPUSH_LOG_FORMAT", "json")
        .output()
        .await
        .expect("run callpush")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The problem lines on stderr (log lines, JSON, aside), after a failed check.
fn problems(out: &Output) -> Vec<String> {
    assert!(!out.status.success(), "stdout: {}", text(&out.stdout));
    text(&out.stderr)
        .lines()
        .filter(|l| !l.starts_with('{'))
        .map(str::to_string)
        .collect()
}

/// The one problem line about `subject`, which must name `fix`.
fn assert_one_problem(out: &Output, subject: &str, fix: &str) {
    let lines = problems(out);
    let about: Vec<&String> = lines.iter().filter(|l| l.starts_with(subject)).collect();
    assert_eq!(about.len(), 1, "{lines:#?}");
    assert!(about[0].contains(fix), "{:?} should name {fix:?}", about[0]);
    assert!(
        lines.iter().any(|l| l.contains("problem")),
        "a closing line counts the problems: {lines:#?}"
    );
}

#[tokio::test]
async fn a_good_configuration_passes_without_pushing_to_anyone() {
    let rig = Rig::start().await;
    let config = rig.config(Wrong::default());
    let out = check(&config, false).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    for subject in ["config", "redis", "credential CRapns", "credential CRfcm"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(subject) && l.contains(" ok ")),
            "{subject} passes:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("7."),
        "the Redis version is shown:\n{stdout}"
    );
    assert!(stdout.contains("standalone"), "{stdout}");
    // The APNs probe went to Apple's "no such device" token; FCM's was a dry run.
    assert!(rig.apns.requests().iter().all(|r| r.status == 400));
    let fcm = rig.fcm.requests();
    assert_eq!(fcm.len(), 1);
    assert_eq!(fcm[0].body["validate_only"], true);

    let out = check(&config, true).await;
    assert!(out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["checks"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn a_wrong_key_id_names_key_id() {
    let rig = Rig::start().await;
    let out = rig
        .check(Wrong {
            key_id: Some("WRONGKEY01"),
            ..Wrong::default()
        })
        .await;
    assert_one_problem(&out, "credential CRapns", "key_id");
    assert!(problems(&out)[0].contains("InvalidProviderToken"));
}

#[tokio::test]
async fn a_wrong_team_id_names_team_id() {
    let rig = Rig::start().await;
    let out = rig
        .check(Wrong {
            team_id: Some("OTHERTEAM1"),
            ..Wrong::default()
        })
        .await;
    assert_one_problem(&out, "credential CRapns", "team_id (OTHERTEAM1)");
}

#[tokio::test]
async fn a_wrong_topic_names_bundle_id() {
    let rig = Rig::start().await;
    let out = rig
        .check(Wrong {
            bundle_id: Some("com.example.other"),
            ..Wrong::default()
        })
        .await;
    assert_one_problem(&out, "credential CRapns", "bundle_id (com.example.other)");
}

#[tokio::test]
async fn a_wrong_service_account_names_the_file_to_replace() {
    let rig = Rig::start().await;
    let mut account = rig.fcm.service_account_json();
    account["client_email"] = "someone-else@other-project.iam.gserviceaccount.com".into();
    let sa = write_json(rig.dir.path(), "other-account.json", &account);
    let out = rig
        .check(Wrong {
            service_account: Some(sa.clone()),
            ..Wrong::default()
        })
        .await;
    assert_one_problem(&out, "credential CRfcm", &sa.display().to_string());
    assert!(problems(&out)[0].contains("invalid_grant"));
}

#[tokio::test]
async fn an_unreachable_redis_names_redis_url() {
    let rig = Rig::start().await;
    let out = rig
        .check(Wrong {
            redis_url: Some("redis://127.0.0.1:1"),
            ..Wrong::default()
        })
        .await;
    assert_one_problem(&out, "redis", "redis.url");
}

#[tokio::test]
async fn a_redis_user_without_evalsha_is_told_what_to_grant() {
    let rig = Rig::start().await;
    let mut conn = rig.redis.multiplexed().await;
    let _: () = redis::cmd("ACL")
        .arg(&[
            "SETUSER", "pusher", "on", ">s3cret", "~*", "&*", "+@all", "-evalsha",
        ])
        .query_async(&mut conn)
        .await
        .unwrap();
    let out = rig
        .check(Wrong {
            redis_user: Some(("pusher", "s3cret")),
            ..Wrong::default()
        })
        .await;
    assert_one_problem(&out, "redis", "ACL SETUSER pusher +evalsha");
    let line = &problems(&out)[0];
    assert!(line.contains("may not run EVALSHA"), "{line}");
}
