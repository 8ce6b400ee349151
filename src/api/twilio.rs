//! `POST /v1/twilio/call-notifications`: Twilio's Client Call Notification Webhook (SPEC §10).
//!
//! In order: the route is off (404) without a configured auth token; the body must be a form
//! (415) within the body limit (413) that decodes (400); `X-Twilio-Signature` must verify
//! against one of the auth tokens (403, counted, logged once a minute per source address,
//! never with the token or the signature); the fields must be a call notification (400 naming
//! the field) of this account (403); the callee must have a live binding (404: Twilio treats
//! the client as unreachable at once). Then the event goes on the calls stream, once per
//! `twi_message_id` within the ring ttl, and the answer is 200 — also for a retry Twilio sent
//! because it missed the first answer. See [`crate::twilio`] for how the `twi_*` fields travel.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::ExtensionRejection;
use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tracing::{debug, info, warn};

use super::error::ApiError;
use super::ApiContext;
use crate::twilio::form::{self, WebhookCall};
use crate::twilio::{signature, Webhook};

/// The header Twilio signs its requests with.
pub const SIGNATURE_HEADER: &str = "x-twilio-signature";

const FORM: &str = "application/x-www-form-urlencoded";

/// The webhook handler: every answer is counted by status.
pub async fn call_notification(
    State(ctx): State<Arc<ApiContext>>,
    peer: Result<ConnectInfo<SocketAddr>, ExtensionRejection>,
    request: Request,
) -> Response {
    // Without connection info (a router driven in-process) failures log as from 0.0.0.0.
    let peer = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ConnectInfo(a)| a.ip());
    let response = match answer(&ctx, peer, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    };
    ctx.metrics.twilio.webhook(response.status().as_u16());
    response
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(FORM))
}

async fn answer(ctx: &ApiContext, peer: IpAddr, request: Request) -> Result<Response, ApiError> {
    let Some(webhook) = ctx.auth.twilio() else {
        return Err(ApiError::NotFound(
            "the Twilio webhook is off: no twilio auth token is configured".into(),
        ));
    };
    if !is_form(request.headers()) {
        return Err(ApiError::UnsupportedMediaType(
            "a form (Content-Type: application/x-www-form-urlencoded)",
        ));
    }
    let presented = request
        .headers()
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = Bytes::from_request(request, &())
        .await
        .map_err(super::extract::body_rejection)?;
    let fields = form::parse(&body).map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    check_signature(ctx, webhook, peer, presented.as_deref(), &fields)?;
    let call =
        WebhookCall::from_fields(fields).map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    if webhook.account_sid != call.field("twi_account_sid") {
        return Err(ApiError::Forbidden(
            "field `twi_account_sid` is not this service's account (auth.account_sid)".into(),
        ));
    }
    if ctx.store.list(&call.callee).await?.is_empty() {
        debug!(callee = %call.callee, "Twilio webhook for an identity without bindings");
        return Err(ApiError::NotFound(format!(
            "identity {:?} has no registered device",
            call.callee
        )));
    }
    let once_key = format!("twilio:{}", call.field("twi_message_id"));
    let fields = call.stream_fields(webhook.ring_ttl_ms);
    let added = ctx
        .queue
        .enqueue_once(&once_key, webhook.ring_ttl_ms, &fields)
        .await?;
    let call_sid = call.field("twi_call_sid");
    match &added {
        Some(id) => {
            info!(id = %id, call_sid, to = %call.callee, "Twilio call notification enqueued")
        }
        None => {
            info!(call_sid, to = %call.callee, "Twilio call notification retried; already enqueued")
        }
    }
    let body = serde_json::json!({"call_sid": call_sid, "id": added, "duplicate": added.is_none()});
    Ok((StatusCode::OK, Json(body)).into_response())
}

fn check_signature(
    ctx: &ApiContext,
    webhook: &Webhook,
    peer: IpAddr,
    presented: Option<&str>,
    fields: &[(String, String)],
) -> Result<(), ApiError> {
    let valid =
        presented.is_some_and(|sig| signature::verify(&webhook.tokens, &webhook.url, fields, sig));
    if valid {
        return Ok(());
    }
    ctx.metrics.twilio.signature_failure();
    if webhook.failures.should_log(peer, Instant::now()) {
        warn!(address = %peer, header_present = presented.is_some(),
            "Twilio webhook signature did not verify (check twilio.webhook_url and the auth \
             token); further failures from this address are not logged for a minute");
    }
    Err(ApiError::Forbidden(match presented {
        None => "the request needs an `X-Twilio-Signature` header".into(),
        Some(_) => "the `X-Twilio-Signature` header does not match the request".into(),
    }))
}
