//! The public registration routes (SPEC §3, §4): an app says "I am <identity> (access token),
//! reach me at this device (device token)".
//!
//! Order of checks: the address limit (middleware, before any work), the access token, the
//! body, the `incoming` grant (registration only), the identity limit, the device token (or
//! FCM's Firebase Installation ID), the credential and the APNs environment; then the binding
//! store decides between new (201) and refreshed (200), moves a device between identities and
//! applies the cap. Logs carry the identity and the masked device token, never the access token.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::ExtensionRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use tracing::{debug, info};

use super::error::ApiError;
use super::extract::{bearer, ApiJson};
use super::ApiContext;
use crate::auth::VerifiedToken;
use crate::bindings::{normalize_device_token, normalize_fid, NewBinding};
use crate::domain::mask_device_token;
use crate::domain::{now_ms, ApnsEnvironment, Platform, Target};
use crate::metrics::RateScope;

/// The body of `POST` and `DELETE /v1/registrations`: the platform and exactly one of
/// `device_token` and (FCM) `fid`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationBody {
    /// `apns` or `fcm`.
    pub platform: Platform,
    /// The device token as the platform handed it to the app (APNs, or FCM's `onNewToken`).
    #[serde(default)]
    pub device_token: Option<String>,
    /// FCM: the Firebase Installation ID an app that opted in to FID registration receives in
    /// `onRegistered`, instead of a registration token.
    #[serde(default)]
    pub fid: Option<String>,
    /// APNs: the environment the app's build pushes in (`sandbox` for a debug build run from
    /// Xcode, `production` for TestFlight and the App Store). Without it callpush learns it.
    #[serde(default)]
    pub environment: Option<ApnsEnvironment>,
}

/// A verified access token from `Authorization: Bearer …`.
pub struct AccessToken(pub VerifiedToken);

impl FromRequestParts<Arc<ApiContext>> for AccessToken {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &Arc<ApiContext>,
    ) -> Result<Self, Self::Rejection> {
        let raw = bearer(&parts.headers)?;
        let now_secs = now_ms() / 1000;
        Ok(AccessToken(ctx.auth.verify(raw, now_secs)?))
    }
}

/// Middleware: count the request against its client address's limit before any work.
pub async fn address_limit(
    State(ctx): State<Arc<ApiContext>>,
    peer: Result<ConnectInfo<SocketAddr>, ExtensionRejection>,
    request: Request,
    next: Next,
) -> Response {
    // Without connection info (a router driven in-process) there is no address to key on.
    if let Ok(ConnectInfo(peer)) = peer {
        if let Err(retry_after) = ctx.limits.check_address(peer.ip()) {
            debug!(address = %peer.ip(), "registration rate limited by address");
            ctx.metrics.rate_limited(RateScope::RegistrationAddress);
            return ApiError::RateLimited { retry_after }.into_response();
        }
    }
    next.run(request).await
}

/// A registration body that was refused: the SPEC §3 status, error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyRejection {
    /// The HTTP status (400).
    pub status: u16,
    /// `invalid_request` or `invalid_device_token`.
    pub code: &'static str,
    /// What is wrong, naming the field.
    pub message: String,
}

/// Read the body of `POST`/`DELETE /v1/registrations` as the routes do: the platform and the
/// device token as it will be stored, or the error the routes answer with. The routes check the
/// access token before the body; this is the body's part alone (property tests and the fuzz
/// target drive it).
pub fn read_registration_body(bytes: &[u8]) -> Result<(Platform, String), BodyRejection> {
    let reject = |e: ApiError| BodyRejection {
        status: e.status().as_u16(),
        code: e.code(),
        message: e.to_string(),
    };
    let body: RegistrationBody = super::extract::from_json(bytes).map_err(reject)?;
    let (address, _) = device_address(&body).map_err(reject)?;
    Ok((body.platform, address))
}

/// The device's address as it will be stored, and what it is: exactly one of `device_token`
/// and (FCM only) `fid`, each checked; `environment` only for APNs.
fn device_address(body: &RegistrationBody) -> Result<(String, Target), ApiError> {
    if body.environment.is_some() && body.platform != Platform::Apns {
        return Err(ApiError::InvalidRequest(
            "`environment` is for APNs devices only (FCM has one environment)".into(),
        ));
    }
    match (&body.device_token, &body.fid) {
        (Some(token), None) => normalize_device_token(body.platform, token)
            .map(|t| (t, Target::Token))
            .map_err(ApiError::InvalidDeviceToken),
        (None, Some(fid)) if body.platform == Platform::Fcm => normalize_fid(fid)
            .map(|f| (f, Target::Fid))
            .map_err(|problem| ApiError::InvalidDeviceToken(format!("`fid`: {problem}"))),
        (None, Some(_)) => Err(ApiError::InvalidRequest(
            "`fid` (a Firebase Installation ID) is for FCM devices only; APNs devices send \
             `device_token`"
                .into(),
        )),
        (Some(_), Some(_)) => Err(ApiError::InvalidRequest(
            "send either `device_token` or `fid`, not both: a registration names one device \
             address"
                .into(),
        )),
        (None, None) => Err(ApiError::InvalidRequest(match body.platform {
            Platform::Apns => "missing field `device_token`".into(),
            Platform::Fcm => "missing field `device_token` (or `fid`, for an app registered \
                              by its Firebase Installation ID)"
                .into(),
        })),
    }
}

