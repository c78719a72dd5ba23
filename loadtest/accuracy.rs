//! How far tollgate's sliding window counter strays from exact limits, on synthetic traffic.
//!
//! `cargo run --release --example accuracy` replays seeded traffic through the real [`Limiter`]
//! (driven by a [`ManualClock`], so nothing sleeps) and through exact models of the same limits,
//! then prints a markdown table. In the spirit of Cloudflare's check of its sliding window
//! counter: what share of requests it decides differently from an exact sliding log.
//!
//! # The exact model
//! A sliding window of `max` per `dur` is a sliding log: a request of `cost` at `t` passes iff the
//! cost admitted in `(t − dur, t]` plus `cost` is at most `max`. A calendar quota counts exactly
//! in its current period (UTC days here), as tollgate does, so its errors should be zero.
//!
//! Because a denied request consumes nothing, what a limiter admits changes what it admits next,
//! so an exact limiter run on its own drifts apart from tollgate and a request-by-request
//! comparison of the two counts one early admission again as a later "wrong" denial. Each of
//! tollgate's decisions is therefore judged against tollgate's own history, by three copies of
//! the model:
//! - **independent**: an exact limiter on its own; its total is the table's "allowed (model)",
//!   what an exact limiter would have let through;
//! - **admitted**: the log of what tollgate admitted. A request tollgate admits while this log
//!   already holds `max` in the last window is *wrongly allowed*: each one puts some sliding
//!   window over the limit;
//! - **room**: what tollgate admitted plus the requests already judged wrongly denied. A request
//!   tollgate denies while this log has room is *wrongly denied*, and takes that room, so a run
//!   of retries into one free unit counts once: the count is how many more requests an exact
//!   limiter would have let through, not how often a client knocked.
//!
//! "peak / max" is the largest exact count of any `(t − dur, t]` (or period) that tollgate's
//! admissions reached, over `max`: 1.00 means no sliding window ever held more than the limit.
//!
//! # Traffic
//! Poisson arrivals per key at a multiple of the limit's rate (`max / dur`); bursty on/off
//! traffic (Poisson at 5× during exponentially long on-phases of one window on average, silent
//! for four windows on average: 1× overall); and many keys at once, each Poisson at its own rate
//! drawn log-uniformly from 0.5× to 10×. Every run is seeded, so the table is the same each time.

use std::collections::VecDeque;
use std::sync::Arc;

use tollgate::limiter::calendar::{Calendar, PeriodKind};
use tollgate::limiter::{
    Check, Clock, Key, KeyPart, Limiter, Limits, ManualClock, Quota, Rule, Window,
};

/// 2026-01-01T00:00:00Z: traffic starts here plus a random phase.
const EPOCH_MS: u64 = 1_767_225_600_000;
const DAY_MS: u64 = 86_400_000;
const SEED: u64 = 0x7011_6a7e;
/// Roughly how many requests one row of the table replays (many-key rows pick their key count
/// from it).
const BUDGET: f64 = 400_000.0;

/// A limit to replay traffic against.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    /// `max` per sliding window of `dur_ms`.
    Sliding { max: u32, dur_ms: u64 },
    /// `max` per UTC day.
    Daily { max: u32 },
}

impl Limit {
    pub fn max(self) -> u32 {
        match self {
            Limit::Sliding { max, .. } | Limit::Daily { max } => max,
        }
    }

    /// The window (or period) length.
    pub fn dur_ms(self) -> u64 {
        match self {
            Limit::Sliding { dur_ms, .. } => dur_ms,
            Limit::Daily { .. } => DAY_MS,
        }
    }

    fn label(self) -> String {
        match self {
            Limit::Sliding { max, dur_ms } if dur_ms % 60_000 == 0 => {
                format!("{max}/{}m", dur_ms / 60_000)
            }
            Limit::Sliding { max, dur_ms } => format!("{max}/{}s", dur_ms / 1000),
            Limit::Daily { max } => format!("{max}/day"),
        }
    }

    /// The limiter rule enforcing this limit.
    fn rule(self) -> Rule {
        let window = match self {
            Limit::Sliding { max, dur_ms } => Window::sliding(dur_ms, max, "p"),
            Limit::Daily { max } => {
                let calendar = Calendar::new(PeriodKind::Day, "UTC", None).expect("UTC exists");
                Window::calendar(Arc::new(Quota::new(calendar, "UTC")), max, "p")
            }
        };
        let limits = Arc::new(Limits {
            windows: Box::new([window]),
        });
        Rule::new("accuracy", limits, false)
    }
}

