//! The HTTP API (SPEC §3) on two listeners, both axum 0.8:
//!
//! - **public** (`api.listen`, what mobile apps reach): `POST`/`DELETE /v1/registrations`
//!   ([`registrations`]), Twilio's call-notification webhook ([`twilio`]), `/healthz`, `/readyz`;
//! - **admin** (`admin.listen`, operators, call servers, Prometheus): `POST /v1/calls`, an
//!   identity's bindings ([`admin`]), dead letters ([`dead_letters`]), all behind the admin
//!   token; `/metrics`, `/healthz`, `/readyz` ([`health`], open).
//!
//! Request hygiene is the same on both: bodies over [`BODY_LIMIT_BYTES`] get 413, bodies not
//! declared as JSON 415, and every error — including unknown routes and methods — has the SPEC
//! §3 JSON shape ([`error`]). Each listener has its own limits (`[api.limits]`,
//! `[admin.limits]`): connections and header read time in its accept loop ([`server`]), header
//! bytes, requests at once, body and handler time in front of every route ([`guard`]). The
//! public listener serves HTTPS when given a certificate ([`tls`]).

pub mod ack_log;
pub(crate) mod acks;
pub(crate) mod admin;
pub(crate) mod dead_letters;
pub(crate) mod error;
pub(crate) mod extract;
pub(crate) mod guard;
pub mod health;
pub(crate) mod limits;
pub(crate) mod registrations;
pub(crate) mod server;
pub mod tls;
pub(crate) mod twilio;

use std::sync::Arc;
use std::time::Instant;

use crate::redis_conn::RedisConn;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use std::collections::HashMap;

use crate::auth::Auth;
use crate::bindings::BindingStore;
use crate::config::ListenerLimits;
use crate::domain::{ApnsEnvironment, ApnsEnvironments};
use crate::ingest::CallQueue;
use crate::metrics::Metrics;
use error::ApiError;
use limits::RegistrationLimits;
pub use registrations::{read_registration_body, BodyRejection};

/// Largest request body accepted, in bytes.
pub const BODY_LIMIT_BYTES: usize = 16 * 1024;

/// What the handlers share.
pub struct ApiContext {
    /// Access-token and admin-token checks.
    pub auth: Arc<Auth>,
    /// Where bindings live.
    pub store: Arc<dyn BindingStore>,
    /// The calls stream `POST /v1/calls` appends to.
    pub queue: Arc<dyn CallQueue>,
    /// The dead letters, for `/v1/dead-letters…` (in Redis, or in this process's memory).
    pub dead_letters: Arc<crate::dlq::DeadLetters>,
    /// A Redis connection for the readiness PING; `None` with the in-memory backend, which is
    /// ready as long as the process runs.
    pub redis: Option<RedisConn>,
    /// What `/metrics` shows.
    pub registry: prometheus::Registry,
    /// The daemon's metrics, registered on `registry`.
    pub metrics: Arc<Metrics>,
    /// Registration rate limits (swapped by a reload).
    pub limits: Arc<RegistrationLimits>,
    /// The public listener's request limits (`[api.limits]`).
    pub public_limits: ListenerLimits,
    /// The admin listener's request limits (`[admin.limits]`).
    pub admin_limits: ListenerLimits,
    /// The APNs environments of each APNs credential (by SID): which a registration may name,
    /// and which a binding that names none is shown in.
    /// Replaced by a reload that changes the credentials.
    pub apns_environments: ApnsEnvironmentMap,
    /// Reads the configuration again (`POST /v1/admin/reload`, `SIGHUP`).
    pub reload: Arc<crate::reload::Reloader>,
    /// The push ledger, for device acks (SPEC §11); `None` where no dispatcher runs beside
    /// the API (then every ack is a 404).
    pub ledger: Option<Arc<dyn crate::dispatch::ledger::SentLedger>>,
    /// Where device acks are added: `<p>acks` on Redis, else in memory (`ack_log`).
    pub acks: Arc<ack_log::AckLog>,
}

impl ApiContext {
    /// The environment bindings of `credential` that name none are pushed to (APNs only).
    pub fn default_environment(&self, credential: &str) -> Option<ApnsEnvironment> {
        self.apns_environments_of(credential).map(|e| e.default)
    }

    /// The APNs environments `credential` may push to (None: not an APNs credential).
    pub fn apns_environments_of(&self, credential: &str) -> Option<ApnsEnvironments> {
        self.apns_environments
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(credential)
            .copied()
    }
}

/// The APNs environments of each APNs credential, by SID; replaced whole by a reload.
pub type ApnsEnvironmentMap = Arc<std::sync::RwLock<HashMap<String, ApnsEnvironments>>>;

impl ApiContext {}

/// The two bound listeners. The caller binds them (tests on port 0, `serve` on the configured
/// addresses), so the addresses are known before the daemon runs.
#[derive(Debug)]
pub struct Listeners {
    /// The public listener.
    pub api: TcpListener,
    /// The admin listener.
    pub admin: TcpListener,
}

