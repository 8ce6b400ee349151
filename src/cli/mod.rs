//! The `callpush` command line: `serve`, `dev`, plus operator commands that work on the same
//! Redis (`bindings add|list|delete`, `enqueue`, `dlq list|show|replay|purge` in [`dlq`], which
//! can also go through a daemon's admin API with `--admin`). Operator
//! output is for people by default (tables, one-line answers; [`output`]) and JSON with
//! `--json`. `main.rs` only parses and calls [`run`].

pub mod check;
pub mod dlq;
mod feed;
pub mod output;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::bindings::{normalize_device_token, normalize_fid, BindingStore, NewBinding};
use crate::config::{ConfigError, Settings};
use crate::daemon::{self, DaemonError};
use crate::domain::{now_ms, ApnsEnvironment, Platform, Target};
use crate::event::{check_identity, check_params, CallEvent, StreamEntry};

/// callpush: push notification gateway for incoming calls.
#[derive(Debug, Parser)]
#[command(name = "callpush", version, about)]
pub struct Cli {
    /// Log format: json (default when stderr is not a terminal) or pretty.
    #[arg(long, global = true, value_enum, env = "CALLPUSH_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Pretty,
}

/// The configuration file option, shared by every command.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// TOML configuration file (every key can be overridden with CALLPUSH_ variables).
    #[arg(long, short = 'c', env = "CALLPUSH_CONFIG")]
    pub config: Option<PathBuf>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: consume call events and push to devices until SIGINT/SIGTERM.
    Serve(ConfigArg),
    /// Run the whole gateway locally with no accounts: the daemon on an in-memory backend (or
    /// --redis), simulated APNs and FCM, generated credentials, and a printed walkthrough.
    Dev(DevArgs),
    /// Inspect and change device bindings.
    #[command(subcommand)]
    Bindings(BindingsCommand),
    /// Add a call event to the calls stream (what a call server does with XADD).
    Enqueue(EnqueueArgs),
    /// Inspect, replay and purge dead letters (in Redis, or through a daemon's admin API with
    /// --admin URL).
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Check a configuration before a deploy: it validates, Redis answers and lets the user run
    /// every command callpush needs, and each credential's key works (no device is pushed).
    Check(CheckArgs),
    /// Mint an access token with the first configured API key, for trying the API (real
    /// backends mint with their own libraries).
    Token(TokenArgs),
}

/// `callpush dev`
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Write the generated config, keys and secrets here and keep them on exit (default: a new
    /// temp directory, removed on exit).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Use this Redis instead of the in-memory backend (so a call server's `XADD` and `callpush
    /// dlq` without --admin work).
    #[arg(long)]
    redis: Option<String>,
    /// The public API's address (default 127.0.0.1:8080, or a free port when it is taken).
    #[arg(long)]
    api_listen: Option<String>,
    /// The admin API's address (default 127.0.0.1:9090, or a free port when it is taken).
    #[arg(long)]
    admin_listen: Option<String>,
}

/// `callpush check`
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// As one JSON object (`{"ok", "checks": [{"subject", "ok", "detail", "fix"}]}`).
    #[arg(long)]
    json: bool,
    /// Leave Redis out: for a daemon that keeps no Redis (`callpush dev` without --redis,
    /// whose configuration's [redis] nobody uses).
    #[arg(long)]
    skip_redis: bool,
}

/// `callpush token`
#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The identity the token proves.
    #[arg(long)]
    identity: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl_secs: u64,
    /// The push credential SID for grants.voice.push_credential_sid.
    #[arg(long)]
    credential: Option<String>,
}

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

/// `callpush enqueue`
#[derive(Debug, Args)]
pub struct EnqueueArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The callee's identity.
    #[arg(long)]
    to: String,
    /// incoming or cancel.
    #[arg(long = "type", default_value = "incoming")]
    kind: String,
    /// The call's id (the idempotency key).
    #[arg(long)]
    call_sid: String,
    /// The caller, shown to the callee.
    #[arg(long)]
    from: Option<String>,
    /// How long the push stays useful, in milliseconds.
    #[arg(long)]
    ttl_ms: Option<u64>,
    /// Restrict the fan-out to one push credential.
    #[arg(long)]
    credential: Option<String>,
    /// A JSON object of string values passed through to the device.
    #[arg(long)]
    params: Option<String>,
    /// Print `{"id": …}` instead of a sentence.
    #[arg(long)]
    json: bool,
}

