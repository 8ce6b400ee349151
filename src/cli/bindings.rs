//! `callpush bindings add|list|delete|events`: an operator's view of device bindings, straight
//! on the Redis the daemon uses (`events` is in [`feed`](super::feed)).

use clap::{Args, Subcommand};

use super::{feed, output, CliError, ConfigArg};
use crate::bindings::{normalize_device_token, normalize_fid, BindingStore, NewBinding};
use crate::config::Settings;
use crate::daemon;
use crate::domain::{now_ms, ApnsEnvironment, Platform, Target};
use crate::event::check_identity;

/// `callpush bindings …`
#[derive(Debug, Subcommand)]
pub enum BindingsCommand {
    /// Register a device for an identity (as an app would), printing the binding.
    Add(BindingAddArgs),
    /// List the live bindings of an identity.
    List(BindingListArgs),
    /// Delete one binding of an identity, or all of them (--all).
    Delete(BindingDeleteArgs),
    /// Print the binding feed: every change to a binding (registered, pruned, moved, …).
    Events(feed::BindingEventsArgs),
}

/// `callpush bindings add`
#[derive(Debug, Args)]
pub struct BindingAddArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The identity (who the device belongs to).
    #[arg(long)]
    identity: String,
    /// apns or fcm.
    #[arg(long)]
    platform: Platform,
    /// The device token (APNs: hex; FCM: registration token).
    #[arg(long, required_unless_present = "fid", conflicts_with = "fid")]
    device_token: Option<String>,
    /// FCM: the app's Firebase Installation ID, for an app registered by FID instead of a
    /// registration token.
    #[arg(long)]
    fid: Option<String>,
    /// APNs: the environment of the app's build (sandbox for a debug build); default: learned
    /// from Apple's answers.
    #[arg(long)]
    environment: Option<ApnsEnvironment>,
    /// The push credential SID; default: the single credential of the platform.
    #[arg(long)]
    credential: Option<String>,
}

/// `callpush bindings list`
#[derive(Debug, Args)]
pub struct BindingListArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The identity.
    #[arg(long)]
    identity: String,
    /// As a JSON array.
    #[arg(long)]
    json: bool,
}

/// `callpush bindings delete`
#[derive(Debug, Args)]
pub struct BindingDeleteArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The identity.
    #[arg(long)]
    identity: String,
    /// The binding id (`BS…`, from `bindings list`).
    #[arg(long, required_unless_present = "all", conflicts_with = "all")]
    binding_id: Option<String>,
    /// Every binding of the identity (a user who deleted their account).
    #[arg(long)]
    all: bool,
}

fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

pub(super) async fn run(cmd: BindingsCommand) -> Result<(), CliError> {
    match cmd {
        BindingsCommand::Add(a) => {
            let settings = Settings::load(a.config.config.as_deref())?;
            check_identity(&a.identity).map_err(|p| CliError::Usage(format!("--identity {p}")))?;
            let (device_token, target) = match (&a.device_token, &a.fid) {
                (Some(token), _) => normalize_device_token(a.platform, token)
                    .map(|t| (t, Target::Token))
                    .map_err(|p| CliError::Usage(format!("--device-token: {p}")))?,
                (None, Some(fid)) if a.platform == Platform::Fcm => normalize_fid(fid)
                    .map(|f| (f, Target::Fid))
                    .map_err(|p| CliError::Usage(format!("--fid: {p}")))?,
                _ => {
                    return Err(CliError::Usage(
                        "--fid: a Firebase Installation ID is for --platform fcm only".into(),
                    ))
                }
            };
            if a.environment.is_some() && a.platform != Platform::Apns {
                return Err(CliError::Usage(
                    "--environment: for --platform apns only".into(),
                ));
            }
            let credential = pick_credential(&settings, a.platform, a.credential.as_deref())?;
            let environments = settings.apns_environments();
            let allowed = environments.get(&credential);
            if let (Some(environment), Some(allowed)) = (a.environment, allowed) {
                if !allowed.allows(environment) {
                    return Err(CliError::Usage(format!(
                        "--environment: credential {credential} pushes to the APNs {} \
                         environment only, not to {environment}",
                        allowed.default
                    )));
                }
            }
            let (_, store) = daemon::redis_backends(&settings).await?;
            let registered = store
                .register(
                    NewBinding {
                        identity: a.identity,
                        platform: a.platform,
                        credential,
                        device_token,
                        target,
                        environment: a.environment,
                    },
                    now_ms(),
                )
                .await?;
            print_json(&registered.binding.view(allowed.map(|e| e.default)));
            Ok(())
        }
        BindingsCommand::List(a) => {
            let settings = Settings::load(a.config.config.as_deref())?;
            let (_, store) = daemon::redis_backends(&settings).await?;
            let environments = settings.apns_environments();
            let list: Vec<_> = store
                .list(&a.identity)
                .await?
                .iter()
                .map(|b| b.view(environments.get(&b.credential).map(|e| e.default)))
                .collect();
            if a.json {
                print_json(&serde_json::Value::Array(list));
            } else {
                print_bindings(&a.identity, &list);
            }
            Ok(())
        }
        BindingsCommand::Delete(a) => {
            let settings = Settings::load(a.config.config.as_deref())?;
            let (_, store) = daemon::redis_backends(&settings).await?;
            let Some(binding_id) = a.binding_id else {
                let removed = store.erase(&a.identity).await?;
                println!("{} binding(s) of {:?} deleted", removed.len(), a.identity);
                return Ok(());
            };
            if store.delete(&a.identity, &binding_id).await? {
                Ok(())
            } else {
                Err(CliError::NotFound(format!(
                    "identity {:?} has no binding {}",
                    a.identity, binding_id
                )))
            }
        }
        BindingsCommand::Events(a) => feed::events(a).await,
    }
}

/// Bindings as a table, most recently updated first, and a count.
fn print_bindings(identity: &str, list: &[serde_json::Value]) {
    let table = output::Table::new(&[
        ("BINDING_ID", 34),
        ("PLATFORM", 8),
        ("CREDENTIAL", 18),
        ("DEVICE_TOKEN", 12),
        ("TARGET", 6),
        ("ENVIRONMENT", 23),
        ("UPDATED_AT", 24),
        ("EXPIRES_AT", 24),
    ]);
    let cell = |b: &serde_json::Value, k: &str| b[k].as_str().unwrap_or("-").to_string();
    for b in list {
        // APNs: the environment and, unless registered, where it came from.
        let environment = match (b["environment"].as_str(), b["environment_source"].as_str()) {
            (Some(e), Some("registered")) | (Some(e), None) => e.to_string(),
            (Some(e), Some(source)) => format!("{e} ({source})"),
            (None, _) => "-".to_string(),
        };
        table.row(&[
            cell(b, "binding_id"),
            cell(b, "platform"),
            cell(b, "credential"),
            cell(b, "device_token"),
            cell(b, "target"),
            environment,
            cell(b, "updated_at"),
            cell(b, "expires_at"),
        ]);
    }
    println!("\n{} binding(s) of {identity:?}", list.len());
}

/// The credential a binding goes to: the one named, or the single one of the platform.
fn pick_credential(
    settings: &Settings,
    platform: Platform,
    named: Option<&str>,
) -> Result<String, CliError> {
    let configured: Vec<(String, Platform)> = settings
        .credentials
        .iter()
        .map(|c| (c.sid().to_string(), c.platform()))
        .collect();
    crate::auth::pick_credential(&configured, platform, named)
        .map_err(|e| CliError::Usage(format!("--credential: {e}")))
}
