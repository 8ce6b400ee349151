//! The limits measured in the same run, so results are ratios that survive a noisy machine:
//! raw HTTP/2 requests/s against the same APNs simulator (`h2load` from nghttp2, with a valid
//! provider token and a VoIP payload like callpush's) and raw XADD/s on the same Redis
//! (`redis-benchmark`, pipelined).

use std::path::Path;
use std::process::Stdio;

use tokio::process::Command;

use callpush_sim::{DEV_APNS_KEY, DEV_BUNDLE_ID, DEV_KEY_ID, DEV_TEAM_ID};

/// What a limit measurement gave: requests per second, or why there is no number.
pub type Limit = Result<f64, String>;

/// An APNs provider token signed with the development key, as callpush's client makes one.
fn provider_token() -> Result<String, String> {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(DEV_KEY_ID.into());
    let claims = serde_json::json!({"iss": DEV_TEAM_ID, "iat": callpush::domain::now_ms() / 1000});
    let key = jsonwebtoken::EncodingKey::from_ec_pem(DEV_APNS_KEY.as_bytes())
        .map_err(|e| format!("the dev APNs key: {e}"))?;
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| format!("signing: {e}"))
}

/// `h2load -D seconds -c connections -m streams` against the APNs simulator at `endpoint`.
pub async fn raw_http2(
    endpoint: &str,
    dir: &Path,
    seconds: u32,
    connections: u32,
    streams: u32,
) -> Limit {
    let body = dir.join("raw_push.json");
    let payload = r#"{"aps":{},"callpush":{"type":"incoming","call_sid":"raw","to":"raw"}}"#;
    std::fs::write(&body, payload).map_err(|e| format!("writing the body: {e}"))?;
    let url = format!("{endpoint}/3/device/{:064x}", 1);
    let output = Command::new("h2load")
        .args(["-D", &seconds.to_string()])
        .args(["-c", &connections.to_string(), "-m", &streams.to_string()])
        .args(["-t", "1", "-d"])
        .arg(&body)
        .args(["-H", &format!("apns-topic: {DEV_BUNDLE_ID}.voip")])
        .args(["-H", "apns-push-type: voip"])
        .args([
            "-H",
            &format!("authorization: bearer {}", provider_token()?),
        ])
        .arg(&url)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("h2load not run ({e}); install nghttp2-client"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    parse_h2load(&text).ok_or_else(|| format!("h2load said: {}", text.trim()))
}

/// Requests/s of the requests that succeeded (2xx), from h2load's summary.
fn parse_h2load(text: &str) -> Option<f64> {
    let finished = text.lines().find(|l| l.starts_with("finished in"))?;
    let rate: f64 = finished
        .split(", ")
        .nth(1)?
        .strip_suffix(" req/s")?
        .parse()
        .ok()?;
    let requests = text.lines().find(|l| l.starts_with("requests:"))?;
    let number = |word: &str| -> Option<f64> {
        let part = requests.split(", ").find(|p| p.ends_with(word))?;
        part.split_whitespace().rev().nth(1)?.parse().ok()
    };
    let (done, ok) = (number("done")?, number("succeeded")?);
    let codes = text.lines().find(|l| l.starts_with("status codes:"))?;
    let twoxx: f64 = codes.split_whitespace().nth(2)?.parse().ok()?;
    (done > 0.0 && ok > 0.0 && twoxx > 0.0).then(|| rate * twoxx / done)
}

/// `redis-benchmark` XADDs of an entry like the benchmark's, `pipeline` at a time over 4
/// connections, on a key of its own that is deleted afterwards.
pub async fn raw_xadd(redis_url: &str, requests: u32, pipeline: u32) -> Limit {
    let url = url_host_port(redis_url).ok_or("only redis://host:port URLs are measured")?;
    let key = "callpush-bench:raw-xadd";
    let output = Command::new("redis-benchmark")
        .args(["-h", &url.0, "-p", &url.1])
        .args(["-c", "4", "-P", &pipeline.to_string()])
        .args(["-n", &requests.to_string(), "--csv"])
        .args(["XADD", key, "*", "type", "incoming", "to", "bench-user-1"])
        .args(["call_sid", "bench-raw", "ttl_ms", "600000"])
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("redis-benchmark not run: {e}"))?;
    let _ = Command::new("redis-cli")
        .args(["-h", &url.0, "-p", &url.1, "DEL", key])
        .stdout(Stdio::null())
        .status()
        .await;
    let text = String::from_utf8_lossy(&output.stdout);
    parse_redis_benchmark(&text).ok_or_else(|| format!("redis-benchmark said: {}", text.trim()))
}

fn url_host_port(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("redis://")?;
    let rest = rest.rsplit('@').next()?;
    let authority = rest.split('/').next()?;
    let (host, port) = authority.rsplit_once(':').unwrap_or((authority, "6379"));
    Some((host.to_string(), port.to_string()))
}

/// The rps column of redis-benchmark's CSV (the second field of the last row).
fn parse_redis_benchmark(text: &str) -> Option<f64> {
    let row = text.lines().rfind(|l| l.starts_with("\"XADD"))?;
    let rest = &row[row.find("\",\"")? + 3..];
    rest.split('"').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h2load_summaries_count_only_what_succeeded() {
        let text = "\
finished in 2.00s, 50000.00 req/s, 3.00MB/s
requests: 100000 total, 100000 started, 100000 done, 100000 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 50000 2xx, 0 3xx, 50000 4xx, 0 5xx
";
        assert_eq!(parse_h2load(text), Some(25_000.0));
        assert_eq!(parse_h2load("h2load: could not connect"), None);
    }

    #[test]
    fn redis_benchmark_csv_gives_the_rate() {
        let text = "\"test\",\"rps\",\"avg_latency_ms\"\n\"XADD callpush-bench:raw-xadd * type incoming\",\"123456.79\",\"0.5\"\n";
        assert_eq!(parse_redis_benchmark(text), Some(123_456.79));
        assert_eq!(
            url_host_port("redis://:pw@10.0.0.1:7000/0"),
            Some(("10.0.0.1".into(), "7000".into()))
        );
        assert_eq!(
            url_host_port("redis://localhost"),
            Some(("localhost".into(), "6379".into()))
        );
    }

    #[test]
    fn the_raw_requests_carry_a_token_the_simulator_accepts() {
        let token = provider_token().unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(DEV_KEY_ID));
    }
}
