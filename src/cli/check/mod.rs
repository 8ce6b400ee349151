//! `callpush check --config FILE`: is this configuration ready for production? Before a deploy
//! (or after `callpush dev`), without ringing anyone:
//! - the configuration validates (else the one-line error naming the key, as `serve` gives);
//! - Redis answers: its version, whether it is a cluster (and whether `redis.cluster` says so),
//!   and whether the ACL user may run every command callpush sends ([`redis`]);
//! - each credential works ([`credentials`]): APNs signs a provider token and pushes to a
//!   device token Apple never issues, expecting `400 BadDeviceToken` (the key, team and topic
//!   were accepted); FCM fetches an access token and sends a message with
//!   `"validate_only": true`.
//!
//! `--skip-redis` leaves Redis out, for the in-memory `callpush dev` (its walkthrough prints
//! the command: check dev's own configuration against its simulators).
//!
//! A table (or `--json`) on stdout; each problem also as one line on stderr, naming the fix;
//! the exit status is non-zero when there is one.

mod credentials;
mod redis;

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::{output, CliError};
use crate::config::Settings;

/// How long one probe may take before it counts as unanswered.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// One line of the report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    /// What was checked: `config`, `redis`, `credential CR…`.
    pub subject: String,
    /// Whether it is ready.
    pub ok: bool,
    /// What was found (version, provider answer, …).
    pub detail: String,
    /// What to change, when not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    fn ok(subject: impl Into<String>, detail: impl Into<String>) -> Finding {
        Finding {
            subject: subject.into(),
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }

    fn problem(
        subject: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            subject: subject.into(),
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    /// The one stderr line of a problem.
    fn line(&self) -> String {
        match &self.fix {
            Some(fix) => format!("{}: {} — {}", self.subject, self.detail, fix),
            None => format!("{}: {}", self.subject, self.detail),
        }
    }
}

/// `callpush check`: load and validate the file (a bad one fails as `serve` would), probe
/// Redis and every credential, print the report; an error counting the problems, if any.
pub async fn run(config: Option<&Path>, json: bool, skip_redis: bool) -> Result<(), CliError> {
    let settings = Settings::load(config)?;
    let name = config.map_or_else(
        || "the configuration".to_string(),
        |p| p.display().to_string(),
    );
    let found = findings(&settings, &name, skip_redis).await;
    match report(&found, json) {
        0 => Ok(()),
        problems => Err(CliError::Check(problems)),
    }
}

/// Every check of `settings` (already validated), in order: Redis (unless `skip_redis`: the
/// in-memory `callpush dev`), then each credential.
pub async fn findings(settings: &Settings, config_name: &str, skip_redis: bool) -> Vec<Finding> {
    let mut found = vec![Finding::ok("config", format!("{config_name} is valid"))];
    match skip_redis {
        true => found.push(Finding::ok("redis", "not checked (--skip-redis)")),
        false => found.extend(redis::check(settings).await),
    }
    for credential in &settings.credentials {
        found.push(credentials::check(credential).await);
    }
    found
}

/// Print the report; the number of problems.
pub fn report(found: &[Finding], json: bool) -> usize {
    if json {
        let ok = found.iter().all(|f| f.ok);
        let value = serde_json::json!({ "ok": ok, "checks": found });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string())
        );
    } else {
        let subject = found.iter().map(|f| f.subject.len()).max().unwrap_or(0);
        let room = output::width().saturating_sub(subject + 8).max(20);
        for f in found {
            let mark = if f.ok { "ok" } else { "FAIL" };
            println!(
                "{:<subject$}  {:<4}  {}",
                f.subject,
                mark,
                output::cut(&f.detail, room)
            );
        }
    }
    let problems: Vec<&Finding> = found.iter().filter(|f| !f.ok).collect();
    for p in &problems {
        eprintln!("{}", p.line());
    }
    problems.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_is_one_line_with_its_fix() {
        let f = Finding::problem("redis", "NOPERM for EVALSHA", "grant +evalsha");
        assert_eq!(f.line(), "redis: NOPERM for EVALSHA — grant +evalsha");
        assert!(!f.line().contains('\n'));
    }
}
