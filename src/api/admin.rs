//! The admin routes for operators and call servers: enqueue a call event (`POST /v1/calls`)
//! and inspect or remove an identity's bindings. Every route here sits behind
//! [`require_admin`]; `/metrics`, `/healthz` and `/readyz` do not.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use tracing::info;

use super::error::ApiError;
use super::extract::{bearer, ApiJson, ApiPath};
use super::ApiContext;
use crate::domain::now_ms;
use crate::event::{check_identity, CallEvent, StreamEntry};

/// Middleware: the request must carry `Authorization: Bearer <admin token>` (compared in
/// constant time by the auth module; no admin token configured means no admin access).
pub async fn require_admin(
    State(ctx): State<Arc<ApiContext>>,
    request: Request,
    next: Next,
) -> Response {
    match bearer(request.headers()) {
        Ok(token) if ctx.auth.admin_token_matches(token) => next.run(request).await,
        _ => ApiError::AdminUnauthorized.into_response(),
    }
}

/// `ttl_ms` as a JSON number or a string, as it would be on the stream.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TtlMs {
    Number(u64),
    Text(String),
}

/// The body of `POST /v1/calls`: the call-event fields of SPEC §5. Required fields are optional
/// here so that the consumer's own validation names what is missing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    to: Option<String>,
    call_sid: Option<String>,
    from: Option<String>,
    ttl_ms: Option<TtlMs>,
    credential: Option<String>,
    /// A JSON object of string values, or that object as a JSON string.
    params: Option<serde_json::Value>,
}

impl CallBody {
    /// The stream fields, in the order a call server would XADD them.
    fn into_fields(self) -> Vec<(String, String)> {
        let params = self.params.map(|p| match p {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        });
        let ttl_ms = self.ttl_ms.map(|t| match t {
            TtlMs::Number(n) => n.to_string(),
            TtlMs::Text(s) => s,
        });
        [
            ("type", self.kind),
            ("to", self.to),
            ("call_sid", self.call_sid),
            ("from", self.from),
            ("ttl_ms", ttl_ms),
            ("credential", self.credential),
            ("params", params),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
        .collect()
    }
}

/// `POST /v1/calls`: validate as the consumer will, then XADD; 202 with the stream id.
pub async fn enqueue_call(
    State(ctx): State<Arc<ApiContext>>,
    ApiJson(body): ApiJson<CallBody>,
) -> Result<Response, ApiError> {
    let fields = body.into_fields();
    // A probe entry stamped now: the same parse the consumer runs, so a bad event is refused
    // here instead of becoming a `malformed` dead letter.
    let probe = StreamEntry::from_slice(format!("{}-0", now_ms()), &fields);
    let event = CallEvent::parse(&probe).map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    let id = ctx.queue.enqueue(&fields).await?;
    info!(id = %id, call_sid = %event.call_sid(), to = %event.to(), kind = event.kind().as_str(),
        "call event enqueued");
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({"id": id}))).into_response())
}

fn valid_identity(identity: &str) -> Result<(), ApiError> {
    check_identity(identity).map_err(|p| ApiError::InvalidRequest(format!("identity {p}")))
}

/// `GET /v1/identities/{identity}/bindings`: the live bindings, most recently updated first.
pub async fn list_bindings(
    State(ctx): State<Arc<ApiContext>>,
    ApiPath(identity): ApiPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    valid_identity(&identity)?;
    let bindings = ctx.store.list(&identity).await?;
    // A bare array, as `callpush bindings list` prints it.
    let views = bindings
        .iter()
        .map(|b| b.view(ctx.default_environment(&b.credential)))
        .collect();
    Ok(Json(views))
}

/// `DELETE /v1/identities/{identity}/bindings/{binding_id}`: 204, or 404 when there is no such
/// binding.
pub async fn delete_binding(
    State(ctx): State<Arc<ApiContext>>,
    ApiPath((identity, binding_id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    valid_identity(&identity)?;
    if ctx.store.delete(&identity, &binding_id).await? {
        info!(identity = %identity, binding_id = %binding_id, "binding deleted by an operator");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "identity {identity:?} has no binding {binding_id}"
        )))
    }
}

/// `POST /v1/admin/reload`: read the configuration file and its secret files again, as
/// `SIGHUP` does (`crate::reload`). 200 with what was reloaded and what needs a restart; 400
/// naming the key when the new configuration is refused (the daemon keeps the previous one).
pub async fn reload(State(ctx): State<Arc<ApiContext>>) -> Result<Response, ApiError> {
    let reloader = ctx.reload.clone();
    let result = tokio::task::spawn_blocking(move || reloader.reload())
        .await
        .map_err(|_| ApiError::Unavailable("the reload did not finish".into()))?;
    match result {
        Ok(report) => Ok(Json(report).into_response()),
        Err(e) => Err(ApiError::InvalidRequest(format!(
            "configuration not reloaded, the previous one stays: {e}"
        ))),
    }
}

/// `DELETE /v1/identities/{identity}/bindings`: every binding of the identity (an account's
/// erasure), one `unregistered` feed event (reason `erased`) each; `200 {"removed": n}`, also
/// when there was none (erasing twice is no error).
pub async fn erase_bindings(
    State(ctx): State<Arc<ApiContext>>,
    ApiPath(identity): ApiPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    valid_identity(&identity)?;
    let removed = ctx.store.erase(&identity).await?;
    info!(identity = %identity, removed = removed.len(), "every binding of an identity erased by an operator");
    Ok(Json(serde_json::json!({"removed": removed.len()})))
}