/// Why a command failed; `main` prints it as one line and exits non-zero.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The daemon could not start.
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    /// A listener could not be bound.
    #[error(transparent)]
    Bind(#[from] crate::api::BindError),
    /// A Redis command failed.
    #[error(transparent)]
    Store(#[from] crate::backend::BackendError),
    /// A token cannot be minted.
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthConfigError),
    /// An argument is invalid.
    #[error("{0}")]
    Usage(String),
    /// Nothing matched.
    #[error("{0}")]
    NotFound(String),
    /// A dead-letter command failed.
    #[error(transparent)]
    Dlq(#[from] crate::dlq::DlqError),
    /// `callpush dev` failed.
    #[error(transparent)]
    Dev(#[from] crate::dev::DevError),
    /// The signal handlers could not be installed.
    #[error("cannot listen for SIGTERM/SIGINT: {0}")]
    Signal(#[source] std::io::Error),
    /// `callpush check` found problems (each printed on its own line before).
    #[error("check found {0} problem(s)")]
    Check(usize),
    /// The admin API (`callpush dlq --admin`) failed or refused.
    #[error(transparent)]
    Admin(#[from] dlq::admin::AdminError),
}

/// Run a parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    // The daemons listen for signals before anything else, so a SIGTERM at any moment after
    // start stops them cleanly (a `callpush dev` temp dir removed) rather than killing them.
    let shutdown = CancellationToken::new();
    if matches!(cli.command, Command::Serve(_) | Command::Dev(_)) {
        stop_on_signal(shutdown.clone()).map_err(CliError::Signal)?;
    }
    match cli.command {
        Command::Serve(args) => {
            let settings = Settings::load(args.config.as_deref())?;
            let listeners = daemon::Listeners::bind(&settings).await?;
            daemon::run(settings, listeners, shutdown).await?;
            Ok(())
        }
        Command::Dev(args) => {
            let options = crate::dev::DevOptions {
                data_dir: args.data_dir,
                redis: args.redis,
                api_listen: args.api_listen,
                admin_listen: args.admin_listen,
            };
            crate::dev::run(options, shutdown).await?;
            Ok(())
        }
        Command::Check(args) => {
            check::run(args.config.config.as_deref(), args.json, args.skip_redis).await
        }
        Command::Bindings(cmd) => bindings(cmd).await,
        Command::Enqueue(args) => enqueue(args).await,
        Command::Dlq(cmd) => dlq::run(cmd).await,
        Command::Token(args) => {
            let settings = Settings::load(args.config.config.as_deref())?;
            check_identity(&args.identity)
                .map_err(|p| CliError::Usage(format!("--identity {p}")))?;
            let token = crate::auth::mint(
                &settings,
                &args.identity,
                args.ttl_secs,
                args.credential.as_deref(),
                now_ms() / 1000,
            )?;
            println!("{token}");
            Ok(())
        }
    }
}

/// Cancel `shutdown` on SIGINT or SIGTERM. The handlers are installed before this returns
/// (a signal from then on is never lost, nor does it kill the process); a task waits for them.
/// Only for the daemons: once installed, a signal no longer ends the process by itself.
pub fn stop_on_signal(shutdown: CancellationToken) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::spawn(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            tracing::info!("shutdown signal received");
            shutdown.cancel();
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown signal received");
        shutdown.cancel();
    });
    Ok(())
}

fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

async fn bindings(cmd: BindingsCommand) -> Result<(), CliError> {
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

async fn enqueue(a: EnqueueArgs) -> Result<(), CliError> {
    let settings = Settings::load(a.config.config.as_deref())?;
    let mut fields = vec![
        ("type".to_string(), a.kind),
        ("to".to_string(), a.to),
        ("call_sid".to_string(), a.call_sid),
    ];
    if let Some(from) = a.from {
        fields.push(("from".into(), from));
    }
    if let Some(ttl) = a.ttl_ms {
        fields.push(("ttl_ms".into(), ttl.to_string()));
    }
    if let Some(credential) = a.credential {
        fields.push(("credential".into(), credential));
    }
    if let Some(params) = a.params {
        check_params(&params).map_err(|p| CliError::Usage(format!("--params {p}")))?;
        fields.push(("params".into(), params));
    }
    // The same validation the consumer applies, so a typo fails here and not as a dead letter.
    let probe = StreamEntry {
        id: format!("{}-0", now_ms()),
        fields: fields.clone(),
    };
    CallEvent::parse(&probe)
        .map_err(|e| CliError::Usage(format!("--{} {}", e.field.replace('_', "-"), e.problem)))?;
    let (queue, _) = daemon::redis_backends(&settings).await?;
    let id = queue.enqueue(&fields).await?;
    if a.json {
        println!("{}", serde_json::json!({ "id": id }));
    } else {
        let event = CallEvent::parse(&StreamEntry {
            id: id.clone(),
            fields,
        })
        .map_err(|e| CliError::Usage(e.to_string()))?;
        println!(
            "enqueued {id}: {} call {} to {}",
            event.kind().as_str(),
            event.call_sid(),
            event.to()
        );
    }
    Ok(())
}