/// The device both methods act on: its address, what that is, and the credential.
pub(super) struct Device {
    pub(super) address: String,
    pub(super) target: Target,
    pub(super) credential: String,
}

/// What both methods check after the token, in order: the identity's rate limit, the device
/// address, the credential it belongs to, and (APNs) that the credential may push to the
/// environment the app names.
pub(super) fn device_of(
    ctx: &ApiContext,
    token: &VerifiedToken,
    body: &RegistrationBody,
) -> Result<Device, ApiError> {
    check_identity_limit(ctx, &token.identity)?;
    let (address, target) = device_address(body)?;
    let credential = ctx
        .auth
        .credential_for(token, body.platform)
        .map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    if let (Some(environment), Some(environments)) = (
        body.environment,
        ctx.apns_environments_of(credential.as_str()),
    ) {
        if !environments.allows(environment) {
            return Err(ApiError::InvalidRequest(format!(
                "`environment`: push credential {credential} pushes to the APNs {} \
                 environment only (its key is scoped to it), not to {environment}",
                environments.default
            )));
        }
    }
    Ok(Device {
        address,
        target,
        credential,
    })
}

fn check_identity_limit(ctx: &ApiContext, identity: &str) -> Result<(), ApiError> {
    ctx.limits.check_identity(identity).map_err(|retry_after| {
        ctx.metrics.rate_limited(RateScope::RegistrationIdentity);
        ApiError::RateLimited { retry_after }
    })
}

/// `POST /v1/registrations`: 201 with the new binding, 200 with the refreshed one.
pub async fn register(
    State(ctx): State<Arc<ApiContext>>,
    AccessToken(token): AccessToken,
    ApiJson(body): ApiJson<RegistrationBody>,
) -> Result<Response, ApiError> {
    token.require_incoming()?;
    let Device {
        address: device_token,
        target,
        credential,
    } = device_of(&ctx, &token, &body)?;
    let registered = ctx
        .store
        .register(
            NewBinding {
                identity: token.identity.clone(),
                platform: body.platform,
                credential: credential.clone(),
                device_token: device_token.clone(),
                target,
                environment: body.environment,
            },
            now_ms(),
        )
        .await?;
    info!(
        identity = %token.identity,
        platform = %body.platform,
        credential = %credential,
        device_token = %mask_device_token(&device_token),
        target = target.as_str(),
        environment = body.environment.map(ApnsEnvironment::as_str),
        created = registered.created,
        moved_from = registered.moved_from.as_deref(),
        evicted = registered.evicted.len(),
        "device registered"
    );
    let (status, outcome) = if registered.created {
        (StatusCode::CREATED, "created")
    } else {
        (StatusCode::OK, "refreshed")
    };
    ctx.metrics.registration(body.platform, outcome);
    let view = registered
        .binding
        .view(ctx.default_environment(&credential));
    Ok((status, Json(view)).into_response())
}

/// `DELETE /v1/registrations`: 204 when the identity's binding of that device was removed, 404
/// when there was none.
pub async fn unregister(
    State(ctx): State<Arc<ApiContext>>,
    AccessToken(token): AccessToken,
    ApiJson(body): ApiJson<RegistrationBody>,
) -> Result<StatusCode, ApiError> {
    let Device {
        address: device_token,
        credential,
        ..
    } = device_of(&ctx, &token, &body)?;
    let masked = mask_device_token(&device_token);
    if ctx
        .store
        .unregister(&token.identity, &credential, &device_token)
        .await?
    {
        info!(identity = %token.identity, platform = %body.platform, credential = %credential,
            device_token = %masked, "device unregistered");
        ctx.metrics.registration(body.platform, "removed");
        Ok(StatusCode::NO_CONTENT)
    } else {
        ctx.metrics.registration(body.platform, "not_found");
        Err(ApiError::NotFound(format!(
            "identity {:?} has no {} registration for device token {masked} under credential {credential}",
            token.identity, body.platform
        )))
    }
}
