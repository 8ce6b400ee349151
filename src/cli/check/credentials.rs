//! The credential part of `callpush check`: one harmless request per credential, and what its
//! answer means for the operator.
//!
//! - APNs: a VoIP push to [`PROBE_TOKEN`], a token Apple never issues. Apple checks the
//!   provider token (key id, team id, signature) and the topic before the device, so
//!   `400 BadDeviceToken` proves everything but a real device; `403 InvalidProviderToken`
//!   means the key, key id or team id is wrong; `400 TopicDisallowed` / `BadTopic` that the
//!   bundle id is not the key's team's app (reasons as Apple's "Handling notification
//!   responses from APNs" lists them).
//! - FCM: an access token from the service account, then the message with
//!   `"validate_only": true` (Google's dry run: checked, delivered to nobody). `200` (or a
//!   verdict about the made-up token) proves the account and the project; `invalid_grant`
//!   means the service account's key or e-mail is wrong, `401`/`403` that it may not send for
//!   the project.

use std::sync::Arc;

use super::{Finding, PROBE_TIMEOUT};
use crate::apns::{ApnsProvider, PROBE_TOKEN};
use crate::config::{ApnsCredential, CredentialSettings, FcmCredential};
use crate::domain::{now_ms, CallContent, Push, PushKind};
use crate::fcm::FcmProvider;
use crate::providers::{Outcome, Provider};

/// The FCM registration token of the dry run: well formed, never issued.
const FCM_PROBE_TOKEN: &str = "callpush-check-probe";

/// Check one credential.
pub(super) async fn check(credential: &CredentialSettings) -> Finding {
    match credential {
        CredentialSettings::Apns(c) => apns(c).await,
        CredentialSettings::Fcm(c) => fcm(c).await,
    }
}

fn subject(sid: &str) -> String {
    format!("credential {sid}")
}

fn probe_push(token: &str) -> Push {
    Push::new(
        Arc::new(CallContent {
            kind: PushKind::Incoming,
            call_sid: "callpush-check".into(),
            caller: None,
            callee: "callpush-check".into(),
            params: None,
            deadline_ms: now_ms() + PROBE_TIMEOUT.as_millis() as u64,
            twilio: Vec::new(),
        }),
        token,
    )
}

/// The probe's outcome, or a retryable "no answer" when it takes longer than [`PROBE_TIMEOUT`].
async fn within_timeout(probe: impl std::future::Future<Output = Outcome>) -> Outcome {
    tokio::time::timeout(PROBE_TIMEOUT, probe)
        .await
        .unwrap_or_else(|_| Outcome::Retry {
            failure: crate::providers::Failure::new("timeout", "no answer within the probe's time"),
            retry_after: None,
        })
}

/// The finding of a credential whose provider cannot even be built.
fn unbuildable(sid: &str, error: impl std::fmt::Display, fix: &str) -> Finding {
    Finding::problem(subject(sid), error.to_string(), fix)
}

async fn apns(c: &ApnsCredential) -> Finding {
    let provider = match ApnsProvider::new(c) {
        Ok(p) => p,
        Err(e) => {
            let fix =
                "set key_file to the .p8 key Apple let you download, and key_id to its Key ID";
            return unbuildable(&c.sid, e, fix);
        }
    };
    let outcome = within_timeout(provider.send(&probe_push(PROBE_TOKEN))).await;
    apns_finding(c, &outcome)
}

/// What APNs' answer to the probe means.
fn apns_finding(c: &ApnsCredential, outcome: &Outcome) -> Finding {
    let who = subject(&c.sid);
    let env = c.environment;
    let topic = format!("{}.voip", c.bundle_id);
    let failure = match outcome {
        Outcome::Delivered => {
            return Finding::ok(who, format!("APNs {env}: key, team and topic {topic} accepted"))
        }
        Outcome::InvalidToken { failure, .. } if failure.reason == "BadDeviceToken" => {
            return Finding::ok(
                who,
                format!(
                    "APNs {env}: key {}, team {} and topic {topic} accepted (BadDeviceToken for the probe token, as expected)",
                    c.key_id, c.team_id
                ),
            )
        }
        Outcome::InvalidToken { failure, .. }
        | Outcome::Rejected(failure)
        | Outcome::Retry { failure, .. }
        | Outcome::OverQuota { failure, .. } => failure,
    };
    let fix = match failure.reason.as_str() {
        "InvalidProviderToken" | "MissingProviderToken" | "UnrelatedKeyIdInToken" => format!(
            "Apple refused the provider token: check key_id ({}) is the Key ID of the .p8 key in key_file, \
             and team_id ({}) is the Team ID of the account that made the key",
            c.key_id, c.team_id
        ),
        "TopicDisallowed" | "BadTopic" | "DeviceTokenNotForTopic" => format!(
            "Apple refused the topic {topic}: check bundle_id ({}) is the app's bundle id (callpush adds .voip) \
             and that the app belongs to team {}",
            c.bundle_id, c.team_id
        ),
        "BadEnvironmentKeyInToken" => format!(
            "the key is scoped to the other environment: set environment (now {env}) and environments to what the key allows"
        ),
        "ExpiredProviderToken" => "check this host's clock (provider tokens carry the time)".to_string(),
        _ => match outcome {
            Outcome::Retry { .. } => {
                "APNs did not answer: check endpoint, the network and a proxy on the way".to_string()
            }
            _ => "see Apple's reason above".to_string(),
        },
    };
    Finding::problem(who, format!("APNs {env}: {}", failure.detail), fix)
}

