//! `callpush dlq list|show|replay|purge`: the dead-letter stream for on-call engineers, over
//! the same [`crate::dlq`] code as the admin routes — on Redis, or through a daemon's admin API
//! with `--admin` ([`target`]). Tables by default, `--json` lines on
//! request; replays and purges end with a summary, ask before touching more than
//! [`CONFIRM_OVER`] entries (purges: any), and refuse without a terminal unless `--yes`.

use clap::{Args, Subcommand};

pub mod admin;
mod print;
mod target;

use super::output::{self, Progress, Table};
use super::CliError;
use crate::dlq::{self, Action, ActionSummary, Filter, ReplayOptions, Selection};
use crate::domain::now_ms;
use print::{list_row, print_entry, print_list_summary, summary_line};
use target::{Target, TargetArgs};

/// Replays of more entries than this ask first (or need `--yes`).
pub const CONFIRM_OVER: u64 = 10;

const REPLAY_EXAMPLES: &str = "\
Examples (after fixing the cause, e.g. a revoked APNs key):
  callpush dlq list --reason provider_rejected
  callpush dlq replay --reason provider_rejected --since 1h --dry-run
  callpush dlq replay --reason provider_rejected --since 1h
  callpush dlq replay --reason provider_rejected --admin http://127.0.0.1:9090   (through a daemon)
Incoming calls whose deadline passed and malformed entries are skipped unless --force.
A replay cut off half-way is safe to run again: each entry is replayed at most once.";

/// `callpush dlq …`
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters, oldest first, with a summary (count per reason, oldest, newest).
    List(ListArgs),
    /// Show every field of one dead letter.
    Show(ShowArgs),
    /// Put dead letters back on the calls stream (atomically per entry) and remove them.
    #[command(after_help = REPLAY_EXAMPLES)]
    Replay(ReplayArgs),
    /// Delete dead letters.
    Purge(PurgeArgs),
}

/// The filters `list` and `replay` share.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Only this reason (expired, malformed, retries_exhausted, provider_rejected, rate_limited, store_error).
    #[arg(long)]
    reason: Option<String>,
    /// Dead-lettered since: a duration back from now (30m, 1h, 2d), an RFC 3339 time or a
    /// stream id.
    #[arg(long)]
    since: Option<String>,
    /// Dead-lettered until (same forms as --since).
    #[arg(long)]
    until: Option<String>,
    /// Only calls to this identity.
    #[arg(long)]
    to: Option<String>,
    /// Only this call.
    #[arg(long)]
    call_sid: Option<String>,
}

impl FilterArgs {
    fn filter(self) -> Result<Filter, CliError> {
        Ok(Filter {
            reason: self.reason,
            to: self.to,
            call_sid: self.call_sid,
            ..Filter::default()
        }
        .with_since("--since", self.since.as_deref())?
        .with_until("--until", self.until.as_deref())?)
    }
}

/// `callpush dlq list`
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    filter: FilterArgs,
    /// Show at most this many (all matches are still counted in the summary).
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Start after this dead-letter id (the summary's `next after`).
    #[arg(long)]
    after: Option<String>,
    /// One JSON object per line, the summary last.
    #[arg(long)]
    json: bool,
}

/// `callpush dlq show`
#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// The dead letter's id (the ID column of `dlq list`).
    id: String,
    /// As JSON.
    #[arg(long)]
    json: bool,
}

/// `callpush dlq replay`
#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Dead-letter ids to replay (or use --reason / --all).
    ids: Vec<String>,
    #[command(flatten)]
    filter: FilterArgs,
    /// Every dead letter (narrowed by the other filters).
    #[arg(long)]
    all: bool,
    /// Count what would be replayed; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// The replayed events' ttl_ms (default: each event's own, else 30000).
    #[arg(long)]
    ttl_ms: Option<u64>,
    /// Also replay incoming calls whose deadline passed, and malformed entries.
    #[arg(long)]
    force: bool,
    /// Leave the dead letters in place.
    #[arg(long)]
    keep: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

/// `callpush dlq purge`
#[derive(Debug, Args)]
pub struct PurgeArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Dead-letter ids to delete (or use --reason / --before / --all).
    ids: Vec<String>,
    /// Only this reason.
    #[arg(long)]
    reason: Option<String>,
    /// Dead-lettered before this time (a duration back from now, an RFC 3339 time, a stream id).
    #[arg(long)]
    before: Option<String>,
    /// Only calls to this identity.
    #[arg(long)]
    to: Option<String>,
    /// Every dead letter (narrowed by the other filters).
    #[arg(long)]
    all: bool,
    /// Count what would be deleted; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Delete without asking (needed without a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

