//! `callpush enqueue`: add a call event to the calls stream, as a call server does with XADD,
//! checked first the way the consumer will check it.

use clap::Args;

use super::{CliError, ConfigArg};
use crate::config::Settings;
use crate::daemon;
use crate::domain::now_ms;
use crate::event::{check_params, CallEvent, StreamEntry};

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

pub(super) async fn run(a: EnqueueArgs) -> Result<(), CliError> {
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
    let probe = StreamEntry::from_slice(format!("{}-0", now_ms()), &fields);
    CallEvent::parse(&probe)
        .map_err(|e| CliError::Usage(format!("--{} {}", e.field.replace('_', "-"), e.problem)))?;
    let (queue, _) = daemon::redis_backends(&settings).await?;
    let id = queue.enqueue(&fields).await?;
    if a.json {
        println!("{}", serde_json::json!({ "id": id }));
    } else {
        let event = CallEvent::parse(&StreamEntry::from_slice(id.clone(), &fields))
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
