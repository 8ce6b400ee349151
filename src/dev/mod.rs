//! `callpush dev`: the whole gateway on one machine with one command. It writes what a real
//! deployment is given — an admin token, an API key and secret, an APNs `.p8` key and an FCM
//! service account (the development keys of [`callpush_sim`]) and a config naming them — into a
//! data directory, starts the simulated APNs and FCM servers, and runs the real daemon
//! ([`daemon::run_with`]) on the in-memory backend (or on Redis with `--redis`), printing a
//! walkthrough ([`walkthrough`]) whose commands work as printed.
//!
//! A temp data directory is removed on exit; a `--data-dir` given by the user is kept.

mod files;
mod walkthrough;

#[cfg(test)]
mod sim_tests;

use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, Settings};
use crate::daemon::{self, DaemonError, Listeners};
use callpush_sim::Simulators;

pub use files::{DevFiles, ProviderUrls, DEV_APNS_SID, DEV_FCM_SID};

/// Where the public API listens unless told otherwise (port 0 when it is taken).
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:8080";
/// Where the admin API listens unless told otherwise (port 0 when it is taken).
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";

/// What `callpush dev` was asked for.
#[derive(Debug, Clone, Default)]
pub struct DevOptions {
    /// Keep the generated files here (created when missing, kept on exit); default: a new temp
    /// directory, removed on exit.
    pub data_dir: Option<PathBuf>,
    /// Run on this Redis instead of the in-memory backend.
    pub redis: Option<String>,
    /// The public listener's address (default [`DEFAULT_API_LISTEN`]).
    pub api_listen: Option<String>,
    /// The admin listener's address (default [`DEFAULT_ADMIN_LISTEN`]).
    pub admin_listen: Option<String>,
}

/// Why `callpush dev` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// The data directory or a file in it could not be written.
    #[error("data dir {path}: {source}")]
    DataDir {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// A listener could not be bound.
    #[error("{what} {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address asked for.
        addr: String,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The simulators could not start.
    #[error("provider simulators: {0}")]
    Simulators(#[source] std::io::Error),
    /// The generated configuration did not load (a bug, or a `CALLPUSH_` variable in the way).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The daemon failed.
    #[error(transparent)]
    Daemon(#[from] DaemonError),
}

/// Bind `asked`, or the default falling back to port 0 when the default is taken.
async fn bind(
    what: &'static str,
    asked: Option<&str>,
    default: &str,
) -> Result<TcpListener, DevError> {
    let addr = asked.unwrap_or(default);
    match TcpListener::bind(addr).await {
        Ok(listener) => Ok(listener),
        Err(_) if asked.is_none() => {
            TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|source| DevError::Bind {
                    what,
                    addr: "127.0.0.1:0".into(),
                    source,
                })
        }
        Err(source) => Err(DevError::Bind {
            what,
            addr: addr.into(),
            source,
        }),
    }
}

fn local(listener: &TcpListener) -> Result<SocketAddr, DevError> {
    listener.local_addr().map_err(|source| DevError::Bind {
        what: "listener",
        addr: "?".into(),
        source,
    })
}

/// Run `callpush dev` until `shutdown` is cancelled; prints the walkthrough on stdout once the
/// daemon is about to serve.
pub async fn run(options: DevOptions, shutdown: CancellationToken) -> Result<(), DevError> {
    // Stopped before it started (a SIGTERM right after launch): nothing to set up or remove.
    if shutdown.is_cancelled() {
        return Ok(());
    }
    let api = bind(
        "api.listen",
        options.api_listen.as_deref(),
        DEFAULT_API_LISTEN,
    )
    .await?;
    let admin = bind(
        "admin.listen",
        options.admin_listen.as_deref(),
        DEFAULT_ADMIN_LISTEN,
    )
    .await?;
    let (api_addr, admin_addr) = (local(&api)?, local(&admin)?);
    let sims = Simulators::start().await.map_err(DevError::Simulators)?;
    let files = DevFiles::create(options.data_dir.clone())?;
    let result = async {
        let config = files.write_config(&sims, api_addr, admin_addr, options.redis.as_deref())?;
        let settings = Settings::load(Some(&config))?;
        let backends = match &options.redis {
            // A Redis that does not answer must not keep a SIGTERM waiting.
            Some(_) => tokio::select! {
                backends = daemon::redis_backend(&settings) => backends?,
                _ = shutdown.cancelled() => return Ok(()),
            },
            None => daemon::memory_backend(&settings),
        };
        println!(
            "{}",
            walkthrough::text(
                &files,
                &sims,
                api_addr,
                admin_addr,
                options.redis.as_deref()
            )
        );
        let listeners = Listeners { api, admin };
        daemon::run_with(settings, backends, listeners, shutdown).await?;
        Ok(())
    }
    .await;
    drop(sims);
    files.clean_up();
    result
}
