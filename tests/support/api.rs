//! HTTP API test support: a [`World`] whose settings also carry an account, an API key and an
//! admin token (secrets in files, as in production), access tokens minted here independently of
//! callpush with `jsonwebtoken` in the Twilio layout of SPEC §2, the two routers for
//! `oneshot` requests, and a small HTTP/1 client for requests through real sockets.

use std::sync::Arc;

use axum::body::Body;
use axum::Router;
use callpush::api::{self, ApiContext};
use callpush::config::{ApiKeySettings, Settings};
use callpush::domain::now_ms;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tower::ServiceExt;

use callpush::daemon::Backends;

use super::world::{Backend, World};

/// The account every token's `sub` names.
pub const ACCOUNT_SID: &str = "AC00000000000000000000000000000001";
/// The API key that signs tokens.
pub const KEY_SID: &str = "SK00000000000000000000000000000001";
/// Its secret.
pub const KEY_SECRET: &str = "test-api-key-secret-0123456789abcdef";
/// The admin bearer token.
pub const ADMIN_TOKEN: &str = "test-admin-token-fedcba9876543210";

/// Add the account, the API key and the admin token to `settings`, writing the secrets to
/// files in `dir`.
pub fn add_auth(settings: &mut Settings, dir: &std::path::Path) {
    let key_file = dir.join("api-key.secret");
    std::fs::write(&key_file, format!("{KEY_SECRET}\n")).unwrap();
    let admin_file = dir.join("admin-token");
    std::fs::write(&admin_file, format!("{ADMIN_TOKEN}\n")).unwrap();
    settings.auth.account_sid = Some(ACCOUNT_SID.into());
    settings.auth.api_keys = vec![ApiKeySettings {
        sid: KEY_SID.into(),
        secret_file: Some(key_file),
        secret_env: None,
    }];
    settings.admin.token_file = Some(admin_file);
}

/// The claims of a valid token for `identity`: one hour, incoming allowed, no credential.
pub fn claims(identity: &str) -> Value {
    let now = now_ms() / 1000;
    json!({
        "jti": format!("{KEY_SID}-{now}"),
        "iss": KEY_SID,
        "sub": ACCOUNT_SID,
        "nbf": now,
        "exp": now + 3600,
        "grants": {"identity": identity, "voice": {"incoming": {"allow": true}}},
    })
}

/// Sign `claims` with HS256 and `secret`, with Twilio's header (`cty: twilio-fpa;v=1`).
pub fn sign(claims: &Value, secret: &str) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.cty = Some("twilio-fpa;v=1".into());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A valid access token for `identity`.
pub fn token(identity: &str) -> String {
    sign(&claims(identity), KEY_SECRET)
}

/// A World with auth settings and both routers, built as the daemon builds them.
pub struct ApiWorld {
    pub world: World,
    pub ctx: Arc<ApiContext>,
    _dir: tempfile::TempDir,
}

impl ApiWorld {
    pub async fn new() -> ApiWorld {
        Self::with(|_| {}).await
    }

    pub async fn with(tweak: impl FnOnce(&mut Settings)) -> ApiWorld {
        Self::on(Backend::Redis, tweak).await
    }

    /// Both routers over the world's `backend` (its Redis, or its in-memory queue and store).
    pub async fn on(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> ApiWorld {
        let dir = tempfile::tempdir().unwrap();
        let world = World::on(backend, |s| {
            add_auth(s, dir.path());
            tweak(s);
        })
        .await;
        let ctx = match world.memory_queue() {
            Some(queue) => {
                let backends = Backends::in_memory(queue, world.memory_store().unwrap());
                callpush::daemon::api_context_with(
                    &world.settings,
                    backends.queue,
                    backends.store,
                    backends.dead_letters,
                    None,
                )
                .unwrap()
            }
            None => {
                let (queue, store) = callpush::daemon::redis_backends(&world.settings)
                    .await
                    .unwrap();
                callpush::daemon::api_context(&world.settings, queue, store)
                    .await
                    .unwrap()
            }
        };
        ApiWorld {
            world,
            ctx: Arc::new(ctx),
            _dir: dir,
        }
    }

    /// Serve the admin router on a port of 127.0.0.1 until the test ends; its base URL.
    pub async fn serve_admin(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = self.admin();
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{addr}")
    }

    pub fn public(&self) -> Router {
        api::public_router(self.ctx.clone())
    }

    pub fn admin(&self) -> Router {
        api::admin_router(self.ctx.clone())
    }

    /// `GET /v1/identities/{identity}/bindings` on the admin router, with the admin token.
    pub async fn admin_bindings(&self, identity: &str) -> Reply {
        let uri = format!("/v1/identities/{identity}/bindings");
        call(self.admin(), Method::GET, &uri, Some(ADMIN_TOKEN), None).await
    }

    /// The live bindings of `identity`, from the store.
    pub async fn bindings(&self, identity: &str) -> Vec<callpush::bindings::Binding> {
        self.world.store().await.list(identity).await.unwrap()
    }

    /// `POST /v1/registrations` with a valid token for `identity`.
    pub async fn register(&self, identity: &str, platform: &str, device_token: &str) -> Reply {
        let body = json!({"platform": platform, "device_token": device_token});
        call(
            self.public(),
            Method::POST,
            "/v1/registrations",
            Some(&token(identity)),
            Some(body),
        )
        .await
    }
}

/// A response: status, headers and the body as JSON (`Null` when empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The SPEC §3 error code, asserting the error shape.
    pub fn code(&self) -> &str {
        let error = &self.body["error"];
        assert!(error["message"].is_string(), "error shape: {}", self.body);
        error["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no code: {}", self.body))
    }

    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }
}

/// `GET uri` through the router: the status and the body as text.
pub async fn get_text(router: axum::Router, uri: &str) -> (StatusCode, String) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let req = http::Request::get(uri)
        .body(axum::body::Body::empty())
        .unwrap();
    let response = router.oneshot(req).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

/// Send one request through `router` (no socket), with a JSON body.
pub async fn call(
    router: Router,
    method: Method,
    uri: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(token) = bearer {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    };
    send(router, req.unwrap()).await
}

/// Send a prepared request through `router`.
pub async fn send(router: Router, req: Request<Body>) -> Reply {
    let response = router.oneshot(req).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
    }
}

/// An HTTP/1.1 connection to `base` (`http://host:port`): its authority, for the `host` header,
/// and the sender.
pub async fn connect_http1<B>(base: &str) -> (String, hyper::client::conn::http1::SendRequest<B>)
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let authority = base.trim_start_matches("http://").to_string();
    let stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    (authority, sender)
}

/// One HTTP/1.1 request through a real socket to `base` (`http://host:port`).
pub async fn http(
    method: Method,
    base: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let auth = bearer.map(|token| format!("Bearer {token}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    let (status, headers, bytes) = request(method, base, path, &headers, body).await;
    Reply {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// [`http`] with any headers, answering the raw body.
pub async fn request(
    method: Method,
    base: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, HeaderMap, bytes::Bytes) {
    let (authority, mut sender) = connect_http1(base).await;
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", &authority);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(b.to_string()))),
        None => req.body(http_body_util::Full::new(bytes::Bytes::new())),
    };
    let response = sender.send_request(req.unwrap()).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, bytes)
}
