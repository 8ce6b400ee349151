//! `callpush-bench`: the load benchmark anyone can rerun (`docs/benchmarks.md`). One run starts
//! (or connects to, `--redis`) a `redis-server`, starts the simulated APNs and FCM in a process
//! of their own ([`providers`]), writes a config like `callpush dev`'s and starts the release
//! `callpush serve` beside this binary ([`procs`]), registers N identities × M bindings and
//! offers call events as a burst or at a smooth rate ([`load`]). It reports events/s, pushes/s,
//! the latency from XADD to the push arriving at the simulator, CPU seconds of callpush and
//! redis-server from `/proc`, callpush's peak RSS and the errors, then measures the raw limits
//! of the same simulator and Redis ([`limits`]) so the results are also ratios ([`report`]).
//!
//! Keys: everything callpush uses under the dev prefix `callpush-dev:`; the raw XADD limit
//! writes `callpush-bench:raw-xadd` and deletes it.

mod limits;
mod load;
mod procs;
mod providers;
mod report;
mod stages;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};

pub use load::Mix;
pub use report::Report;

use callpush::config::Settings;
use callpush::dev::DevFiles;
use load::Offer;

/// Why a benchmark run failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A process or file could not be used.
    #[error("{what}: {source}")]
    Io {
        /// What the bench was doing.
        what: &'static str,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// A Redis command failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The generated files or config did not work.
    #[error(transparent)]
    Dev(#[from] callpush::dev::DevError),
    /// The generated config did not load.
    #[error(transparent)]
    Config(#[from] callpush::config::ConfigError),
    /// A child process answered something unexpected.
    #[error("{0}")]
    Protocol(String),
}

impl BenchError {
    fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> BenchError {
        move |source| BenchError::Io { what, source }
    }
}

/// callpush-bench: a load benchmark of callpush against simulated providers.
#[derive(Debug, Parser)]
#[command(name = "callpush-bench", version, about)]
pub struct BenchCli {
    /// A run (the default) or the providers process.
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    /// The run's options.
    #[command(flatten)]
    pub run: RunOptions,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// The simulated providers, run by the benchmark in a process of their own.
    #[command(hide = true)]
    Providers {
        /// Answer each request this late.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
    },
}

/// What one run does.
#[derive(Debug, Clone, Args)]
pub struct RunOptions {
    /// Identities to register.
    #[arg(long, default_value_t = 5_000)]
    pub identities: usize,
    /// Bindings per identity.
    #[arg(long, default_value_t = 1)]
    pub bindings: usize,
    /// Platforms of the bindings.
    #[arg(long, value_enum, default_value_t = Mix::Apns)]
    pub mix: Mix,
    /// Call events to offer.
    #[arg(long, default_value_t = 60_000)]
    pub events: usize,
    /// Offer this many events per second, smoothly (every 10 ms); 0 offers one burst.
    #[arg(long, default_value_t = 0)]
    pub rate: u32,
    /// The simulated providers answer this late (Apple's round trip is about 30 ms).
    #[arg(long, default_value_t = 0)]
    pub provider_latency_ms: u64,
    /// Use this Redis instead of starting a redis-server (its CPU is read from /proc when it
    /// runs on this machine).
    #[arg(long)]
    pub redis: Option<String>,
    /// The callpush binary (default: the one beside this binary).
    #[arg(long)]
    pub callpush: Option<PathBuf>,
    /// Write the report as JSON here too.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Seconds of raw HTTP/2 load for the limit; 0 skips both limits.
    #[arg(long, default_value_t = 3)]
    pub limit_seconds: u32,
    /// Give up waiting for outcomes after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
}

/// Run the command line: a benchmark run, or the providers process.
pub async fn main(cli: BenchCli) -> Result<(), BenchError> {
    match cli.command {
        Some(BenchCommand::Providers { latency_ms }) => providers::serve(latency_ms).await,
        None => {
            let report = run(&cli.run).await?;
            print!("{}", report.table());
            if let Some(path) = &cli.run.json {
                let text = serde_json::to_string_pretty(&report.json()).expect("JSON");
                std::fs::write(path, text + "\n").map_err(BenchError::io("writing --json"))?;
            }
            Ok(())
        }
    }
}

/// CPU seconds of each watched process at one moment.
fn cpu(pids: &[Option<u32>]) -> Vec<Option<f64>> {
    pids.iter()
        .map(|pid| pid.and_then(procs::cpu_seconds))
        .collect()
}

/// One benchmark run.
pub async fn run(options: &RunOptions) -> Result<Report, BenchError> {
    let files = DevFiles::create(None)?;
    let result = run_in(options, &files).await;
    files.clean_up();
    result
}

async fn run_in(o: &RunOptions, files: &DevFiles) -> Result<Report, BenchError> {
    let (redis_child, redis_url) = match &o.redis {
        Some(url) => (None, url.clone()),
        None => {
            let (child, url) = procs::redis_server(files.dir()).await?;
            (Some(child), url)
        }
    };
    let exe = std::env::current_exe().map_err(BenchError::io("finding this executable"))?;
    let mut sims = providers::Providers::spawn(&exe, o.provider_latency_ms).await?;
    let e = &sims.endpoints;
    let urls = callpush::dev::ProviderUrls {
        apns: e.apns.clone(),
        apns_sandbox: None,
        fcm: e.fcm.clone(),
        token_uri: e.token_uri.clone(),
    };
    let local = |port: u16| std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let (api, admin) = (local(procs::free_port()?), local(procs::free_port()?));
    let config = files.write_config_for(&urls, api, admin, Some(&redis_url))?;
    let mut text = std::fs::read_to_string(&config).map_err(BenchError::io("the config"))?;
    text.push_str("\n# The benchmark calls the same identities many times a minute.\n[limits]\ncalls_per_identity_per_min = 1000000000\n");
    // Every outcome is counted off the results stream: it must hold a whole run (a 10-minute
    // soak at 5,000/s is 3,000,000 events; the default cap is 100,000).
    let results_cap = (o.events as u64 + 1_000).max(100_000);
    text.push_str(&format!(
        "\n# The benchmark counts every outcome on the results stream.\n[results]\nmax_len = {results_cap}\n"
    ));
    std::fs::write(&config, text).map_err(BenchError::io("the config"))?;
    let settings = Settings::load(Some(&config))?;
    let keys = callpush::redis_conn::Keys::new(&settings.redis.key_prefix)
        .map_err(|e| BenchError::Protocol(e.to_string()))?;
    let (calls, results) = (keys.named("calls"), keys.named("results"));
    let mut conn = callpush::redis_conn::connect(&settings.redis)
        .await
        .map_err(|e| BenchError::Protocol(format!("connecting to {redis_url}: {e}")))?;
    let () = redis::cmd("DEL")
        .arg(&calls)
        .arg(&results)
        .query_async(&mut conn)
        .await?;
    let redis_pid = redis_pid(&mut conn).await;

    let seeding = Instant::now();
    load::seed(conn.clone(), keys, o.identities, o.bindings, o.mix).await?;
    eprintln!(
        "callpush-bench: {} identities × {} bindings registered in {:.1} s",
        o.identities,
        o.bindings,
        seeding.elapsed().as_secs_f64()
    );

    let bin = match &o.callpush {
        Some(bin) => bin.clone(),
        None => procs::sibling("callpush")?,
    };
    let callpush = procs::callpush_serve(&bin, &config, &files.path("callpush.log"))?;
    wait_for_group(&mut conn, &calls).await?;
    // Warm up: connections, provider tokens and the scripts' SHAs, then forget it.
    let warm = o.identities.clamp(1, 200);
    load::offer(&mut conn, &calls, warm, o.identities, Offer::Burst).await?;
    load::wait_for_results(&mut conn, &results, warm, Duration::from_secs(60)).await?;
    let () = redis::cmd("DEL")
        .arg(&results)
        .query_async(&mut conn)
        .await?;
    sims.reset().await?;

    let pids = [Some(callpush.pid), redis_pid, sims.pid()];
    let before = cpu(&pids);
    let start = Instant::now();
    let start_us = providers::unix_us();
    let stop_rss = tokio_util::sync::CancellationToken::new();
    let rss = tokio::spawn(rss_curve(callpush.pid, stop_rss.clone()));
    let offer = if o.rate == 0 {
        Offer::Burst
    } else {
        Offer::Rate(o.rate)
    };
    load::offer(&mut conn, &calls, o.events, o.identities, offer).await?;
    let timeout = Duration::from_secs(o.timeout_secs);
    load::wait_for_results(&mut conn, &results, o.events, timeout).await?;
    let seconds = start.elapsed().as_secs_f64();
    let after = cpu(&pids);
    stop_rss.cancel();
    let rss_curve = rss.await.unwrap_or_default();
    let arrivals = sims.report().await?;
    let outcomes = load::outcomes(&mut conn, &results).await?;
    let peak_rss = procs::peak_rss_mib(callpush.pid);
    let stage_ms = stages::mean_ms(admin).await;
    callpush.stop(Duration::from_secs(10)).await;

    let (raw_http2, raw_xadd) = if o.limit_seconds == 0 {
        let skipped = || Err("--limit-seconds 0".to_string());
        (skipped(), skipped())
    } else {
        let http2 = limits::raw_http2(&sims.endpoints.apns, files.dir(), o.limit_seconds, 4, 100);
        (http2.await, limits::raw_xadd(&redis_url, 200_000, 32).await)
    };
    drop(sims);
    if let Some(redis) = redis_child {
        redis.stop(Duration::from_secs(5)).await;
    }

    let pushes = arrivals.delivered + arrivals.refused;
    let per_1k = |i: usize, n: u64| match (before[i], after[i]) {
        (Some(b), Some(a)) if n > 0 => Some((a - b) * 1000.0 / n as f64),
        _ => None,
    };
    let delivered = outcomes.get("delivered").copied().unwrap_or(0);
    let push_seconds = (arrivals.last_us.saturating_sub(start_us) as f64 / 1e6).max(1e-6);
    let names = ["p50", "p90", "p99", "p99.9", "max"];
    let latency_ms = names
        .into_iter()
        .zip(arrivals.percentiles_us)
        .map(|(name, us)| (name, us as f64 / 1000.0))
        .collect();
    Ok(Report {
        scenario: scenario(o),
        machine: report::machine(),
        seconds,
        events_per_sec: outcomes.values().sum::<u64>() as f64 / seconds,
        pushes_per_sec: pushes as f64 / push_seconds,
        pushes,
        latency_ms,
        callpush_cpu_s_per_1k_pushes: per_1k(0, pushes),
        redis_cpu_s_per_1k_events: per_1k(1, o.events as u64),
        providers_cpu_s_per_1k_pushes: per_1k(2, pushes),
        callpush_peak_rss_mib: peak_rss,
        callpush_rss_curve_mib: rss_curve,
        stage_mean_ms: stage_ms,
        outcomes,
        errors: (o.events as u64).saturating_sub(delivered) + arrivals.refused,
        raw_http2_per_sec: raw_http2,
        raw_xadd_per_sec: raw_xadd,
    })
}

fn scenario(o: &RunOptions) -> BTreeMap<&'static str, String> {
    let offer = match o.rate {
        0 => "burst".to_string(),
        rate => format!("{rate}/s"),
    };
    BTreeMap::from([
        ("identities", o.identities.to_string()),
        ("bindings", o.bindings.to_string()),
        ("mix", format!("{:?}", o.mix).to_lowercase()),
        ("events", o.events.to_string()),
        ("offer", offer),
        ("provider_latency_ms", o.provider_latency_ms.to_string()),
    ])
}

/// The redis-server's pid (INFO server), when it runs on this machine.
async fn redis_pid(conn: &mut callpush::redis_conn::RedisConn) -> Option<u32> {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(conn)
        .await
        .ok()?;
    let pid = info
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))?
        .trim()
        .parse()
        .ok()?;
    std::path::Path::new(&format!("/proc/{pid}"))
        .exists()
        .then_some(pid)
}

/// Wait until callpush made its consumer group on the calls stream (it is serving then).
async fn wait_for_group(
    conn: &mut callpush::redis_conn::RedisConn,
    calls: &str,
) -> Result<(), BenchError> {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let groups: Result<Vec<redis::Value>, _> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(calls)
            .query_async(conn)
            .await;
        if groups.is_ok_and(|g| !g.is_empty()) {
            return Ok(());
        }
        if Instant::now() > until {
            return Err(BenchError::Protocol(
                "callpush serve did not create its consumer group in 30 s (see its log)".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// callpush's RSS once a second until `stop`.
async fn rss_curve(pid: u32, stop: tokio_util::sync::CancellationToken) -> Vec<f64> {
    let mut curve = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => curve.push(procs::rss_mib(pid).unwrap_or(0.0)),
            () = stop.cancelled() => return curve,
        }
    }
}