/// A traffic shape.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// One key, Poisson arrivals at `factor` × the limit's rate.
    Poisson { factor: f64 },
    /// One key, Poisson at 5× during on-phases, silent in between (1× overall).
    Bursty,
    /// `keys` keys (0 = as many as the budget allows, up to 10k), each Poisson at its own rate.
    ManyKeys { keys: usize },
}

impl Shape {
    fn label(self, keys: usize) -> String {
        match self {
            Shape::Poisson { factor } => format!("Poisson {factor}×"),
            Shape::Bursty => "bursty on/off (5× on, 1× mean)".to_owned(),
            Shape::ManyKeys { .. } => format!("{keys} keys, Poisson 0.5–10× each"),
        }
    }
}

/// An exact model of one key's limit.
#[derive(Debug, Default)]
struct ExactLog {
    /// Admitted `(ms, cost)` still inside the window (sliding), or the period's start (daily).
    admitted: VecDeque<(u64, u32)>,
    /// Cost in `admitted`.
    sum: u64,
}

impl ExactLog {
    /// Forgets what no longer counts at `t`, then returns the cost that does.
    fn count_at(&mut self, limit: Limit, t: u64) -> u64 {
        let stale = |at: u64| match limit {
            Limit::Sliding { dur_ms, .. } => at + dur_ms <= t,
            Limit::Daily { .. } => at / DAY_MS != t / DAY_MS,
        };
        while let Some(&(at, cost)) = self.admitted.front() {
            if !stale(at) {
                break;
            }
            self.sum -= u64::from(cost);
            self.admitted.pop_front();
        }
        self.sum
    }

    fn allows(&mut self, limit: Limit, t: u64, cost: u32) -> bool {
        self.count_at(limit, t) + u64::from(cost) <= u64::from(limit.max())
    }

    fn admit(&mut self, t: u64, cost: u32) {
        self.admitted.push_back((t, cost));
        self.sum += u64::from(cost);
    }
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub shape: String,
    pub limit: String,
    pub requests: u64,
    pub allowed_model: u64,
    pub allowed_tollgate: u64,
    pub wrongly_allowed: u64,
    pub wrongly_denied: u64,
    /// The largest exact count of one window (or period) among tollgate's admissions.
    pub peak: u64,
    /// The largest count tollgate admitted in one aligned fixed window (or period).
    pub peak_fixed: u64,
    pub max: u32,
}

impl Outcome {
    /// A row with nothing counted yet.
    fn new(shape: String, limit: String, max: u32) -> Self {
        Self {
            shape,
            limit,
            requests: 0,
            allowed_model: 0,
            allowed_tollgate: 0,
            wrongly_allowed: 0,
            wrongly_denied: 0,
            peak: 0,
            peak_fixed: 0,
            max,
        }
    }

    /// Adds another row's counts (for the totals).
    fn add(&mut self, row: &Outcome) {
        self.requests += row.requests;
        self.allowed_model += row.allowed_model;
        self.allowed_tollgate += row.allowed_tollgate;
        self.wrongly_allowed += row.wrongly_allowed;
        self.wrongly_denied += row.wrongly_denied;
    }

    fn share(&self, n: u64) -> f64 {
        100.0 * n as f64 / self.requests.max(1) as f64
    }

    fn row(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {} | {:.3} | {:.3} | {:.2} |",
            self.shape,
            self.limit,
            self.requests,
            self.allowed_model,
            self.allowed_tollgate,
            self.share(self.wrongly_allowed),
            self.share(self.wrongly_denied),
            self.peak as f64 / f64::from(self.max),
        )
    }
}

/// Exponential variate with the given mean.
fn exponential(rng: &mut fastrand::Rng, mean: f64) -> f64 {
    -mean * (1.0 - rng.f64()).ln()
}

