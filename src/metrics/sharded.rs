//! Series of the event path split per thread, exported as one.
//!
//! Every event observes five stage durations and its latency, and every push its duration, the
//! pushes in flight and its outcome. A Prometheus counter or histogram is a few atomics on one
//! cache line: with both runtime threads updating the same series, each update waits for the
//! line to come over from the other core (`StageClock::lap` alone was 2.4 % of callpush's CPU
//! in the 100,000-event burst, most of it on its first atomic). A [`ShardedVec`] holds
//! [`SHARDS`] copies of a metric vector with one description; a thread always updates its own
//! copy ([`Sharded::local`]), and a scrape adds the copies up, series by series, so `/metrics`
//! reads exactly as one vector would.

use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Metric, MetricFamily, MetricType};

/// Copies of each sharded vector: threads beyond it share copies (still far fewer per line).
pub(crate) const SHARDS: usize = 8;

/// The copy this thread updates.
fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

/// [`SHARDS`] copies of a metric vector, registered as one collector.
#[derive(Clone)]
pub(crate) struct ShardedVec<V> {
    shards: Vec<V>,
}

impl<V: Collector + Clone + 'static> ShardedVec<V> {
    /// Copies made by `make`, registered on `registry` as one.
    pub(crate) fn register(
        registry: &prometheus::Registry,
        make: impl Fn() -> prometheus::Result<V>,
    ) -> prometheus::Result<ShardedVec<V>> {
        let shards = (0..SHARDS).map(|_| make()).collect::<Result<_, _>>()?;
        let sharded = ShardedVec { shards };
        registry.register(Box::new(sharded.clone()))?;
        Ok(sharded)
    }

    /// One series' handle in every copy (`child` picks the series).
    pub(crate) fn handle<T>(&self, child: impl Fn(&V) -> T) -> Sharded<T> {
        Sharded(self.shards.iter().map(child).collect())
    }

    /// The first copy: for series on rare paths, where contention does not matter.
    pub(crate) fn any(&self) -> &V {
        &self.shards[0]
    }
}

impl<V: Collector> Collector for ShardedVec<V> {
    fn desc(&self) -> Vec<&Desc> {
        self.shards[0].desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut copies = self.shards.iter().map(Collector::collect);
        let mut families = copies.next().unwrap_or_default();
        for copy in copies {
            for family in copy {
                match families.iter_mut().find(|f| f.name() == family.name()) {
                    Some(into) => merge_family(into, family),
                    None => families.push(family),
                }
            }
        }
        families
    }
}

/// Add the series of `from` to those of `into` (same name, type and labels).
fn merge_family(into: &mut MetricFamily, mut from: MetricFamily) {
    let kind = into.get_field_type();
    for metric in std::mem::take(from.mut_metric()) {
        let same = into
            .mut_metric()
            .iter_mut()
            .find(|m| m.get_label() == metric.get_label());
        match same {
            Some(same) => add(kind, same, &metric),
            None => into.mut_metric().push(metric),
        }
    }
}

/// `into += from`, for one series.
fn add(kind: MetricType, into: &mut Metric, from: &Metric) {
    match kind {
        MetricType::COUNTER => {
            let mut c = into.get_counter().clone();
            c.set_value(c.get_value() + from.get_counter().get_value());
            into.set_counter(c);
        }
        MetricType::GAUGE => {
            let mut g = into.get_gauge().clone();
            g.set_value(g.get_value() + from.get_gauge().get_value());
            into.set_gauge(g);
        }
        MetricType::HISTOGRAM => {
            let mut h = into.get_histogram().clone();
            let f = from.get_histogram();
            h.set_sample_count(h.get_sample_count() + f.get_sample_count());
            h.set_sample_sum(h.get_sample_sum() + f.get_sample_sum());
            let buckets = h
                .get_bucket()
                .iter()
                .zip(f.get_bucket())
                .map(|(a, b)| {
                    let mut a = a.clone();
                    a.set_cumulative_count(a.cumulative_count() + b.cumulative_count());
                    a
                })
                .collect();
            h.set_bucket(buckets);
            into.set_histogram(h);
        }
        // Not sharded: summaries and untyped series are not used on the event path.
        MetricType::SUMMARY | MetricType::UNTYPED => {}
    }
}

/// One series' handle in every copy of a [`ShardedVec`].
#[derive(Clone)]
pub(crate) struct Sharded<T>(Vec<T>);

impl<T> Sharded<T> {
    /// This thread's copy: the one to update.
    pub(crate) fn local(&self) -> &T {
        &self.0[shard() % self.0.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

    fn text(registry: &Registry) -> String {
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn updates_from_many_threads_scrape_as_one_vector_would() {
        let sharded_registry = Registry::new();
        let plain_registry = Registry::new();
        let opts = || HistogramOpts::new("t_seconds", "help").buckets(vec![0.1, 1.0]);
        let sharded =
            ShardedVec::register(&sharded_registry, || HistogramVec::new(opts(), &["stage"]))
                .unwrap();
        let plain = HistogramVec::new(opts(), &["stage"]).unwrap();
        plain_registry.register(Box::new(plain.clone())).unwrap();
        let counters = ShardedVec::register(&sharded_registry, || {
            IntCounterVec::new(Opts::new("t_total", "help"), &["outcome"])
        })
        .unwrap();
        let plain_counter = IntCounterVec::new(Opts::new("t_total", "help"), &["outcome"]).unwrap();
        plain_registry
            .register(Box::new(plain_counter.clone()))
            .unwrap();
        let read = sharded.handle(|v| v.with_label_values(&["read"]));
        let push = sharded.handle(|v| v.with_label_values(&["push"]));
        let delivered = counters.handle(|v| v.with_label_values(&["delivered"]));
        std::thread::scope(|s| {
            for t in 0..12 {
                let (read, push, delivered) = (&read, &push, &delivered);
                s.spawn(move || {
                    for i in 0..100 {
                        read.local().observe(0.0625);
                        if (i + t) % 3 == 0 {
                            push.local().observe(0.5);
                        }
                        delivered.local().inc();
                    }
                });
            }
        });
        for t in 0..12 {
            for i in 0..100 {
                plain.with_label_values(&["read"]).observe(0.0625);
                if (i + t) % 3 == 0 {
                    plain.with_label_values(&["push"]).observe(0.5);
                }
                plain_counter.with_label_values(&["delivered"]).inc();
            }
        }
        // 12 threads over 8 copies: several copies hold each series, and they add up.
        let got = text(&sharded_registry);
        assert!(
            got.contains("t_seconds_count{stage=\"read\"} 1200"),
            "{got}"
        );
        assert!(got.contains("t_total{outcome=\"delivered\"} 1200"), "{got}");
        let mut got_lines: Vec<&str> = got.lines().collect();
        let want = text(&plain_registry);
        let mut want_lines: Vec<&str> = want.lines().collect();
        got_lines.sort();
        want_lines.sort();
        assert_eq!(got_lines, want_lines);
    }
}
