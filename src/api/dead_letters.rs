//! The admin routes for dead letters (SPEC §3, §7), over the same [`crate::dlq`] code as
//! `callpush dlq`, so both select the same entries and give the same summaries:
//!
//! - `GET /v1/dead-letters?reason=&to=&call_sid=&since=&until=&limit=&after=` — `{"dead_letters":
//!   [...], "summary": {...}}`, oldest first; `summary.next_after` pages on;
//! - `GET /v1/dead-letters/{id}`, `DELETE /v1/dead-letters/{id}`;
//! - `POST /v1/dead-letters/replay` and `POST /v1/dead-letters/purge` — the action's summary.
//!
//! They work on either backend: Redis, or the in-memory one of `callpush dev`, whose dead
//! letters these routes are the only way to reach from outside the process.
//!
//! Replays and purges done here count in `callpush_dead_letters_replayed_total{reason}` and
//! `callpush_dead_letters_purged_total`.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::info;

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath};
use super::ApiContext;
use crate::dlq::{self, DlqError, Filter, ReplayOptions, Selection};

/// Entries per page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest `limit`.
pub const MAX_LIMIT: usize = 1000;

impl From<DlqError> for ApiError {
    fn from(e: DlqError) -> Self {
        match e {
            DlqError::NotFound(_) => ApiError::NotFound(e.to_string()),
            DlqError::Backend(b) => b.into(),
            DlqError::BadId(_)
            | DlqError::BadTime { .. }
            | DlqError::BadTtl(_)
            | DlqError::Selection(_) => ApiError::InvalidRequest(e.to_string()),
        }
    }
}

/// The query of `GET /v1/dead-letters`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    reason: Option<String>,
    to: Option<String>,
    call_sid: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
    after: Option<String>,
}

fn filter(
    reason: Option<String>,
    to: Option<String>,
    call_sid: Option<String>,
    since: Option<&str>,
    until: (&'static str, Option<&str>),
) -> Result<Filter, DlqError> {
    Filter {
        reason,
        to,
        call_sid,
        ..Filter::default()
    }
    .with_since("since", since)?
    .with_until(until.0, until.1)
}

/// `GET /v1/dead-letters`
pub async fn list(
    State(ctx): State<Arc<ApiContext>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|r| ApiError::InvalidRequest(r.body_text()))?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit > MAX_LIMIT {
        return Err(ApiError::InvalidRequest(format!(
            "limit {limit} is over the maximum of {MAX_LIMIT}"
        )));
    }
    let filter = filter(
        q.reason,
        q.to,
        q.call_sid,
        q.since.as_deref(),
        ("until", q.until.as_deref()),
    )?;
    let mut entries = Vec::new();
    let summary = ctx
        .dead_letters
        .list(&filter, q.after.as_deref(), limit, &mut |e| {
            entries.push(e.to_json())
        })
        .await?;
    Ok(Json(json!({"dead_letters": entries, "summary": summary})))
}

/// `GET /v1/dead-letters/{id}`
pub async fn show(
    State(ctx): State<Arc<ApiContext>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(ctx.dead_letters.get(&id).await?.to_json()))
}

/// `DELETE /v1/dead-letters/{id}`: 204, or 404 when there is no such dead letter.
pub async fn delete(
    State(ctx): State<Arc<ApiContext>>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let summary = ctx
        .dead_letters
        .purge(&Selection::Ids(vec![id.clone()]), false, &mut |_| {})
        .await?;
    if summary.done == 0 {
        return Err(DlqError::NotFound(id).into());
    }
    ctx.metrics.dead_letters_purged(summary.done);
    info!(id = %id, "dead letter deleted by an operator");
    Ok(StatusCode::NO_CONTENT)
}

/// The body of `POST /v1/dead-letters/replay`: `ids`, or `reason`, or `all: true`, narrowed by
/// the filters, plus how to replay.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplayBody {
    ids: Vec<String>,
    reason: Option<String>,
    all: bool,
    to: Option<String>,
    call_sid: Option<String>,
    since: Option<String>,
    until: Option<String>,
    dry_run: bool,
    force: bool,
    keep: bool,
    ttl_ms: Option<u64>,
}

/// `POST /v1/dead-letters/replay`
pub async fn replay(
    State(ctx): State<Arc<ApiContext>>,
    ApiJson(body): ApiJson<ReplayBody>,
) -> Result<Json<Value>, ApiError> {
    let filter = filter(
        body.reason,
        body.to,
        body.call_sid,
        body.since.as_deref(),
        ("until", body.until.as_deref()),
    )?;
    let selection = dlq::select(body.ids, filter, body.all)?;
    let options = ReplayOptions {
        dry_run: body.dry_run,
        force: body.force,
        keep: body.keep,
        ttl_ms: body.ttl_ms,
    };
    let summary = ctx
        .dead_letters
        .replay(&selection, &options, &mut |_| {})
        .await?;
    if !summary.dry_run {
        for (reason, n) in &summary.by_reason {
            ctx.metrics.dead_letters_replayed(reason, *n);
        }
        info!(
            replayed = summary.done,
            "dead letters replayed by an operator"
        );
    }
    Ok(Json(summary.to_json()))
}

/// The body of `POST /v1/dead-letters/purge`: `ids`, or `reason`, or `before`, or `all: true`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PurgeBody {
    ids: Vec<String>,
    reason: Option<String>,
    all: bool,
    before: Option<String>,
    to: Option<String>,
    call_sid: Option<String>,
    since: Option<String>,
    dry_run: bool,
}

/// `POST /v1/dead-letters/purge`
pub async fn purge(
    State(ctx): State<Arc<ApiContext>>,
    ApiJson(body): ApiJson<PurgeBody>,
) -> Result<Json<Value>, ApiError> {
    let all = body.all || body.before.is_some();
    let filter = filter(
        body.reason,
        body.to,
        body.call_sid,
        body.since.as_deref(),
        ("before", body.before.as_deref()),
    )?;
    let selection = dlq::select(body.ids, filter, all)?;
    let summary = ctx
        .dead_letters
        .purge(&selection, body.dry_run, &mut |_| {})
        .await?;
    if !summary.dry_run {
        ctx.metrics.dead_letters_purged(summary.done);
        info!(purged = summary.done, "dead letters purged by an operator");
    }
    Ok(Json(summary.to_json()))
}
