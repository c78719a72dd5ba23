//! Limiter benchmarks: one decision for an existing key (100k / 1M keys; IPv4 and API-key keys;
//! with and without the usage log; 1 / 2 threads), inserting a new key, the floor any hash table
//! pays, and resident memory per tracked key. Seeded xorshift, no `rand` dependency.
//!
//! What is timed is `Limiter::check_at` and building its one-part `Check` (as the proxy does per
//! request), nothing else: the time is read once per sample, not per decision (so the clock is not
//! in the loop); keys are drawn beforehand (seeded xorshift, multiply-shift into `0..keys`) into a
//! table of 64k that the loop walks in order, so no RNG work is timed and the key's bytes are in
//! cache, as a request's header is when the proxy extracts it; every picked key was inserted
//! beforehand, so the existing-key cases never insert.
//!
//! Figures, per case (criterion's `time` line, middle value):
//! - `decision_existing_key/{ipv4,api_key}[+usage_log]/1_thread/N`: ns per decision on one
//!   thread, `N` keys tracked. `ipv4` keys are client addresses (`KeyPart::Ip`), `api_key` keys are
//!   header values such as `key-0012345` (`KeyPart::Str`). `+usage_log` records every allowed
//!   request in a [`UsageLog`], as a limiter with a store configured does (the log holds one
//!   hour row per key, as between two flushes).
//! - `.../2_threads/N`: wall time / (2 × decisions), i.e. the inverse of the aggregate throughput
//!   of two threads hammering the same table (their start is synchronised on a barrier, so thread
//!   spawning is not timed).
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
//!   just before it: the two bracket the cost per key), for IPv4 keys without the usage log and
//!   API keys with it.
//!
//! Instruction counts: `LIMITER_BENCH_CASE=ipv4/100000` (or `api_key+usage_log/1000000`, ...)
//! skips criterion and runs 1M decisions of that case in `counted_decisions`, for
//! `valgrind --tool=callgrind --toggle-collect='*counted_decisions*'`: its `Ir` over 1M is
//! instructions per decision.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion};
use tollgate::limiter::{
    Check, IdentityHasher, Key, KeyPart, Limiter, Limits, MonotonicClock, Rule, UsageLog,
};

const MINUTE_MS: u64 = 60_000;

/// Pre-drawn keys per table (a power of two, so the loop masks instead of dividing).
const PICKS: usize = 1 << 16;

/// Bytes of an API key: `key-` and seven digits.
const API_KEY_LEN: usize = 11;

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

/// What a key is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    /// A client IPv4 address, as with a per-IP rule.
    Ipv4,
    /// A header value such as `key-0012345`, as with `header:x-api-key`.
    ApiKey,
}

/// One benchmarked configuration.
#[derive(Debug, Clone, Copy)]
struct Case {
    kind: KeyKind,
    usage_log: bool,
}

impl Case {
    const ALL: [Case; 4] = [
        Case::new(KeyKind::Ipv4, false),
        Case::new(KeyKind::ApiKey, false),
        Case::new(KeyKind::Ipv4, true),
        Case::new(KeyKind::ApiKey, true),
    ];

    const fn new(kind: KeyKind, usage_log: bool) -> Self {
        Self { kind, usage_log }
    }

    fn name(self) -> String {
        let kind = match self.kind {
            KeyKind::Ipv4 => "ipv4",
            KeyKind::ApiKey => "api_key",
        };
        let log = if self.usage_log { "+usage_log" } else { "" };
        format!("{kind}{log}")
    }

    fn limiter(self) -> Limiter {
        let limiter = Limiter::new(Arc::new(MonotonicClock::new()), usize::MAX);
        if self.usage_log {
            limiter.with_usage_log(Arc::new(UsageLog::new()))
        } else {
            limiter
        }
    }
}

/// The keys of one loop: `PICKS` of them, drawn from `0..keys`, stored ready to borrow.
enum Picks {
    Ipv4(Vec<Ipv4Addr>),
    /// `PICKS` API keys back to back, `API_KEY_LEN` bytes each.
    ApiKey(String),
}

