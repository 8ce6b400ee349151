//! Reading `/metrics` the way Prometheus does: fetch the text over a real socket, parse its
//! samples, and hand it to `promtool check metrics` when promtool is installed.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use http_body_util::BodyExt;

/// One sample line: name, labels, value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// A parsed scrape.
pub struct Scrape {
    pub text: String,
    pub samples: Vec<Sample>,
}

/// `GET <admin>/metrics` as Prometheus would, returning the body.
pub async fn fetch(admin_url: &str) -> Scrape {
    let (authority, mut sender) = super::api::connect_http1(admin_url).await;
    let req = http::Request::get("/metrics")
        .header("host", &authority)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Scrape::parse(String::from_utf8(body.to_vec()).unwrap())
}

impl Scrape {
    /// Parse the Prometheus text format (the subset the Rust client writes).
    pub fn parse(text: String) -> Scrape {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').expect("sample has a value");
                let (name, labels) = match series.split_once('{') {
                    Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                    None => (series, Vec::new()),
                };
                Sample {
                    name: name.to_string(),
                    labels,
                    value: value.parse().expect("numeric sample"),
                }
            })
            .collect();
        Scrape { text, samples }
    }

    /// Every series name in the scrape (histograms' `_bucket`, `_sum`, `_count` included).
    pub fn names(&self) -> BTreeSet<String> {
        self.samples.iter().map(|s| s.name.clone()).collect()
    }

    /// The sum of the samples of `name` whose labels include all of `labels`; None when no
    /// series matches.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|s| s.value)
            .collect();
        (!matching.is_empty()).then(|| matching.iter().sum())
    }

    /// The label values `label` takes on the series of `name`.
    pub fn label_values(&self, name: &str, label: &str) -> BTreeSet<String> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter_map(|s| s.labels.iter().find(|(k, _)| k == label))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

fn parse_labels(raw: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some((key, after)) = rest.split_once("=\"") {
        let end = after.find('"').expect("closing quote");
        out.push((
            key.trim_start_matches(',').to_string(),
            after[..end].to_string(),
        ));
        rest = &after[end + 1..];
    }
    out
}

/// Metric names a text mentions: every `callpush_…` and `process_…` identifier.
pub fn mentioned_metrics(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut i = 0;
    while i < bytes.len() {
        if ident(bytes[i]) && (i == 0 || !ident(bytes[i - 1])) {
            let start = i;
            while i < bytes.len() && ident(bytes[i]) {
                i += 1;
            }
            let word = &text[start..i];
            // A bare prefix (`grep '^callpush_'`) names no metric.
            if (word.starts_with("callpush_") || word.starts_with("process_"))
                && !word.ends_with('_')
            {
                names.insert(word.to_string());
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Run `promtool check metrics` on `text`: Some(true/false) with promtool's verdict, None when
/// promtool is not installed (CI installs it; `.ci/run`).
pub fn promtool_check(text: &str) -> Option<(bool, String)> {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), report))
}
