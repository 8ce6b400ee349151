//! `callpush bindings events`: the binding feed (SPEC §11, `<p>binding-events`), oldest first,
//! optionally following new events as they come.

use std::time::Duration;

use clap::Args;

use super::{CliError, ConfigArg};
use crate::bindings::feed::FeedEvent;
use crate::bindings::BindingStore;
use crate::config::Settings;
use crate::daemon;
use crate::domain::mask_device_token;

/// How often `--follow` looks for new events.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

/// `callpush bindings events`
#[derive(Debug, Args)]
pub struct BindingEventsArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Start after this event id (as printed); default: the oldest event kept.
    #[arg(long)]
    after: Option<String>,
    /// At most this many events (without --follow).
    #[arg(long, default_value_t = 1000)]
    limit: usize,
    /// Keep printing new events as they are added, until interrupted.
    #[arg(long)]
    follow: bool,
    /// One JSON object per line, device tokens in full.
    #[arg(long)]
    json: bool,
}

/// Print the feed.
pub async fn events(a: BindingEventsArgs) -> Result<(), CliError> {
    let settings = Settings::load(a.config.config.as_deref())?;
    let (_, store) = daemon::redis_backends(&settings).await?;
    let mut after = a.after;
    let mut left = a.limit;
    loop {
        let page = if a.follow { 1000 } else { left.min(1000) };
        let events = store.feed(after.as_deref(), page).await?;
        for event in &events {
            print_event(event, a.json);
        }
        if let Some(last) = events.last() {
            after = Some(last.id.clone());
        }
        if !a.follow {
            left -= events.len();
            if events.len() < page || left == 0 {
                return Ok(());
            }
            continue;
        }
        if events.is_empty() {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(()),
                _ = tokio::time::sleep(FOLLOW_EVERY) => {}
            }
        }
    }
}

fn print_event(event: &FeedEvent, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string(event).unwrap_or_else(|_| "{}".into())
        );
        return;
    }
    let reason = match (&event.to, event.reason.as_str()) {
        (Some(to), _) => format!("to {to}"),
        (None, "") => "-".into(),
        (None, reason) => reason.to_string(),
    };
    println!(
        "{}  {:<24}  {:<12}  {:<4}  {:<18}  {}  {}  {}  {}",
        event.id,
        event.at,
        event.event,
        event.platform,
        event.credential,
        event.identity,
        event.binding_id,
        mask_device_token(&event.device_token),
        reason
    );
}
