//! Wiring and lifecycle: build the providers, the [`Backends`] (queue, store and ledger, on Redis
//! or in memory for `callpush dev`), the access-token verifier and the HTTP API from the
//! settings, and run the worker pool and both listeners until shutdown. The binary and the
//! integration tests call the same [`run`] (or [`run_with`] given backends); the caller binds
//! the [`Listeners`] (the binary on the configured addresses, tests on port 0).

mod backends;
mod providers;

use std::sync::Arc;
use std::time::Duration;

use crate::redis_conn::RedisConn;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use crate::api::Listeners;
pub use backends::{
    dead_letters, memory_backend, redacted_url, redis_backend, redis_backends, Backends,
};

use crate::api::{self, ApiContext};
use crate::auth::{Auth, AuthConfigError};
use crate::bindings::BindingStore;
use crate::config::{Settings, SUGGESTED_MIN_CLAIM_IDLE_MS};
use crate::dispatch::limits::Limits;
use crate::dispatch::providers::ProviderSet;
use crate::dispatch::retry::RetryPolicy;
use crate::dispatch::{DispatchOptions, DispatchParts, Dispatcher};
use crate::dlq::DeadLetters;
use crate::ingest::CallQueue;
use crate::lifecycle::Lifecycle;
use crate::metrics::sampler::{self, Sampler};
use crate::metrics::Metrics;
use backends::{connect, layout, redis_dead_letters};
use providers::{meter, probed_providers, provider_builder, Probed};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// An APNs credential could not be loaded.
    #[error("{source}")]
    Apns {
        /// The credential SID.
        sid: String,
        /// What went wrong.
        #[source]
        source: crate::apns::ApnsError,
    },
    /// An FCM credential could not be loaded.
    #[error("credential {sid}: {source}")]
    Fcm {
        /// The credential SID.
        sid: String,
        /// What went wrong.
        #[source]
        source: crate::fcm::FcmError,
    },
    /// The key prefix cannot be used.
    #[error("redis.key_prefix: {0}")]
    Prefix(String),
    /// The access-token or admin-token settings cannot be used.
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
    /// The metrics registry could not be built.
    #[error(transparent)]
    Metrics(#[from] api::health::RegistryError),
    /// The public listener's certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] api::tls::TlsConfigError),
    /// The binding feed's webhook cannot be set up.
    #[error(transparent)]
    FeedWebhook(#[from] crate::bindings::webhook::WebhookConfigError),
    /// The admin listener is reachable from other machines, and nothing guards it.
    #[error(
        "admin.listen = {addr} is not a loopback address, and no admin token is configured: set \
         admin.token_file (or CALLPUSH_ADMIN_TOKEN), or listen on 127.0.0.1"
    )]
    AdminExposed {
        /// The address the admin listener is bound to.
        addr: std::net::SocketAddr,
    },
    /// A listener failed while serving.
    #[error("HTTP listener: {0}")]
    Serve(#[source] std::io::Error),
    /// Redis could not be reached at start.
    #[error("redis at {url}: {source}")]
    Redis {
        /// The configured URL without credentials.
        url: String,
        /// What went wrong.
        #[source]
        source: ::redis::RedisError,
    },
}

/// What the HTTP API needs, over the given queue and store: the secrets (read now), a Redis
/// connection for `/readyz`, the metrics registry and the registration limiters.
pub async fn api_context(
    settings: &Settings,
    queue: Arc<dyn CallQueue>,
    store: Arc<dyn BindingStore>,
) -> Result<ApiContext, DaemonError> {
    let redis = connect(settings).await?;
    let dead_letters = Arc::new(redis_dead_letters(settings, redis.clone())?);
    api_context_with(settings, queue, store, dead_letters, Some(redis))
}

/// [`api_context`] over given dead letters and Redis connection, or none (the in-memory
/// backend).
pub fn api_context_with(
    settings: &Settings,
    queue: Arc<dyn CallQueue>,
    store: Arc<dyn BindingStore>,
    dead_letters: Arc<DeadLetters>,
    redis: Option<RedisConn>,
) -> Result<ApiContext, DaemonError> {
    let auth = Arc::new(Auth::from_settings(settings)?);
    let registry = api::health::base_registry()?;
    let credentials = settings.credentials.iter().map(|c| (c.platform(), c.sid()));
    let metrics = Metrics::new(&registry, credentials).map_err(api::health::RegistryError::from)?;
    let reload = Arc::new(crate::reload::Reloader::new(
        settings,
        auth.clone(),
        metrics.clone(),
    ));
    let acks =
        api::ack_log::AckLog::new(redis.clone(), format!("{}acks", settings.redis.key_prefix));
    let limits = Arc::new(api::limits::RegistrationLimits::new(&settings.limits));
    let apns_environments = Arc::new(std::sync::RwLock::new(settings.apns_environments()));
    reload.attach_api(limits.clone(), apns_environments.clone());
    Ok(ApiContext {
        reload,
        auth,
        store,
        queue,
        dead_letters,
        redis,
        registry,
        metrics,
        limits,
        public_limits: settings.api.limits.clone(),
        admin_limits: settings.admin.limits.clone(),
        apns_environments,
        ledger: None,
        acks,
    })
}

/// Run the daemon on Redis until `shutdown` is cancelled: the worker pool on the calls stream
/// and the public and admin listeners. Returns when in-flight work has finished, or when the
/// grace period (one deadline for the whole stop, counted from shutdown) ran out.
pub async fn run(
    settings: Settings,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    // Credentials first: a bad key fails the start before any connection is made.
    let probed = probed_providers(&settings.credentials)?;
    let backends = redis_backend(&settings).await?;
    serve(settings, probed, backends, listeners, shutdown).await
}