impl Picks {
    fn draw(kind: KeyKind, keys: u64, seed: u64) -> Self {
        let mut rng = XorShift(seed);
        let mut indices = (0..PICKS).map(|_| rng.below(keys));
        match kind {
            KeyKind::Ipv4 => Picks::Ipv4(indices.map(ipv4).collect()),
            KeyKind::ApiKey => Picks::ApiKey(indices.by_ref().map(api_key).collect()),
        }
    }

    /// The `i`-th key (modulo `PICKS`).
    #[inline]
    fn key(&self, i: usize) -> Key<'_> {
        let i = i & (PICKS - 1);
        Key::single(match self {
            Picks::Ipv4(ips) => KeyPart::Ip(IpAddr::V4(ips[i])),
            Picks::ApiKey(text) => KeyPart::Str(&text[i * API_KEY_LEN..(i + 1) * API_KEY_LEN]),
        })
    }
}

fn ipv4(i: u64) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000u32.wrapping_add(i as u32))
}

fn api_key(i: u64) -> String {
    format!("key-{i:07}")
}

/// One 1-minute window high enough that every benchmarked request is allowed (the common path).
fn rule() -> Rule {
    Rule::new(
        "bench",
        Limits::new([(MINUTE_MS, u32::MAX, "bench")]),
        false,
    )
}

/// Inserts keys `from..to` of `kind` at `now_ms`.
fn insert(limiter: &Limiter, rule: &Rule, kind: KeyKind, from: u64, to: u64, now_ms: u64) {
    for i in from..to {
        let key = match kind {
            KeyKind::Ipv4 => KeyPart::Ip(IpAddr::V4(ipv4(i))),
            KeyKind::ApiKey => KeyPart::Str(&api_key(i)),
        };
        let check = Check {
            rule,
            key: Key::single(key),
            cost: 1,
        };
        limiter.check_at(now_ms, &[check]);
    }
}

/// A limiter holding `keys` keys, each seen (and logged) once now.
fn populated(case: Case, rule: &Rule, keys: u64) -> Limiter {
    let limiter = case.limiter();
    insert(&limiter, rule, case.kind, 0, keys, limiter.now_ms());
    assert_eq!(limiter.tracked_keys() as u64, keys);
    limiter
}

/// `iters` decisions on existing keys, all at `now_ms`.
fn decide_existing(limiter: &Limiter, rule: &Rule, picks: &Picks, iters: u64) {
    let now_ms = limiter.now_ms();
    for i in 0..iters as usize {
        let check = Check {
            rule,
            key: picks.key(i),
            cost: 1,
        };
        // By reference: the proxy matches on the decision where it lands, it does not copy it.
        let decision = limiter.check_at(now_ms, &[check]);
        black_box(&decision);
    }
}

/// [`decide_existing`] under a name callgrind can toggle collection on.
#[inline(never)]
fn counted_decisions(limiter: &Limiter, rule: &Rule, picks: &Picks, iters: u64) {
    decide_existing(limiter, rule, picks, iters);
}

/// `iters` decisions on each of `threads` threads; returns wall time / threads.
fn hammer(limiter: &Limiter, rule: &Rule, picks: &[Picks], iters: u64) -> Duration {
    let barrier = Barrier::new(picks.len() + 1);
    std::thread::scope(|s| {
        for picks in picks {
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
        start.elapsed() / picks.len() as u32
    })
}

fn existing_key(c: &mut Criterion) {
    let rule = rule();
    let mut group = c.benchmark_group("decision_existing_key");
    for case in Case::ALL {
        for keys in [100_000u64, 1_000_000] {
            let limiter = populated(case, &rule, keys);
            let picks = Picks::draw(case.kind, keys, 42);
            let id = BenchmarkId::new(format!("{}/1_thread", case.name()), keys);
            group.bench_with_input(id, &keys, |b, _| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    decide_existing(&limiter, &rule, &picks, iters);
                    start.elapsed()
                });
            });
            // Two threads for the plain case and the one a default deployment runs.
            if case.usage_log == (case.kind == KeyKind::ApiKey) {
                let picks: Vec<_> = (1..=2)
                    .map(|t| Picks::draw(case.kind, keys, 0x9e37_79b9_7f4a_7c15 ^ t))
                    .collect();
                let id = BenchmarkId::new(format!("{}/2_threads", case.name()), keys);
                group.bench_with_input(id, &keys, |b, _| {
                    b.iter_custom(|iters| hammer(&limiter, &rule, &picks, iters));
                });
            }
        }
    }
    group.finish();
}

