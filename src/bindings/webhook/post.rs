//! One HTTP/1.1 POST to the webhook (plain `http://` or TLS `https://`, a fresh connection
//! each: the feed is a trickle, and a backend behind a load balancer may move).

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// How long one POST may take, connection included.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why a POST did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// Connecting, TLS, or the exchange failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// HTTP failed.
    #[error("{0}")]
    Http(#[from] hyper::Error),
    /// No answer within the timeout.
    #[error("no answer within {} s", TIMEOUT.as_secs())]
    Timeout,
}

/// Where the webhook POSTs.
pub(super) struct Target {
    uri: Uri,
    host: String,
    port: u16,
    tls: Option<TlsConnector>,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Without the query string, which may hold a token of the backend's.
        let scheme = self.uri.scheme_str().unwrap_or("http");
        let authority = self.uri.authority().map(|a| a.as_str()).unwrap_or("");
        write!(f, "{scheme}://{authority}{}", self.uri.path())
    }
}

impl Target {
    pub(super) fn new(url: &str, ca_file: Option<&std::path::Path>) -> Result<Target, String> {
        let uri: Uri = url.parse().map_err(|_| format!("{url:?} is not a URL"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err("the scheme must be http or https".into()),
        };
        let authority = uri.authority().ok_or("the URL has no host")?;
        let host = authority.host().trim_matches(['[', ']']).to_string();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            Some(crate::transport::http1_tls_connector(ca_file).map_err(|e| e.to_string())?)
        } else {
            None
        };
        Ok(Target {
            uri,
            host,
            port,
            tls,
        })
    }

    /// POST `body` with `headers`; the status the backend answered.
    pub(super) async fn post(
        &self,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<StatusCode, PostError> {
        let mut request = Request::post(self.uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(
                http::header::HOST,
                self.uri.authority().map_or("", |a| a.as_str()),
            )
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, "callpush-binding-feed");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        tokio::time::timeout(TIMEOUT, self.exchange(request))
            .await
            .map_err(|_| PostError::Timeout)?
    }

    async fn exchange(&self, request: Request<Full<Bytes>>) -> Result<StatusCode, PostError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port)).await?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => send(tcp, request).await,
            Some(tls) => {
                let name = rustls_pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                send(tls.connect(name, tcp).await?, request).await
            }
        }
    }
}

async fn send<S>(io: S, request: Request<Full<Bytes>>) -> Result<StatusCode, PostError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(connection);
    Ok(sender.send_request(request).await?.status())
}
