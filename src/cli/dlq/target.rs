//! Where `callpush dlq` finds the dead letters: Redis (`redis.url` of `--config`, the default)
//! or a daemon's admin API (`--admin`, see [`super::admin`]). Both answer with the same entries
//! and summaries, so the commands print the same either way; only a replay's progress differs
//! (the admin API reports once, at the end).

use clap::Args;

use super::admin::AdminClient;
use crate::cli::{CliError, ConfigArg};
use crate::config::Settings;
use crate::daemon;
use crate::dlq::{
    Action, ActionSummary, DeadEntry, DeadLetters, Filter, Progress, ReplayOptions, Selection,
    Summary,
};

/// The options every `dlq` command shares: the configuration, and where to go.
#[derive(Debug, Args)]
pub struct TargetArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Go through this daemon's admin API (http://host:port, its admin.listen) instead of
    /// Redis: for `callpush dev` in memory, or without access to Redis (kubectl port-forward).
    /// The admin token comes from admin.token_file of --config or CALLPUSH_ADMIN_TOKEN.
    #[arg(long, value_name = "URL")]
    admin: Option<String>,
}

/// The dead letters of Redis, or of a daemon through its admin API.
pub enum Target {
    /// `<p>dead` in Redis.
    Redis(DeadLetters),
    /// A daemon's `/v1/dead-letters…`.
    Admin(AdminClient),
}

impl TargetArgs {
    /// Load the settings and open the dead letters they (or `--admin`) point at.
    pub async fn open(&self) -> Result<Target, CliError> {
        let settings = Settings::load(self.config.config.as_deref())?;
        match &self.admin {
            Some(url) => {
                let token = crate::auth::admin_token(&settings)?;
                Ok(Target::Admin(AdminClient::new(url, token)?))
            }
            None => Ok(Target::Redis(daemon::dead_letters(&settings).await?)),
        }
    }
}

impl Target {
    /// One dead letter.
    pub async fn get(&self, id: &str) -> Result<DeadEntry, CliError> {
        Ok(match self {
            Target::Redis(d) => d.get(id).await?,
            Target::Admin(a) => a.get(id).await?,
        })
    }

    /// The matches of `filter` after `after`, the first `limit` handed to `show`.
    pub async fn list(
        &self,
        filter: &Filter,
        after: Option<&str>,
        limit: usize,
        show: &mut (dyn FnMut(&DeadEntry) + Send),
    ) -> Result<Summary, CliError> {
        Ok(match self {
            Target::Redis(d) => d.list(filter, after, limit, show).await?,
            Target::Admin(a) => a.list(filter, after, limit, show).await?,
        })
    }

    /// Replay or purge (`options.dry_run` for both; the rest for replays).
    pub async fn act(
        &self,
        action: Action,
        selection: &Selection,
        options: &ReplayOptions,
        progress: Progress<'_>,
    ) -> Result<ActionSummary, CliError> {
        Ok(match (self, action) {
            (Target::Redis(d), Action::Replay) => d.replay(selection, options, progress).await?,
            (Target::Redis(d), Action::Purge) => {
                d.purge(selection, options.dry_run, progress).await?
            }
            (Target::Admin(a), _) => {
                let summary = a.act(action, selection, options).await?;
                progress(&summary);
                summary
            }
        })
    }
}
