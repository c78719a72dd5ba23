//! Latency histograms of our own: fixed buckets of atomics, rendered into the exposition at
//! scrape time. Recording is a bucket search and two relaxed atomic adds, with no clock read;
//! the exporter's histograms queued each sample with a timestamp of its own (about 260
//! instructions a sample, two samples a proxied request).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Bucket upper bounds in seconds: 50 µs to 30 s, so both a loopback hop and a slow upstream
/// land in a real bucket.
pub const BUCKETS: [f64; 18] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0,
];

/// [`BUCKETS`] in nanoseconds.
const BOUNDS_NS: [u64; 18] = {
    let mut ns = [0u64; 18];
    let micros: [u64; 18] = [
        50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
        1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000,
    ];
    let mut i = 0;
    while i < 18 {
        ns[i] = micros[i] * 1_000;
        i += 1;
    }
    ns
};

/// One series: a count per bucket (the last past every bound) and the sum of what was recorded.
#[derive(Debug, Default)]
pub struct Series {
    buckets: [AtomicU64; 19],
    sum_ns: AtomicU64,
}

/// A handle to one series; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Histogram(Arc<Series>);

impl Histogram {
    pub fn new(series: Arc<Series>) -> Self {
        Self(series)
    }

    pub fn record(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = BOUNDS_NS
            .iter()
            .position(|&b| ns <= b)
            .unwrap_or(BOUNDS_NS.len());
        self.0.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.0.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }
}

impl Series {
    /// The series' lines of the text exposition: cumulative buckets, sum and count. `labels` is
    /// the series' label list as rendered (`route="api"`), possibly empty.
    pub fn render(&self, name: &str, labels: &str, out: &mut String) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut total = 0u64;
        for (i, bucket) in self.buckets.iter().enumerate() {
            total += bucket.load(Ordering::Relaxed);
            let le = BUCKETS.get(i).map_or("+Inf".to_string(), f64::to_string);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {total}");
        }
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let braced = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braced} {sum}");
        let _ = writeln!(out, "{name}_count{braced} {total}");
    }
}

/// `key="value"` pairs, comma-separated, values escaped as the text format requires.
pub fn label_text(labels: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let v = v
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = write!(out, "{k}=\"{v}\"");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_the_buckets_in_nanoseconds() {
        for (ns, secs) in BOUNDS_NS.iter().zip(BUCKETS) {
            assert_eq!(*ns, (secs * 1e9).round() as u64);
        }
    }

    #[test]
    fn samples_land_in_the_smallest_bucket_that_holds_them_and_render_cumulative() {
        let h = Histogram::default();
        h.record(Duration::from_micros(50)); // on a bound: that bucket
        h.record(Duration::from_micros(51));
        h.record(Duration::from_millis(3));
        h.record(Duration::from_secs(60)); // past every bound
        let mut text = String::new();
        h.0.render("x_seconds", "route=\"a\"", &mut text);
        let line = |le: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("x_seconds_bucket{{route=\"a\",le=\"{le}\"}} ")))
                .map(|l| l.rsplit(' ').next().unwrap().to_string())
        };
        assert_eq!(line("0.00005").as_deref(), Some("1"));
        assert_eq!(line("0.0001").as_deref(), Some("2"));
        assert_eq!(line("0.0025").as_deref(), Some("2"));
        assert_eq!(line("0.005").as_deref(), Some("3"));
        assert_eq!(line("30").as_deref(), Some("3"));
        assert_eq!(line("+Inf").as_deref(), Some("4"));
        assert!(text.contains("x_seconds_count{route=\"a\"} 4\n"), "{text}");
        assert!(
            text.contains("x_seconds_sum{route=\"a\"} 60.003101\n"),
            "{text}"
        );
        let mut bare = String::new();
        Histogram::default().0.render("y", "", &mut bare);
        assert!(bare.contains("y_bucket{le=\"+Inf\"} 0\n") && bare.contains("y_count 0\n"));
        let labels = [("route".into(), "a\"b\\c".into())];
        assert_eq!(label_text(&labels), r#"route="a\"b\\c""#);
    }
}
