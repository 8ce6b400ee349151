//! Request extractors that answer in the SPEC §3 error shape instead of axum's plain-text
//! rejections: a JSON body (415 / 413 / 400 naming the field), path parameters, and the bearer
//! token of the `Authorization` header.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use super::error::{ApiError, BearerProblem};
use super::BODY_LIMIT_BYTES;

/// A JSON body deserialized into `T`; errors name the offending field (`platform: unknown
/// variant …`, `unknown field \`x\``). A body with an object key twice is refused.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

/// Whether the body is declared JSON (`application/json` or `application/…+json`).
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType(
                "JSON (Content-Type: application/json)",
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        from_json(&bytes).map(ApiJson)
    }
}

/// Deserialize a JSON body into `T` as [`ApiJson`] does: errors name the field, trailing
/// characters and a key given twice are refused.
pub(crate) fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if inner.is_data() && path != "." {
            format!("`{path}`: {inner}")
        } else if inner.is_data() {
            format!("invalid request body: {inner}")
        } else {
            format!("the request body is not valid JSON: {inner}")
        };
        ApiError::InvalidRequest(message)
    })?;
    de.end().map_err(|e| {
        ApiError::InvalidRequest(format!("the request body is not valid JSON: {e}"))
    })?;
    // A key twice at any depth (`params`, say) is ambiguous: refused, not last-one-wins.
    crate::strict_json::from_slice(bytes)
        .map_err(|e| ApiError::InvalidRequest(format!("invalid request body: {e}")))?;
    Ok(value)
}

/// Path parameters; a parameter that does not decode is a 400, not axum's plain-text error.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(ApiError::InvalidRequest(format!(
                "invalid path parameter: {}",
                rejection.body_text()
            ))),
        }
    }
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive, as RFC 6750 allows);
/// a missing or differently shaped header is a 401 `invalid_token`.
pub fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::MissingBearer(BearerProblem::Missing))?;
    let garbled = || ApiError::MissingBearer(BearerProblem::Garbled);
    let value = value.to_str().map_err(|_| garbled())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(garbled)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(garbled());
    }
    Ok(token)
}

/// Why a request body could not be read, as the SPEC §3 error: over the body limit (413), or
/// cut off or garbled on the way (400).
pub(crate) fn body_rejection(rejection: axum::extract::rejection::BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge {
            limit: BODY_LIMIT_BYTES,
        }
    } else {
        ApiError::InvalidRequest("the request body could not be read".into())
    }
}