/// Why a listener could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("{key} = {addr:?}: {source}")]
pub struct BindError {
    /// The config key (`api.listen` or `admin.listen`).
    pub key: &'static str,
    /// The address it holds.
    pub addr: String,
    /// What went wrong.
    #[source]
    pub source: std::io::Error,
}

impl Listeners {
    /// Bind `api.listen` and `admin.listen`.
    pub async fn bind(settings: &crate::config::Settings) -> Result<Listeners, BindError> {
        async fn one(key: &'static str, addr: &str) -> Result<TcpListener, BindError> {
            TcpListener::bind(addr).await.map_err(|source| BindError {
                key,
                addr: addr.to_string(),
                source,
            })
        }
        Ok(Listeners {
            api: one("api.listen", &settings.api.listen).await?,
            admin: one("admin.listen", &settings.admin.listen).await?,
        })
    }
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route {method} {}", uri.path()))
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Counts and times every request by listener and matched route pattern (never the raw path,
/// which holds identities), the one place `callpush_http_*` is emitted.
async fn track(
    State((metrics, listener)): State<(Arc<Metrics>, &'static str)>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.http_request(
        listener,
        route.as_deref().unwrap_or("unmatched"),
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// The hygiene every router gets: JSON 404/405, the listener's request limits (the body limit
/// among them: [`guard`] reads every body, at most [`BODY_LIMIT_BYTES`], before a route runs),
/// metrics.
fn finish(
    router: Router<Arc<ApiContext>>,
    ctx: Arc<ApiContext>,
    listener: &'static str,
    limits: &ListenerLimits,
) -> Router {
    let tracked = (ctx.metrics.clone(), listener);
    router
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            guard::Guard::new(limits),
            guard::guard,
        ))
        .layer(middleware::from_fn_with_state(tracked, track))
        .with_state(ctx)
}

/// The public router (what mobile apps reach).
pub fn public_router(ctx: Arc<ApiContext>) -> Router {
    let registrations = Router::new()
        .route(
            "/v1/registrations",
            post(registrations::register).delete(registrations::unregister),
        )
        .route("/v1/calls/{call_sid}/ack", post(acks::ack))
        .route_layer(middleware::from_fn_with_state(
            ctx.clone(),
            registrations::address_limit,
        ))
        .route(
            "/v1/twilio/call-notifications",
            post(twilio::call_notification),
        );
    let limits = ctx.public_limits.clone();
    finish(registrations, ctx, "public", &limits)
}

/// The admin router (operators, call servers, Prometheus).
pub fn admin_router(ctx: Arc<ApiContext>) -> Router {
    let guarded = Router::new()
        .route("/v1/calls", post(admin::enqueue_call))
        .route("/v1/admin/reload", post(admin::reload))
        .route(
            "/v1/identities/{identity}/bindings",
            get(admin::list_bindings).delete(admin::erase_bindings),
        )
        .route(
            "/v1/identities/{identity}/bindings/{binding_id}",
            delete(admin::delete_binding),
        )
        .route("/v1/acks", get(ack_log::list))
        .route("/v1/dead-letters", get(dead_letters::list))
        .route("/v1/dead-letters/replay", post(dead_letters::replay))
        .route("/v1/dead-letters/purge", post(dead_letters::purge))
        .route(
            "/v1/dead-letters/{id}",
            get(dead_letters::show).delete(dead_letters::delete),
        )
        .route_layer(middleware::from_fn_with_state(
            ctx.clone(),
            admin::require_admin,
        ));
    let open = Router::new().route("/metrics", get(health::metrics));
    let limits = ctx.admin_limits.clone();
    finish(guarded.merge(open), ctx, "admin", &limits)
}

/// Serve both routers until `shutdown` is cancelled, then stop accepting, let requests in
/// flight finish, and return. The public listener speaks HTTPS with `tls`. Also prunes the rate
/// limiters' keyed state every minute.
pub async fn serve(
    listeners: Listeners,
    ctx: Arc<ApiContext>,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let api_addr = listeners.api.local_addr()?;
    let admin_addr = listeners.admin.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    info!(api = %api_addr, admin = %admin_addr, api_scheme = scheme, "HTTP listeners ready");
    let pruning = tokio::spawn(prune_limits(ctx.clone(), shutdown.clone()));
    let public = server::Listener {
        name: "public",
        socket: listeners.api,
        router: public_router(ctx.clone()),
        limits: ctx.public_limits.clone(),
        tls,
    };
    let admin = server::Listener {
        name: "admin",
        socket: listeners.admin,
        router: admin_router(ctx.clone()),
        limits: ctx.admin_limits.clone(),
        tls: None,
    };
    tokio::join!(
        server::run(public, ctx.metrics.clone(), shutdown.clone()),
        server::run(admin, ctx.metrics.clone(), shutdown.clone()),
    );
    shutdown.cancel();
    let _ = pruning.await;
    Ok(())
}

async fn prune_limits(ctx: Arc<ApiContext>, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(limits::PRUNE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {
                ctx.limits.prune();
                let (identities, addresses) = ctx.limits.tracked();
                debug!(identities, addresses, "registration limiter state pruned");
            }
        }
    }
}
