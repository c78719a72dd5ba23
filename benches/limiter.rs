//! Limiter benchmarks: one decision for an existing key (100k / 1M keys, 1 / 2 threads), inserting
//! a new key, and resident memory per tracked key. Seeded xorshift, no `rand` dependency.
//!
//! What is timed is `Limiter::check_at` and building its one-part `Check` (as the proxy does per
//! request), nothing else: the time is read once per sample, not per decision (so the clock is not
//! in the loop); key indices are drawn beforehand (seeded xorshift, multiply-shift into `0..keys`)
//! into a table of 64k that the loop walks, so no RNG work is timed; every picked key was inserted
//! beforehand, so the existing-key cases never insert.
//!
//! Figures, per case (criterion's `time` line, middle value):
//! - `decision_existing_key/1_thread/N`: ns per decision on one thread, `N` keys tracked.
//! - `decision_existing_key/2_threads/N`: wall time / (2 × decisions), i.e. the inverse of the
//!   aggregate throughput of two threads hammering the same table (their start is synchronised
//!   on a barrier, so thread spawning is not timed).
//! - `decision_new_key_insert`: ns per decision that inserts a new key, into a table that grows
//!   from empty during the sample (hash-table growth included, dropping the table not).
//! - `floor_std_hashmap/N`: the same random lookups (foldhash of the IP, then `get_mut` and one
//!   counter bump) in a plain `std` `HashMap<u64, [u64; 8]>` of `N` keys (a 64-byte value, like
//!   an entry): the cache and TLB misses any hash table of this size pays, for comparison.
//!   `floor_std_hashmap_locked/N`: the same under an uncontended `Mutex` per lookup, as each
//!   DashMap shard has: a locked instruction is a full fence, so the misses of consecutive
//!   lookups stop overlapping, and this is the floor a locked table pays one request at a time.
//! - bytes per tracked key: printed first, the growth of VmRSS while inserting 900k then 1M keys
//!   (hashbrown doubles its buckets once 7/8 full, so 1M lands just past a doubling and 900k
//!   just before it: the two bracket the cost per key).

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use tollgate::limiter::{
    Check, IdentityHasher, Key, KeyPart, Limiter, Limits, MonotonicClock, Rule,
};

const MINUTE_MS: u64 = 60_000;

/// xorshift64: deterministic, good enough to pick keys.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A key index in `0..keys` (Lemire's multiply-shift: no division in the loop).
    fn below(&mut self, keys: u64) -> u64 {
        ((self.next() >> 32) * keys) >> 32
    }
}

/// Key `i` is a client IPv4 address, as with a per-IP rule.
fn check(rule: &Rule, i: u64) -> Check<'_, 'static> {
    let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32.wrapping_add(i as u32)));
    Check {
        rule,
        key: Key::single(KeyPart::Ip(ip)),
        cost: 1,
    }
}

/// One 1-minute window high enough that every benchmarked request is allowed (the common path).
fn rule() -> Rule {
    Rule::new(
        "bench",
        Limits::new([(MINUTE_MS, u32::MAX, "bench")]),
        false,
    )
}

fn empty_limiter() -> Limiter {
    Limiter::new(Arc::new(MonotonicClock::new()), usize::MAX)
}

fn populated(rule: &Rule, keys: u64) -> Limiter {
    let limiter = empty_limiter();
    for i in 0..keys {
        limiter.check_at(0, &[check(rule, i)]);
    }
    assert_eq!(limiter.tracked_keys() as u64, keys);
    limiter
}

/// Key indices in `0..keys`, drawn once so the timed loops only read them.
fn picks(keys: u64, seed: u64) -> Vec<u32> {
    let mut rng = XorShift(seed);
    (0..PICKS).map(|_| rng.below(keys) as u32).collect()
}

/// Pre-drawn key indices per table (a power of two, so the loop masks instead of dividing).
const PICKS: usize = 1 << 16;

/// `iters` decisions on existing keys, all at `now_ms`.
fn decide_existing(limiter: &Limiter, rule: &Rule, picks: &[u32], iters: u64) {
    let now_ms = limiter.now_ms();
    for i in 0..iters as usize {
        let key = picks[i & (PICKS - 1)];
        black_box(limiter.check_at(now_ms, &[check(rule, u64::from(key))]));
    }
}

