//! The stage breakdown of a run, read from callpush's own `/metrics` on the admin listener:
//! the mean time per event in each stage of `callpush_stage_seconds`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Mean ms per event in each stage, from one scrape (empty when the scrape failed).
pub async fn mean_ms(admin: SocketAddr) -> BTreeMap<String, f64> {
    match scrape(admin).await {
        Ok(text) => parse(&text),
        Err(_) => BTreeMap::new(),
    }
}

async fn scrape(admin: SocketAddr) -> std::io::Result<String> {
    let mut tcp = TcpStream::connect(admin).await?;
    tcp.write_all(b"GET /metrics HTTP/1.0\r\nHost: callpush\r\n\r\n")
        .await?;
    let mut text = String::new();
    tcp.read_to_string(&mut text).await?;
    Ok(text)
}

fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut sums = BTreeMap::new();
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let stage = |rest: &str| {
            rest.strip_prefix("{stage=\"")
                .and_then(|r| r.strip_suffix("\"}"))
                .map(str::to_string)
        };
        if let Some(s) = series
            .strip_prefix("callpush_stage_seconds_sum")
            .and_then(stage)
        {
            sums.insert(s, value);
        } else if let Some(s) = series
            .strip_prefix("callpush_stage_seconds_count")
            .and_then(stage)
        {
            counts.insert(s, value);
        }
    }
    sums.into_iter()
        .filter_map(|(stage, sum)| {
            let n = *counts.get(&stage)?;
            (n > 0.0).then(|| (stage, sum * 1000.0 / n))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn means_come_from_sum_and_count() {
        let text = "# HELP x\ncallpush_stage_seconds_sum{stage=\"claim\"} 2\ncallpush_stage_seconds_count{stage=\"claim\"} 1000\ncallpush_stage_seconds_sum{stage=\"push\"} 0\ncallpush_stage_seconds_count{stage=\"push\"} 0\n";
        let means = super::parse(text);
        assert_eq!(means.len(), 1);
        assert_eq!(means["claim"], 2.0);
    }
}
