//! `callpush dlq … --admin <url>`: the dead letters through a daemon's admin API
//! (`/v1/dead-letters…`) instead of Redis — for on-call engineers who can reach the admin
//! listener (a `kubectl port-forward`) but not Redis, and for `callpush dev`'s in-memory
//! backend, whose dead letters only that process holds. The admin token is presented as
//! `Authorization: Bearer`, read from `admin.token_file` of `--config` or `CALLPUSH_ADMIN_TOKEN`
//! (never from the command line). Plain HTTP/1.1, as the admin listener serves it.

use bytes::Bytes;
use http::{header, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use tokio::net::TcpStream;

use crate::auth::Secret;
use crate::dlq::{Action, ActionSummary, DeadEntry, Filter, Selection, Skip, Summary};

/// Why a request to the admin API failed. One line each.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// `--admin` is not an `http://host:port` URL.
    #[error("--admin {0:?}: expected http://host:port (the daemon's admin.listen)")]
    BadUrl(String),
    /// No admin token configured.
    #[error(
        "--admin needs the admin token: set admin.token_file in --config or CALLPUSH_ADMIN_TOKEN"
    )]
    NoToken,
    /// The daemon could not be reached or the exchange broke off.
    #[error("admin API {url}: {problem}")]
    Unreachable {
        /// The admin URL.
        url: String,
        /// What went wrong.
        problem: String,
    },
    /// The daemon answered with an error (its SPEC §3 message).
    #[error("admin API answered {status}: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The `error.message` of the answer.
        message: String,
    },
    /// An answer callpush cannot read (not a callpush admin API?).
    #[error("admin API {url}: unexpected answer: {detail}")]
    Unexpected {
        /// The admin URL.
        url: String,
        /// What was wrong with it.
        detail: String,
    },
}

/// A client of one daemon's admin API.
pub struct AdminClient {
    url: String,
    authority: String,
    base_path: String,
    token: Secret,
}

impl AdminClient {
    /// A client of the admin API at `url` (`http://host:port`, optionally with a path prefix).
    pub fn new(url: &str, token: Option<Secret>) -> Result<AdminClient, AdminError> {
        let bad = || AdminError::BadUrl(url.to_string());
        let uri: Uri = url.parse().map_err(|_| bad())?;
        if uri.scheme_str() != Some("http") || uri.query().is_some() {
            return Err(bad());
        }
        let authority = uri.authority().ok_or_else(bad)?;
        let authority = match authority.port() {
            Some(_) => authority.to_string(),
            None => format!("{authority}:80"),
        };
        Ok(AdminClient {
            url: url.trim_end_matches('/').to_string(),
            authority,
            base_path: uri.path().trim_end_matches('/').to_string(),
            token: token.ok_or(AdminError::NoToken)?,
        })
    }

    /// One request; the JSON answer of a 2xx, else [`AdminError::Refused`].
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, AdminError> {
        let unreachable = |problem: String| AdminError::Unreachable {
            url: self.url.clone(),
            problem,
        };
        let stream = TcpStream::connect(&self.authority)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        tokio::spawn(connection);
        let token = String::from_utf8_lossy(self.token.expose()).into_owned();
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base_path))
            .header(header::HOST, &self.authority)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))
            .map_err(|e| unreachable(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        Err(AdminError::Refused {
            status: status.as_u16(),
            message: value["error"]["message"]
                .as_str()
                .unwrap_or(status.canonical_reason().unwrap_or("error"))
                .to_string(),
        })
    }

    fn unexpected(&self, detail: impl Into<String>) -> AdminError {
        AdminError::Unexpected {
            url: self.url.clone(),
            detail: detail.into(),
        }
    }

    /// `GET /v1/dead-letters/{id}`
    pub async fn get(&self, id: &str) -> Result<DeadEntry, AdminError> {
        let path = format!("/v1/dead-letters/{}", encode(id));
        let value = self.send(Method::GET, &path, None).await?;
        entry(&value).ok_or_else(|| self.unexpected("not a dead letter"))
    }

    /// `GET /v1/dead-letters` page by page (at most the API's `limit` each) until `limit`
    /// entries were shown; the summary counts every match after `after`, as the Redis path's.
    pub async fn list(
        &self,
        filter: &Filter,
        after: Option<&str>,
        limit: usize,
        show: &mut (dyn FnMut(&DeadEntry) + Send),
    ) -> Result<Summary, AdminError> {
        let max = crate::api::dead_letters::MAX_LIMIT;
        let mut after = after.map(str::to_string);
        let mut first: Option<Summary> = None;
        let mut shown = 0u64;
        loop {
            let want = (limit as u64 - shown).min(max as u64);
            let mut query = query(filter);
            query.push(("limit", want.to_string()));
            if let Some(a) = &after {
                query.push(("after", a.clone()));
            }
            let path = format!("/v1/dead-letters?{}", join(&query));
            let value = self.send(Method::GET, &path, None).await?;
            let page = value["dead_letters"]
                .as_array()
                .ok_or_else(|| self.unexpected("no dead_letters"))?;
            for e in page {
                show(&entry(e).ok_or_else(|| self.unexpected("not a dead letter"))?);
            }
            shown += page.len() as u64;
            let summary: Summary = serde_json::from_value(value["summary"].clone())
                .map_err(|e| self.unexpected(format!("summary: {e}")))?;
            let next = summary.next_after.clone();
            let total = first.get_or_insert(summary);
            total.shown = shown;
            total.next_after = next.clone();
            match next {
                Some(n) if shown < limit as u64 => after = Some(n),
                _ => break,
            }
        }
        Ok(first.unwrap_or_default())
    }

    /// `POST /v1/dead-letters/replay` or `/purge` with the selection and options.
    pub async fn act(
        &self,
        action: Action,
        selection: &Selection,
        options: &crate::dlq::ReplayOptions,
    ) -> Result<ActionSummary, AdminError> {
        let mut body = Map::new();
        match selection {
            Selection::Ids(ids) => {
                body.insert("ids".into(), json!(ids));
            }
            Selection::Matching(filter) => {
                body.insert("all".into(), Value::Bool(true));
                for (k, v) in query(filter) {
                    let k = match (k, action) {
                        ("until", Action::Purge) => "before",
                        (k, _) => k,
                    };
                    body.insert(k.into(), Value::from(v));
                }
            }
        }
        body.insert("dry_run".into(), Value::Bool(options.dry_run));
        let path = match action {
            Action::Replay => {
                body.insert("force".into(), Value::Bool(options.force));
                body.insert("keep".into(), Value::Bool(options.keep));
                if let Some(ttl) = options.ttl_ms {
                    body.insert("ttl_ms".into(), Value::from(ttl));
                }
                "/v1/dead-letters/replay"
            }
            Action::Purge => "/v1/dead-letters/purge",
        };
        let value = self
            .send(Method::POST, path, Some(Value::Object(body)))
            .await?;
        action_summary(action, &value).ok_or_else(|| self.unexpected(value.to_string()))
    }
}