/// The same lookups in a plain `HashMap` with entry-sized values, bare and behind a lock: the
/// floor any table of this size pays.
fn floor(c: &mut Criterion) {
    let state = foldhash::fast::RandomState::default();
    let hash = |ip: Ipv4Addr| state.hash_one(ip);
    for (name, locked) in [
        ("floor_std_hashmap", false),
        ("floor_std_hashmap_locked", true),
    ] {
        let mut group = c.benchmark_group(name);
        for keys in [100_000u64, 1_000_000] {
            let mut map: HashMap<u64, [u64; 8], BuildHasherDefault<IdentityHasher>> =
                HashMap::default();
            for i in 0..keys {
                map.insert(hash(ipv4(i)), [0; 8]);
            }
            let map = Mutex::new(map);
            let mut bare = HashMap::default();
            if !locked {
                std::mem::swap(&mut bare, &mut *map.lock().unwrap());
            }
            let Picks::Ipv4(picks) = Picks::draw(KeyKind::Ipv4, keys, 42) else {
                unreachable!("drew IPv4 keys")
            };
            group.bench_with_input(BenchmarkId::from_parameter(keys), &keys, |b, _| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for i in 0..iters as usize {
                        let key = hash(picks[i & (PICKS - 1)]);
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
            let limiter = Case::new(KeyKind::Ipv4, false).limiter();
            let start = Instant::now();
            for i in 0..iters {
                let check = Check {
                    rule: &rule,
                    key: Key::single(KeyPart::Ip(IpAddr::V4(ipv4(i)))),
                    cost: 1,
                };
                black_box(limiter.check_at(0, &[check]));
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
    for case in [
        Case::new(KeyKind::Ipv4, false),
        Case::new(KeyKind::ApiKey, true),
    ] {
        let limiter = case.limiter();
        let now_ms = limiter.now_ms();
        let before = rss_bytes();
        let mut inserted = 0;
        for keys in [900_000u64, 1_000_000] {
            insert(&limiter, &rule, case.kind, inserted, keys, now_ms);
            inserted = keys;
            assert_eq!(limiter.tracked_keys() as u64, keys);
            println!(
                "bytes_per_tracked_key/{} (VmRSS growth, {keys} keys, one 1-minute window): {:.1}",
                case.name(),
                rss_bytes().saturating_sub(before) as f64 / keys as f64
            );
        }
    }
}

/// Runs one case's decisions for callgrind (see the module docs), e.g. `api_key+usage_log/100000`.
fn count_instructions(spec: &str) {
    let (name, keys) = spec.split_once('/').expect("CASE/KEYS");
    let keys: u64 = keys.parse().expect("KEYS is a number");
    let case = Case::ALL
        .into_iter()
        .find(|c| c.name() == name)
        .expect("a case name: ipv4, api_key, ipv4+usage_log, api_key+usage_log");
    let rule = rule();
    let limiter = populated(case, &rule, keys);
    let picks = Picks::draw(case.kind, keys, 42);
    decide_existing(&limiter, &rule, &picks, PICKS as u64);
    counted_decisions(&limiter, &rule, &picks, 1_000_000);
    println!("{spec}: 1000000 decisions in counted_decisions");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bytes_per_key, existing_key, floor, new_key
}

fn main() {
    if let Ok(spec) = std::env::var("LIMITER_BENCH_CASE") {
        return count_instructions(&spec);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