async fn fcm(c: &FcmCredential) -> Finding {
    let provider = match FcmProvider::new(c) {
        Ok(p) => p,
        Err(e) => {
            let fix = "set service_account_file to the JSON key Firebase let you download";
            return unbuildable(&c.sid, e, fix);
        }
    };
    let outcome = within_timeout(provider.validate(&probe_push(FCM_PROBE_TOKEN))).await;
    fcm_finding(c, &outcome)
}

/// What FCM's answer to the dry run means.
fn fcm_finding(c: &FcmCredential, outcome: &Outcome) -> Finding {
    let who = subject(&c.sid);
    let failure = match outcome {
        Outcome::Delivered => {
            return Finding::ok(
                who,
                "FCM: access token granted; validate_only message accepted",
            )
        }
        // FCM judged the made-up token: the account got past authentication and the project.
        Outcome::InvalidToken { failure, .. } => {
            return Finding::ok(
                who,
                format!(
                    "FCM: access token granted; the probe token was judged ({})",
                    failure.reason
                ),
            )
        }
        Outcome::Rejected(failure)
        | Outcome::Retry { failure, .. }
        | Outcome::OverQuota { failure, .. } => failure,
    };
    let file = c.service_account_file.display();
    let fix = if failure.reason.starts_with("oauth_") {
        match failure.reason.as_str() {
            "oauth_invalid_grant" | "oauth_invalid_client" | "oauth_unauthorized_client" => format!(
                "Google refused the service account: {file} holds a key that was deleted or rotated, \
                 or another account's; download a current key for the project"
            ),
            _ => "the OAuth token endpoint did not grant a token: check token_uri and the network".to_string(),
        }
    } else {
        match failure.reason.as_str() {
            "UNAUTHENTICATED" | "PERMISSION_DENIED" | "SENDER_ID_MISMATCH" | "THIRD_PARTY_AUTH_ERROR" => format!(
                "the service account in {file} may not send for its project: check project_id and grant it the \
                 Firebase Cloud Messaging API Admin role"
            ),
            _ => match outcome {
                Outcome::Retry { .. } => {
                    "FCM did not answer: check base_url, the network and a proxy on the way".to_string()
                }
                _ => "see FCM's reason above".to_string(),
            },
        }
    };
    Finding::problem(who, format!("FCM: {}", failure.detail), fix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Failure;

    fn apns_cred() -> ApnsCredential {
        let s = crate::config::Settings::from_toml_with_env(
            "[[credentials]]\nsid=\"CRa\"\nplatform=\"apns\"\nbundle_id=\"com.example.app\"\nteam_id=\"TEAM123456\"\nkey_id=\"KEY1234567\"\nkey_file=\"/k.p8\"\n",
            Vec::new(),
        )
        .unwrap();
        match &s.credentials[0] {
            CredentialSettings::Apns(a) => a.clone(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn apns_answers_name_the_setting_to_fix() {
        let c = apns_cred();
        let bad_device = Outcome::InvalidToken {
            failure: Failure::new("BadDeviceToken", "APNs 400 BadDeviceToken"),
            judged_at_ms: 0,
        };
        assert!(apns_finding(&c, &bad_device).ok);
        let refused = |reason: &str| {
            apns_finding(
                &c,
                &Outcome::Rejected(Failure::new(reason, format!("APNs 4xx {reason}"))),
            )
        };
        let token = refused("InvalidProviderToken");
        assert!(!token.ok);
        assert!(token.fix.as_deref().unwrap().contains("key_id"));
        assert!(token.fix.as_deref().unwrap().contains("team_id"));
        let topic = refused("TopicDisallowed");
        assert!(topic.fix.as_deref().unwrap().contains("bundle_id"));
        assert!(refused("BadTopic")
            .fix
            .as_deref()
            .unwrap()
            .contains("bundle_id"));
    }
}