/// Run a `dlq` command.
pub async fn run(cmd: DlqCommand) -> Result<(), CliError> {
    match cmd {
        DlqCommand::List(a) => list(a).await,
        DlqCommand::Show(a) => {
            let store = a.target.open().await?;
            let entry = store.get(&a.id).await?;
            if a.json {
                println!("{}", entry.to_json());
            } else {
                print_entry(&entry);
            }
            Ok(())
        }
        DlqCommand::Replay(a) => replay(a).await,
        DlqCommand::Purge(a) => purge(a).await,
    }
}

async fn list(a: ListArgs) -> Result<(), CliError> {
    let filter = a.filter.filter()?;
    let store = a.target.open().await?;
    let now = now_ms();
    let summary = if a.json {
        store
            .list(&filter, a.after.as_deref(), a.limit, &mut |e| {
                println!("{}", e.to_json())
            })
            .await?
    } else {
        let table = Table::new(&[
            ("ID", 20),
            ("AGE", 4),
            ("REASON", 17),
            ("TYPE", 8),
            ("TO", 14),
            ("CALL_SID", 18),
            ("ATT", 3),
            ("DETAIL", 12),
        ]);
        store
            .list(&filter, a.after.as_deref(), a.limit, &mut |e| {
                table.row(&list_row(e, now))
            })
            .await?
    };
    if a.json {
        println!("{}", serde_json::json!({ "summary": summary }));
    } else {
        print_list_summary(&summary);
    }
    Ok(())
}

/// Unless this is a dry run or `yes`: count the selection with a dry run of `options` and
/// have the operator approve it (replays over [`CONFIRM_OVER`] entries, purges of any).
/// Returns the count, for the progress bar.
async fn counted(
    store: &Target,
    action: Action,
    selection: &Selection,
    options: &ReplayOptions,
    yes: bool,
) -> Result<Option<u64>, CliError> {
    if options.dry_run || yes {
        return Ok(None);
    }
    let dry = ReplayOptions {
        dry_run: true,
        ..*options
    };
    let n = store.act(action, selection, &dry, &mut |_| {}).await?.done;
    let needed = match action {
        Action::Replay => n > CONFIRM_OVER,
        Action::Purge => n > 0,
    };
    approve(n, action, needed).map(Some)
}

/// Ask about `n` entries (counted by a dry run), or refuse without a terminal, when `needed`.
/// Returns the count, for the progress bar.
fn approve(n: u64, action: Action, needed: bool) -> Result<u64, CliError> {
    if !needed {
        return Ok(n);
    }
    let verb = match action {
        Action::Replay => "replay",
        Action::Purge => "purge",
    };
    if !output::interactive() {
        return Err(CliError::Usage(format!(
            "refusing to {verb} {n} dead {} without --yes (no terminal to confirm on)",
            letters(n)
        )));
    }
    if output::confirm(&format!("{verb} {n} dead {}?", letters(n))) {
        Ok(n)
    } else {
        Err(CliError::Usage(format!("{verb} cancelled")))
    }
}

fn letters(n: u64) -> &'static str {
    if n == 1 {
        "letter"
    } else {
        "letters"
    }
}

async fn replay(a: ReplayArgs) -> Result<(), CliError> {
    let filter = a.filter.filter()?;
    let selection = dlq::select(a.ids, filter, a.all)?;
    let options = ReplayOptions {
        dry_run: a.dry_run,
        force: a.force,
        keep: a.keep,
        ttl_ms: a.ttl_ms,
    };
    let store = a.target.open().await?;
    let total = counted(&store, Action::Replay, &selection, &options, a.yes).await?;
    act(&store, &selection, Action::Replay, &options, total, a.json).await
}

async fn purge(a: PurgeArgs) -> Result<(), CliError> {
    let filter = Filter {
        reason: a.reason,
        to: a.to,
        ..Filter::default()
    }
    .with_until("--before", a.before.as_deref())?;
    let all = a.all || filter.until.is_some();
    let selection = dlq::select(a.ids, filter, all)?;
    let store = a.target.open().await?;
    let options = ReplayOptions {
        dry_run: a.dry_run,
        ..ReplayOptions::default()
    };
    let total = counted(&store, Action::Purge, &selection, &options, a.yes).await?;
    act(&store, &selection, Action::Purge, &options, total, a.json).await
}

async fn act(
    store: &Target,
    selection: &Selection,
    action: Action,
    options: &ReplayOptions,
    total: Option<u64>,
    json: bool,
) -> Result<(), CliError> {
    let mut progress = Progress::new(total);
    let mut update = |s: &ActionSummary| progress.update(s);
    let summary = store.act(action, selection, options, &mut update).await?;
    progress.finish();
    if json {
        println!("{}", summary.to_json());
    } else {
        println!("{}", summary_line(&summary));
    }
    match &summary.error {
        Some(e) => Err(CliError::Usage(format!(
            "stopped after {} entries: {e}",
            summary.processed()
        ))),
        None => Ok(()),
    }
}