/// Arrival times (ms from the start) of a Poisson process at `per_ms` over `span_ms`; for a
/// bursty key, only during on-phases.
fn arrivals(rng: &mut fastrand::Rng, per_ms: f64, span_ms: f64, bursty: Option<f64>) -> Vec<u64> {
    let mut out = Vec::new();
    let mut t = 0.0;
    match bursty {
        None => loop {
            t += exponential(rng, 1.0 / per_ms);
            if t >= span_ms {
                return out;
            }
            out.push(t as u64);
        },
        Some(window_ms) => loop {
            let on_end = t + exponential(rng, window_ms);
            loop {
                t += exponential(rng, 1.0 / (5.0 * per_ms));
                if t >= on_end.min(span_ms) {
                    break;
                }
                out.push(t as u64);
            }
            t = on_end + exponential(rng, 4.0 * window_ms);
            if t >= span_ms {
                return out;
            }
        },
    }
}

/// The requests of one row, `(ms, key)` in time order, and the number of keys.
fn traffic(shape: Shape, limit: Limit, rng: &mut fastrand::Rng) -> (Vec<(u64, u32)>, usize) {
    let dur = limit.dur_ms() as f64;
    let per_ms = f64::from(limit.max()) / dur;
    // Enough windows to see the counter roll many times, within the budget.
    let windows = |factor: f64, keys: f64| {
        (BUDGET / (f64::from(limit.max()) * factor * keys)).clamp(4.0, 1_000.0)
    };
    let (keys, rates, bursty) = match shape {
        Shape::Poisson { factor } => (1, vec![factor], None),
        Shape::Bursty => (1, vec![1.0], Some(dur)),
        Shape::ManyKeys { keys } => {
            // Mean of a log-uniform 0.5..10 is 9.5 / ln 20.
            let mean = 9.5 / 20f64.ln();
            let keys = match keys {
                0 => (BUDGET / (f64::from(limit.max()) * mean)).clamp(10.0, 10_000.0) as usize,
                n => n,
            };
            let rates = (0..keys).map(|_| 0.5 * 20f64.powf(rng.f64())).collect();
            (keys, rates, None)
        }
    };
    let mean_rate = rates.iter().sum::<f64>() / rates.len() as f64;
    let span = windows(mean_rate, keys as f64) * dur;
    let mut requests = Vec::new();
    for (key, rate) in rates.iter().enumerate() {
        let times = arrivals(rng, per_ms * rate, span, bursty);
        requests.extend(times.into_iter().map(|t| (t, key as u32)));
    }
    requests.sort_unstable();
    (requests, keys)
}

/// Replays one shape against one limit and measures tollgate against the exact models.
pub fn replay(shape: Shape, limit: Limit, seed: u64) -> Outcome {
    let mut rng = fastrand::Rng::with_seed(seed);
    let (requests, keys) = traffic(shape, limit, &mut rng);
    // A random phase against the window grid, and midday for the daily quota.
    let start = EPOCH_MS + DAY_MS / 2 + rng.u64(..limit.dur_ms().min(DAY_MS / 2));
    let names: Vec<String> = (0..keys).map(|k| format!("key-{k:07}")).collect();
    let rule = limit.rule();
    let clock = Arc::new(ManualClock::new(start));
    let limiter = Limiter::new(clock.clone(), keys + 1);
    let mut independent: Vec<ExactLog> = (0..keys).map(|_| ExactLog::default()).collect();
    let mut admitted: Vec<ExactLog> = (0..keys).map(|_| ExactLog::default()).collect();
    let mut room: Vec<ExactLog> = (0..keys).map(|_| ExactLog::default()).collect();
    let mut fixed: Vec<(u64, u64)> = vec![(u64::MAX, 0); keys];
    let mut out = Outcome::new(shape.label(keys), limit.label(), limit.max());
    out.requests = requests.len() as u64;
    for &(offset, key) in &requests {
        let t = start + offset;
        let k = key as usize;
        clock.set(t);
        let check = Check {
            rule: &rule,
            key: Key::single(KeyPart::Str(&names[k])),
            cost: 1,
        };
        let allowed = limiter.check(&[check]).is_allowed();
        debug_assert_eq!(limiter.now_ms(), clock.now_ms());
        if independent[k].allows(limit, t, 1) {
            independent[k].admit(t, 1);
            out.allowed_model += 1;
        }
        if !allowed {
            if room[k].allows(limit, t, 1) {
                out.wrongly_denied += 1;
                room[k].admit(t, 1);
            }
            continue;
        }
        if !admitted[k].allows(limit, t, 1) {
            out.wrongly_allowed += 1;
        }
        out.allowed_tollgate += 1;
        admitted[k].admit(t, 1);
        room[k].admit(t, 1);
        out.peak = out.peak.max(admitted[k].sum);
        let window = t / limit.dur_ms();
        let (idx, count) = &mut fixed[k];
        if *idx != window {
            (*idx, *count) = (window, 0);
        }
        *count += 1;
        out.peak_fixed = out.peak_fixed.max(*count);
    }
    out
}

