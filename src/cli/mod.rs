//! The `callpush` command line: `serve`, `dev`, plus operator commands that work on the same
//! Redis (`bindings add|list|delete`, `enqueue`, `dlq list|show|replay|purge` in [`dlq`], which
//! can also go through a daemon's admin API with `--admin`). Operator
//! output is for people by default (tables, one-line answers; [`output`]) and JSON with
//! `--json`. `main.rs` only parses and calls [`run`].

mod bindings;
pub mod check;
pub mod dlq;
mod enqueue;
mod feed;
pub mod output;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, Settings};
use crate::daemon::{self, DaemonError};
use crate::domain::now_ms;
use crate::event::check_identity;

pub use bindings::{BindingAddArgs, BindingDeleteArgs, BindingListArgs, BindingsCommand};
pub use enqueue::EnqueueArgs;

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
        Command::Bindings(cmd) => bindings::run(cmd).await,
        Command::Enqueue(args) => enqueue::run(args).await,
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