/// `iters` decisions on each of `threads` threads; returns wall time / threads.
fn hammer(limiter: &Limiter, rule: &Rule, keys: u64, threads: u32, iters: u64) -> Duration {
    let picks: Vec<_> = (0..threads)
        .map(|t| picks(keys, 0x9e37_79b9_7f4a_7c15 ^ u64::from(t + 1)))
        .collect();
    let barrier = Barrier::new(threads as usize + 1);
    std::thread::scope(|s| {
        for picks in &picks {
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                decide_existing(limiter, rule, picks, iters);
                barrier.wait();
            });
        }
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        start.elapsed() / threads
    })
}

fn existing_key(c: &mut Criterion) {
    let rule = rule();
    let mut group = c.benchmark_group("decision_existing_key");
    for keys in [100_000u64, 1_000_000] {
        let limiter = populated(&rule, keys);
        let picks = picks(keys, 42);
        group.bench_with_input(BenchmarkId::new("1_thread", keys), &keys, |b, _| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                decide_existing(&limiter, &rule, &picks, iters);
                start.elapsed()
            });
        });
        group.bench_with_input(BenchmarkId::new("2_threads", keys), &keys, |b, &keys| {
            b.iter_custom(|iters| hammer(&limiter, &rule, keys, 2, iters));
        });
    }
    group.finish();
}

/// The same lookups in a plain `HashMap` with entry-sized values, bare and behind a lock: the
/// floor any table of this size pays.
fn floor(c: &mut Criterion) {
    let state = foldhash::fast::RandomState::default();
    let hash = |i: u64| state.hash_one(Ipv4Addr::from(0x0a00_0000u32.wrapping_add(i as u32)));
    for (name, locked) in [
        ("floor_std_hashmap", false),
        ("floor_std_hashmap_locked", true),
    ] {
        let mut group = c.benchmark_group(name);
        for keys in [100_000u64, 1_000_000] {
            let mut map: HashMap<u64, [u64; 8], BuildHasherDefault<IdentityHasher>> =
                HashMap::default();
            for i in 0..keys {
                map.insert(hash(i), [0; 8]);
            }
            let map = Mutex::new(map);
            let mut bare = HashMap::default();
            if !locked {
                std::mem::swap(&mut bare, &mut *map.lock().unwrap());
            }
            let picks = picks(keys, 42);
            group.bench_with_input(BenchmarkId::from_parameter(keys), &keys, |b, _| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for i in 0..iters as usize {
                        let key = hash(u64::from(picks[i & (PICKS - 1)]));
                        let mut guard = locked.then(|| map.lock().unwrap());
                        let map = guard.as_deref_mut().unwrap_or(&mut bare);
                        if let Some(v) = map.get_mut(&key) {
                            v[0] += 1;
                        }
                    }
                    start.elapsed()
                });
            });
        }
        group.finish();
    }
}

fn new_key(c: &mut Criterion) {
    let rule = rule();
    c.bench_function("decision_new_key_insert", |b| {
        b.iter_custom(|iters| {
            let limiter = empty_limiter();
            let start = Instant::now();
            for i in 0..iters {
                black_box(limiter.check_at(0, &[check(&rule, i)]));
            }
            let elapsed = start.elapsed();
            drop(limiter);
            elapsed
        });
    });
}

/// Resident set size in bytes, from /proc/self/status.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn bytes_per_key(_: &mut Criterion) {
    let rule = rule();
    let limiter = empty_limiter();
    let before = rss_bytes();
    let mut inserted = 0;
    for keys in [900_000u64, 1_000_000] {
        for i in inserted..keys {
            limiter.check_at(0, &[check(&rule, i)]);
        }
        inserted = keys;
        assert_eq!(limiter.tracked_keys() as u64, keys);
        println!(
            "bytes_per_tracked_key (VmRSS growth, {keys} IPv4 keys, one 1-minute window): {:.1}",
            rss_bytes().saturating_sub(before) as f64 / keys as f64
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bytes_per_key, existing_key, floor, new_key
}
criterion_main!(benches);