/// The limits of the table.
pub fn limits() -> [Limit; 4] {
    [
        Limit::Sliding {
            max: 100,
            dur_ms: 1_000,
        },
        Limit::Sliding {
            max: 10,
            dur_ms: 1_000,
        },
        Limit::Sliding {
            max: 1_000,
            dur_ms: 60_000,
        },
        Limit::Daily { max: 10_000 },
    ]
}

/// The shapes of the table.
pub fn shapes() -> Vec<Shape> {
    let mut shapes: Vec<Shape> = [0.5, 0.9, 1.1, 2.0, 10.0]
        .into_iter()
        .map(|factor| Shape::Poisson { factor })
        .collect();
    shapes.push(Shape::Bursty);
    shapes.push(Shape::ManyKeys { keys: 0 });
    shapes
}

fn main() {
    let started = std::time::Instant::now();
    println!("| shape | limit | requests | allowed (model) | allowed (tollgate) | wrongly allowed % | wrongly denied % | peak / max |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    let mut total = Outcome::new("**all**".to_owned(), String::new(), 1);
    for (i, limit) in limits().into_iter().enumerate() {
        for (j, shape) in shapes().into_iter().enumerate() {
            let row = replay(shape, limit, SEED ^ ((i as u64) << 8 | j as u64));
            println!("{}", row.row());
            total.add(&row);
        }
    }
    println!(
        "| **all** | | {} | {} | {} | {:.3} | {:.3} | |",
        total.requests,
        total.allowed_model,
        total.allowed_tollgate,
        total.share(total.wrongly_allowed),
        total.share(total.wrongly_denied),
    );
    eprintln!(
        "replayed {} requests in {:.1?}",
        total.requests,
        started.elapsed()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const HUNDRED_PER_S: Limit = Limit::Sliding {
        max: 100,
        dur_ms: 1_000,
    };

    #[test]
    fn a_hot_key_never_gets_more_than_max_in_an_aligned_window() {
        for seed in 1..4 {
            let out = replay(Shape::Poisson { factor: 10.0 }, HUNDRED_PER_S, seed);
            assert!(out.requests > 10_000, "{out:?}");
            assert_eq!(out.peak_fixed, 100, "{out:?}");
            // The counter's documented bound: never more than max + the previous window's count.
            assert!(out.peak <= 200, "{out:?}");
        }
    }

    #[test]
    fn a_key_under_half_the_limit_is_never_wrongly_allowed() {
        let out = replay(Shape::Poisson { factor: 0.5 }, HUNDRED_PER_S, 7);
        assert_eq!(out.wrongly_allowed, 0, "{out:?}");
        assert!(out.peak <= 100, "{out:?}");
    }

    #[test]
    fn a_daily_quota_decides_exactly_as_the_model() {
        for shape in [Shape::Poisson { factor: 2.0 }, Shape::Bursty] {
            let out = replay(shape, Limit::Daily { max: 500 }, 11);
            assert!(out.allowed_tollgate < out.requests, "{out:?}");
            assert_eq!((out.wrongly_allowed, out.wrongly_denied), (0, 0), "{out:?}");
            assert_eq!(out.allowed_model, out.allowed_tollgate, "{out:?}");
            assert_eq!(out.peak, 500, "{out:?}");
        }
    }

    #[test]
    fn many_keys_are_counted_apart() {
        let out = replay(
            Shape::ManyKeys { keys: 200 },
            Limit::Sliding {
                max: 10,
                dur_ms: 1_000,
            },
            3,
        );
        assert!(out.peak_fixed <= 10, "{out:?}");
        // Every key gets its own budget: far more than one key's max is admitted per window.
        assert!(out.allowed_tollgate > 200 * 10, "{out:?}");
    }
}