/// [`run`] on the given backends (`callpush dev` passes the in-memory one).
pub async fn run_with(
    settings: Settings,
    backends: Backends,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    let probed = probed_providers(&settings.credentials)?;
    serve(settings, probed, backends, listeners, shutdown).await
}

async fn serve(
    settings: Settings,
    probed: Probed,
    backends: Backends,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    let layout = layout(&settings)?;
    let served_cert = match (&settings.api.tls_cert_file, &settings.api.tls_key_file) {
        (Some(cert), Some(key)) => Some(api::tls::ServedCert::load(cert, key)?),
        _ => None,
    };
    let tls = served_cert.as_ref().map(|c| c.acceptor());
    let Backends {
        queue,
        store,
        ledger,
        dead_letters,
        redis,
    } = backends;
    let on_redis = redis.is_some();
    let limits = Limits::for_daemon(&settings, redis.as_ref(), layout.first().clone());
    let mut ctx = api_context_with(&settings, queue.clone(), store.clone(), dead_letters, redis)?;
    ctx.ledger = Some(ledger.clone());
    if let Some(cert) = served_cert {
        ctx.reload.attach_tls(cert);
    }
    let ctx = Arc::new(ctx);
    check_admin_exposure(&listeners, &ctx.auth)?;
    crate::reload::on_sighup(ctx.reload.clone(), shutdown.clone()).map_err(DaemonError::Serve)?;
    crate::secret::warn_exposed_files(&settings.secret_files());
    if on_redis && settings.claim_idle_is_short() {
        warn!(
            key = "stream.claim_idle_ms",
            value = settings.stream.claim_idle_ms,
            "stream.claim_idle_ms = {} is short: under load, entries in flight may be reclaimed \
             by another daemon and their devices pushed again; {SUGGESTED_MIN_CLAIM_IDLE_MS} or \
             more is suggested",
            settings.stream.claim_idle_ms
        );
    }
    let (providers, probes) = meter(probed, &ctx.metrics);
    let providers = Arc::new(ProviderSet::with_probes(providers, probes));
    ctx.reload
        .attach_providers(providers.clone(), provider_builder(ctx.metrics.clone()));
    ctx.reload.attach_limits(limits.rules());
    let life = Lifecycle::new(shutdown, Duration::from_millis(settings.shutdown.grace_ms));
    let sampler = Sampler::new(
        ctx.metrics.clone(),
        ctx.redis.clone(),
        layout.shards().to_vec(),
        settings.stream.group.clone(),
        {
            let providers = providers.clone();
            Arc::new(move || providers.probes())
        },
    );
    let counted = store.clone();
    let sampler = sampler.counting_undecodable(Arc::new(move || counted.undecodable_skipped()));
    life.spawn(sampler.run(sampler::SAMPLE_EVERY, life.stopping()));
    let webhook = crate::bindings::webhook::FeedWebhook::from_settings(
        &settings.bindings.feed,
        store.clone(),
        ctx.metrics.clone(),
    )?;
    if let Some(webhook) = webhook {
        life.spawn(webhook.run(life.stopping()));
    }
    if on_redis && settings.redis.cluster {
        life.spawn(crate::bindings::feed::sweep(store.clone(), life.stopping()));
    }
    let backend = if on_redis {
        redacted_url(&settings.redis.url)
    } else {
        "in-memory (not durable)".to_string()
    };
    info!(
        credentials = providers.snapshot().len(),
        backend = %backend,
        "callpush serving"
    );
    let parts = DispatchParts {
        queue,
        store,
        ledger,
        providers,
        limits,
        metrics: ctx.metrics.clone(),
    };
    let http = life.spawn(serve_http(listeners, ctx, tls, life.clone()));
    let options = DispatchOptions {
        max_in_flight: settings.workers.max_in_flight,
        batch_size: settings.stream.batch_size,
        block: Duration::from_millis(settings.stream.block_ms),
        claim_idle: Duration::from_millis(settings.stream.claim_idle_ms),
        retry: RetryPolicy::new(&settings.retry),
        split_batches: on_redis && settings.redis.cluster,
    };
    let dispatcher = Dispatcher::new(parts, options, life.hard_stop());
    let pool = life.clone();
    life.spawn(async move {
        dispatcher.run(pool.clone()).await;
        // The pool returns on shutdown only; make sure everything else stops too.
        pool.shut_down();
    });
    life.wait().await;
    match http.await {
        Ok(served) => served,
        Err(join) => {
            error!(error = %join, "HTTP listener task failed");
            Ok(())
        }
    }
}

/// Refuse an admin listener other machines can reach when no admin token guards it: its routes
/// would all answer 401, but `/metrics` would be open to the network, and an operator who
/// forgot the token meant something else.
fn check_admin_exposure(listeners: &Listeners, auth: &Auth) -> Result<(), DaemonError> {
    let addr = listeners.admin.local_addr().map_err(DaemonError::Serve)?;
    if !addr.ip().is_loopback() && !auth.has_admin_token() {
        return Err(DaemonError::AdminExposed { addr });
    }
    Ok(())
}

/// Both listeners until shutdown (requests in flight may finish), or until the hard stop
/// (they are dropped). A listener that fails stops the whole daemon.
async fn serve_http(
    listeners: Listeners,
    ctx: Arc<ApiContext>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    life: Lifecycle,
) -> Result<(), DaemonError> {
    let hard_stop = life.hard_stop();
    let served = tokio::select! {
        served = api::serve(listeners, ctx, tls, life.stopping()) => served.map_err(DaemonError::Serve),
        _ = hard_stop.cancelled() => {
            error!("HTTP requests still running after the grace period; stopping anyway");
            Ok(())
        }
    };
    life.shut_down();
    served
}