/// The filter as query parameters (`since`/`until` as the stream ids they were parsed to).
fn query(filter: &Filter) -> Vec<(&'static str, String)> {
    [
        ("reason", &filter.reason),
        ("to", &filter.to),
        ("call_sid", &filter.call_sid),
        ("since", &filter.since),
        ("until", &filter.until),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
    .collect()
}

fn encode(v: &str) -> String {
    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn join(query: &[(&str, String)]) -> String {
    query
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A dead letter from its JSON form ([`DeadEntry::to_json`]): the event's fields, then the
/// dead letter's own.
fn entry(value: &Value) -> Option<DeadEntry> {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut fields: Vec<(String, String)> = value["event"]
        .as_object()?
        .iter()
        .map(|(k, v)| (k.clone(), text(v)))
        .collect();
    for name in crate::dlq::OWN_FIELDS {
        if let Some(v) = value.get(name) {
            fields.push((name.to_string(), text(v)));
        }
    }
    Some(DeadEntry {
        id: value["id"].as_str()?.to_string(),
        fields,
    })
}

/// An action's summary from its JSON form ([`ActionSummary::to_json`]).
fn action_summary(action: Action, value: &Value) -> Option<ActionSummary> {
    let count = |v: &Value| v.as_u64();
    let mut summary = ActionSummary {
        action,
        dry_run: value["dry_run"].as_bool()?,
        matched: count(&value["matched"])?,
        done: count(&value[action.done_name()])?,
        by_reason: serde_json::from_value(value["by_reason"].clone()).ok()?,
        skipped: Default::default(),
        failed: count(&value["failed"])?,
        error: value["error"].as_str().map(str::to_string),
    };
    for (name, n) in value["skipped"].as_object()? {
        let why = [Skip::DeadlinePassed, Skip::Malformed, Skip::Gone]
            .into_iter()
            .find(|s| s.as_str() == name)?;
        summary.skipped.insert(why, count(n)?);
    }
    Some(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_forms_read_back_as_written() {
        let dead = DeadEntry {
            id: "1764727200000-0".into(),
            fields: [
                ("call_sid", "CA1"),
                ("to", "alice"),
                ("type", "incoming"),
                ("reason", "expired"),
                ("attempts", "2"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        };
        assert_eq!(entry(&dead.to_json()), Some(dead));
        let mut summary = ActionSummary::new(Action::Replay, false);
        summary.matched = 3;
        summary.did("expired");
        summary.skip(Skip::DeadlinePassed);
        summary.error = Some("redis: gone".into());
        let read = action_summary(Action::Replay, &summary.to_json()).unwrap();
        assert_eq!(read, summary);
    }

    #[test]
    fn only_plain_http_urls_are_taken() {
        let token = || Some(Secret::new("t"));
        assert!(AdminClient::new("http://127.0.0.1:9090", token()).is_ok());
        let c = AdminClient::new("http://admin.local/callpush/", token()).unwrap();
        assert_eq!(
            (c.authority.as_str(), c.base_path.as_str()),
            ("admin.local:80", "/callpush")
        );
        for bad in ["https://x:1", "127.0.0.1:9090", "http://x:1/?a=b", "nope"] {
            assert!(
                matches!(AdminClient::new(bad, token()), Err(AdminError::BadUrl(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            AdminClient::new("http://x:1", None),
            Err(AdminError::NoToken)
        ));
    }
}
