//! `POST /v1/twilio/call-notifications`: Twilio's Client Call Notification Webhook (SPEC §10).
//!
//! In order: the route is off (404) without a configured signing secret; the body must be JSON
//! (how Twilio sends it) or a form (415) within the body limit (413); a form must decode (400);
//! the signature must verify as Twilio's libraries check it — over the URL with the request's
//! query, the body's `bodySHA256` for JSON, with an auth token or a SharedKey
//! ([`crate::twilio::signature`]) — else 403, counted and logged once a minute per source
//! address, never with the secret or the signature; a JSON body must then be one object of
//! string fields (400 naming what is wrong); the fields must be a call notification (400 naming
//! the field) of this account (403); the callee must have a live binding (404: Twilio treats
//! the client as unreachable at once). Then the event goes on the calls stream, once per
//! `twi_message_id` and per `I-Twilio-Idempotency-Token` within the ring ttl, and the answer is
//! 200 — also for a retry Twilio sent because it missed the first answer. See
//! [`crate::twilio`] for how the notification travels.

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
use crate::twilio::call::WebhookCall;
use crate::twilio::signature::{self, Refusal, Signed};
use crate::twilio::{body, Webhook};

/// The header Twilio signs its requests with.
pub const SIGNATURE_HEADER: &str = "x-twilio-signature";

/// The header Twilio's retries of one request share (an idempotency key beside
/// `twi_message_id`).
pub const IDEMPOTENCY_HEADER: &str = "i-twilio-idempotency-token";

/// Longest `I-Twilio-Idempotency-Token` accepted, in bytes (it becomes part of a Redis key).
pub const MAX_IDEMPOTENCY_TOKEN_BYTES: usize = 256;

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

/// How the body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Json,
    Form,
}

fn encoding(headers: &HeaderMap) -> Option<Encoding> {
    if super::extract::is_json(headers) {
        return Some(Encoding::Json);
    }
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(FORM));
    is_form.then_some(Encoding::Form)
}

/// A header's value as text; a value that is not visible ASCII reads as empty.
fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap_or(""))
}

fn invalid(e: impl std::fmt::Display) -> ApiError {
    ApiError::InvalidRequest(e.to_string())
}

/// `I-Twilio-Idempotency-Token`, when present: visible ASCII, at most
/// [`MAX_IDEMPOTENCY_TOKEN_BYTES`].
fn idempotency_token(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    match header_text(headers, IDEMPOTENCY_HEADER) {
        None => Ok(None),
        Some(token)
            if !token.is_empty()
                && token.len() <= MAX_IDEMPOTENCY_TOKEN_BYTES
                && !token.contains('\t') =>
        {
            Ok(Some(token))
        }
        Some(_) => Err(ApiError::InvalidRequest(format!(
            "header `I-Twilio-Idempotency-Token` must be 1 to {MAX_IDEMPOTENCY_TOKEN_BYTES} \
             visible ASCII characters"
        ))),
    }
}

async fn answer(ctx: &ApiContext, peer: IpAddr, request: Request) -> Result<Response, ApiError> {
    let Some(webhook) = ctx.auth.twilio() else {
        return Err(ApiError::NotFound(
            "the Twilio webhook is off: no twilio auth token or shared key is configured".into(),
        ));
    };
    let Some(encoding) = encoding(request.headers()) else {
        return Err(ApiError::UnsupportedMediaType(
            "JSON (Content-Type: application/json) or a form \
             (Content-Type: application/x-www-form-urlencoded)",
        ));
    };
    let url = signature::called_url(&webhook.url, request.uri().query());
    let headers = request.headers().clone();
    let bytes = Bytes::from_request(request, &())
        .await
        .map_err(super::extract::body_rejection)?;
    let signed = |body| Signed {
        url: &url,
        body,
        signature: header_text(&headers, SIGNATURE_HEADER),
        settings: header_text(&headers, signature::SETTINGS_HEADER),
    };
    let fields = match encoding {
        Encoding::Form => {
            let fields = body::parse_form(&bytes).map_err(invalid)?;
            check_signature(ctx, &webhook, peer, &signed(signature::Body::Form(&fields)))?;
            fields
        }
        Encoding::Json => {
            check_signature(ctx, &webhook, peer, &signed(signature::Body::Json(&bytes)))?;
            body::parse_json(&bytes).map_err(invalid)?
        }
    };
    let call = WebhookCall::from_fields(fields).map_err(invalid)?;
    let token = idempotency_token(&headers)?;
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
    let ttl_ms = call.ttl_ms(webhook.ring_ttl_ms);
    let added = ctx
        .queue
        .enqueue_once(&call.once_keys(token), ttl_ms, &call.stream_fields(ttl_ms))
        .await?;
    let call_sid = call.field("twi_call_sid");
    match &added {
        Some(id) => {
            info!(id = %id, call_sid, to = %call.callee, ttl_ms, "Twilio call notification enqueued")
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
    request: &Signed<'_>,
) -> Result<(), ApiError> {
    let refusal = match signature::verify(&webhook.secrets, request) {
        Ok(_) => return Ok(()),
        Err(refusal) => refusal,
    };
    ctx.metrics.twilio.signature_failure();
    if webhook.failures.should_log(peer, Instant::now()) {
        warn!(address = %peer, reason = %refusal,
            "Twilio webhook signature did not verify (check twilio.webhook_url, the auth token \
             and the shared key); further failures from this address are not logged for a minute");
    }
    Err(ApiError::Forbidden(match refusal {
        Refusal::Missing => "the request needs an `X-Twilio-Signature` header".into(),
        Refusal::UnknownAlgorithm => "`X-Twilio-Webhooks-Signature-Settings` names no \
                                      algorithm callpush knows (HMAC_SHA256, HMAC_SHA1)"
            .into(),
        Refusal::NoBodyHash | Refusal::BodyHash => {
            "the body does not match the URL's `bodySHA256`".into()
        }
        Refusal::NoSharedKey | Refusal::NoAuthToken | Refusal::Mismatch => {
            "the `X-Twilio-Signature` header does not match the request".into()
        }
    }))
}
