//! `POST /v1/calls/{call_sid}/ack` (SPEC §3, §11): the callee's app says a push woke it.
//!
//! Checks, in order: the address limit (middleware) and the access token; the body (the device,
//! as a registration names it) with the identity's registration limit; then the push ledger
//! must say a provider accepted a push of this call to this device, and the call is not over
//! (the ledger forgets a call [`CLAIM_MARGIN_MS`](crate::dispatch::ledger::CLAIM_MARGIN_MS) after its deadline: the grace period), else
//! 404; and the device must be registered for the token's identity (the call's callee), else
//! 403. The first ack of a device counts: `callpush_device_wake_seconds`,
//! `callpush_device_acks_total` and one entry on `<p>acks` (`call_sid`, `to`, `binding_id`,
//! `platform`, `credential`, `pushed_ms`, `acked_ms`, capped with `MAXLEN ~`); later ones are
//! answered 204 and add nothing. An ack never touches the event's outcome.
//!
//! With the in-memory backend the entries are kept in memory instead ([`super::ack_log`]);
//! `GET /v1/acks` (admin) reads them on either backend.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use tracing::{info, warn};

use super::ack_log::AckEntry;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath};
use super::registrations::{device_of, AccessToken, Device, RegistrationBody};
use super::ApiContext;
use crate::dispatch::ledger::{device_key, Acked};
use crate::domain::{mask_device_token, now_ms, PushKind};
use crate::event::MAX_CALL_SID_BYTES;

/// `POST /v1/calls/{call_sid}/ack`: 204, 404 when the device was not pushed for the call (or
/// the call is over), 403 when the device is not the token's identity's.
pub async fn ack(
    State(ctx): State<Arc<ApiContext>>,
    ApiPath(call_sid): ApiPath<String>,
    AccessToken(token): AccessToken,
    ApiJson(body): ApiJson<RegistrationBody>,
) -> Result<StatusCode, ApiError> {
    if call_sid.is_empty()
        || call_sid.len() > MAX_CALL_SID_BYTES
        || call_sid.chars().any(char::is_control)
    {
        return Err(ApiError::InvalidRequest(format!(
            "call_sid: 1 to {MAX_CALL_SID_BYTES} bytes without control characters"
        )));
    }
    let Device {
        address: device_token,
        credential,
        ..
    } = device_of(&ctx, &token, &body)?;
    let masked = mask_device_token(&device_token);
    let not_pushed = || {
        ApiError::NotFound(format!(
            "call {call_sid} pushed no device {masked} of {} under credential {credential}, \
             or it is over",
            body.platform
        ))
    };
    let Some(ledger) = &ctx.ledger else {
        return Err(not_pushed());
    };
    let device = device_key(PushKind::Incoming, &credential, &device_token);
    // Whose device it is first: another identity's ack must not use up the device's one ack.
    let bindings = ctx.store.list(&token.identity).await?;
    let binding = bindings
        .iter()
        .find(|b| b.credential == credential && b.device_token == device_token);
    let acked_ms = now_ms();
    let Some(binding) = binding else {
        return Err(
            match ledger.ack(&call_sid, &device, acked_ms, false).await? {
                Acked::First(_) | Acked::Again => ApiError::Forbidden(format!(
                    "device {masked} is not registered for {:?}: only the callee acks a call",
                    token.identity
                )),
                Acked::NotPushed => not_pushed(),
            },
        );
    };
    let entry = match ledger.ack(&call_sid, &device, acked_ms, true).await? {
        Acked::NotPushed => return Err(not_pushed()),
        Acked::Again => return Ok(StatusCode::NO_CONTENT),
        Acked::First(entry) => entry,
    };
    let pushed_ms = entry
        .as_deref()
        .and_then(|id| id.split('-').next()?.parse::<u64>().ok());
    let wake_secs = pushed_ms.map(|p| acked_ms.saturating_sub(p) as f64 / 1000.0);
    ctx.metrics
        .acks
        .acked(body.platform, &credential, wake_secs);
    info!(call_sid = %call_sid, identity = %token.identity, platform = %body.platform,
        credential = %credential, device_token = %masked, wake_ms = pushed_ms.map(|p| acked_ms.saturating_sub(p)),
        "device acked a call");
    let added = ctx
        .acks
        .add(AckEntry {
            id: String::new(),
            call_sid: call_sid.clone(),
            to: token.identity.clone(),
            binding_id: binding.binding_id.clone(),
            platform: body.platform.as_str().to_string(),
            credential: credential.clone(),
            pushed_ms,
            acked_ms,
        })
        .await;
    if let Err(e) = added {
        // Counted already, and a repeat would find the ack recorded: the entry is lost.
        warn!(error = %e, call_sid = %call_sid, "could not add a device ack to the acks stream");
    }
    Ok(StatusCode::NO_CONTENT)
}
