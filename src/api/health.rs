//! Operational routes, served on both listeners (`/metrics` on the admin one only): `/healthz`
//! (the process answers), `/readyz` (Redis answers a PING, so registrations and calls can be
//! taken) and `/metrics` (the Prometheus text of the registry the daemon was given).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use prometheus::{Encoder, IntGaugeVec, Opts, Registry, TextEncoder};
use tracing::warn;

use super::error::ApiError;
use super::ApiContext;

/// How long `/readyz` waits for Redis; a load balancer's probe should not hang.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the base registry could not be built.
#[derive(Debug, thiserror::Error)]
#[error("metrics registry: {0}")]
pub struct RegistryError(#[from] prometheus::Error);

/// A registry with the process collector and `callpush_build_info{version}`; the metrics of
/// the pipeline are registered on it too.
pub fn base_registry() -> Result<Registry, RegistryError> {
    let registry = Registry::new();
    #[cfg(target_os = "linux")]
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    let build = IntGaugeVec::new(
        Opts::new(
            "callpush_build_info",
            "Always 1; the labels name the running build.",
        ),
        &["version"],
    )?;
    build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    registry.register(Box::new(build))?;
    Ok(registry)
}

/// `GET /healthz`: 200 while the process runs.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// `GET /readyz`: 200 when Redis answers a PING in time, else 503 `unavailable`; always 200
/// with the in-memory backend (nothing to reach).
pub async fn readyz(
    State(ctx): State<Arc<ApiContext>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Some(mut conn) = ctx.redis.clone() else {
        return Ok(Json(serde_json::json!({"status": "ready"})));
    };
    let cmd = redis::cmd("PING");
    let ping = cmd.query_async::<String>(&mut conn);
    match tokio::time::timeout(PING_TIMEOUT, ping).await {
        Ok(Ok(_)) => Ok(Json(serde_json::json!({"status": "ready"}))),
        Ok(Err(e)) => {
            ctx.metrics.redis_error("ping");
            warn!(error = %e, "not ready: Redis PING failed");
            Err(ApiError::NotReady)
        }
        Err(_) => {
            ctx.metrics.redis_error("ping");
            warn!(
                timeout_ms = PING_TIMEOUT.as_millis() as u64,
                "not ready: Redis PING timed out"
            );
            Err(ApiError::NotReady)
        }
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(ctx): State<Arc<ApiContext>>) -> Result<Response, ApiError> {
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    encoder
        .encode(&ctx.registry.gather(), &mut body)
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}
