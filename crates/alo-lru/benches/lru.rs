//! `alo-lru` against the caches people would pick instead, side by side in the same criterion
//! groups so that one report shows the ratios.
//!
//! Groups (every row is one operation, so `time` is nanoseconds per op and the throughput line
//! is ops/s, except `mixed_zipf_2threads`, where one iteration is one op on each of two threads):
//! - `get_hit`: a full cache, `get` of a key that is present (the present keys are visited in
//!   a shuffled cycle, so each get relinks a node that is not already at the front). Beside
//!   `alo`, two alo-only entries measure the cost of opt-in expiry on the same keys: a cache of
//!   `Expiring<Bytes>` read through `get_unexpired(&k, Instant::now)`, its entries without a
//!   deadline (`alo_ttl_no_deadline`: no clock read) or with one far in the future
//!   (`alo_ttl_deadline`: one real clock read per get). Their anchor is plain `alo`.
//! - `insert_evict`: a full cache, every insert is a new key and evicts one entry.
//! - `mixed_zipf`: 80% get / 20% insert, keys Zipf-distributed over 100,000 keys (exponent 1.0),
//!   the cache holding 10% of the key space.
//! - `mixed_zipf_2threads`: the same mix on two threads at once (each with its own sequence)
//!   against the thread-safe caches. Each contender's hit ratio is printed before it runs.
//!
//! # Same capacity for everyone
//! Every entry is a `u64` key and a 64-byte `bytes::Bytes` value, so it weighs
//! `8 + 64 = 72` bytes under alo's default `ByteWeigher`. A cache of [`ENTRIES`] entries is then
//! a byte budget of `ENTRIES * 72` ([`BUDGET`]) for the byte-bounded caches (alo, moka,
//! quick_cache with a weigher) and a count of `ENTRIES` for the count-bounded one (`lru`).
//! `clru` bounds `len + total weight`, i.e. charges every entry 1 + its weight: it gets
//! `ENTRIES * 73`, which holds exactly `ENTRIES` entries of weight 72.
//!
//! # Hashers (each crate's default, what users get out of the box)
//! - alo (`Lru`, `ShardedLru`): hashbrown's default, foldhash (fast).
//! - `lru`: hashbrown's default (its default `hashbrown` feature), foldhash (fast).
//! - `clru`: `std::collections::hash_map::RandomState`, SipHash-1-3.
//! - `quick_cache`: its `DefaultHashBuilder`, foldhash (quality).
//! - `moka`: `std::collections::hash_map::RandomState`, SipHash-1-3.
//!
//! # Eviction policies
//! alo, `lru` and `clru` are strict LRU. `quick_cache` is S3-FIFO/CLOCK-like and `moka` is
//! TinyLFU (admission by frequency) over LRU, so their hit ratios differ on the same sequence:
//! that is why the Zipf groups print each contender's hit ratio next to its throughput.

use std::hint::black_box;
use std::num::NonZeroUsize;
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use alo_lru::Expiring;
use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{Bencher, BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Zipf};

/// Entries every cache holds when full: 10% of [`KEY_SPACE`].
const ENTRIES: usize = 10_000;
/// Bytes of every value.
const VALUE_LEN: usize = 64;
/// What one entry weighs: an 8-byte `u64` key and a [`VALUE_LEN`]-byte value.
const ENTRY_BYTES: usize = size_of::<u64>() + VALUE_LEN;
/// The byte budget equal to [`ENTRIES`] entries.
const BUDGET: usize = ENTRIES * ENTRY_BYTES;
/// Distinct keys the Zipf groups draw from.
const KEY_SPACE: usize = 100_000;
/// The Zipf exponent.
const ZIPF_EXPONENT: f64 = 1.0;
/// Share of the Zipf operations that are gets; the rest are inserts.
const GET_SHARE: f64 = 0.8;
/// Operations in each pre-generated sequence; the timed loops cycle through it.
const SEQUENCE_LEN: usize = 1 << 20;
/// The part of a sequence run before counting hits, to fill the cache.
const WARM_LEN: usize = SEQUENCE_LEN / 4;

/// The one value every entry holds. Static, so cloning it out of a cache (which the
/// thread-safe caches do on every hit) costs no reference-count traffic between threads.
static VALUE: [u8; VALUE_LEN] = [0xA5; VALUE_LEN];

/// A fresh handle to the value.
fn value() -> Bytes {
    Bytes::from_static(&VALUE)
}

/// One pre-generated operation of the Zipf mix.
#[derive(Clone, Copy, Debug)]
enum Op {
    /// Look the key up.
    Get(u64),
    /// Store the key (a replacement when it is already cached).
    Insert(u64),
}

/// [`SEQUENCE_LEN`] operations: [`GET_SHARE`] gets, the rest inserts, keys Zipf-distributed
/// over [`KEY_SPACE`] keys (key 0 the most frequent).
fn zipf_ops(seed: u64) -> Vec<Op> {
    let mut rng = StdRng::seed_from_u64(seed);
    let zipf = Zipf::new(KEY_SPACE as f64, ZIPF_EXPONENT).expect("valid Zipf parameters");
    (0..SEQUENCE_LEN)
        .map(|_| {
            // Samples are 1..=KEY_SPACE.
            let key = zipf.sample(&mut rng) as u64 - 1;
            if rng.random_bool(GET_SHARE) {
                Op::Get(key)
            } else {
                Op::Insert(key)
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Single-threaded contenders.

/// What the single-threaded groups need of a cache. Generic code over it is monomorphised, so
/// the calls go straight to each crate's methods.
trait Unsync {
    /// An empty cache with room for [`ENTRIES`] entries of [`ENTRY_BYTES`].
    fn build() -> Self;
    /// Looks `key` up, marking it used as the crate's policy does.
    fn get(&mut self, key: &u64) -> Option<&Bytes>;
    /// Stores `key -> value`, evicting as needed.
    fn insert(&mut self, key: u64, value: Bytes);
    /// Whether `key` is cached, without touching the policy's state.
    fn contains(&self, key: &u64) -> bool;
    /// Entries cached.
    fn len(&self) -> usize;
}

impl Unsync for alo_lru::Lru<u64, Bytes> {
    fn build() -> Self {
        alo_lru::Lru::new(BUDGET)
    }
    fn get(&mut self, key: &u64) -> Option<&Bytes> {
        alo_lru::Lru::get(self, key)
    }
    fn insert(&mut self, key: u64, value: Bytes) {
        // Never too large: every entry is 72 bytes of a 720,000-byte budget.
        let _ = alo_lru::Lru::insert(self, key, value);
    }
    fn contains(&self, key: &u64) -> bool {
        self.contains_key(key)
    }
    fn len(&self) -> usize {
        alo_lru::Lru::len(self)
    }
}

/// alo's cache of `Expiring` values, read through `get_unexpired(&k, Instant::now)`, which
/// reads the clock only for an entry with a deadline. With `DEADLINE` every entry gets one a day
/// ahead (one real clock read per get, never expired); without, none (no clock read). Measured
/// in `get_hit` only, against plain alo.
struct AloTtl<const DEADLINE: bool>(alo_lru::Lru<u64, Expiring<Bytes>>);

impl<const DEADLINE: bool> Unsync for AloTtl<DEADLINE> {
    fn build() -> Self {
        // `Expiring` weighs its value alone, so an entry is 72 bytes here too.
        AloTtl(alo_lru::Lru::new(BUDGET))
    }
    fn get(&mut self, key: &u64) -> Option<&Bytes> {
        self.0.get_unexpired(key, Instant::now).map(|e| &e.value)
    }
    fn insert(&mut self, key: u64, value: Bytes) {
        // A day ahead: no run of the bench comes near it, so every get is a hit.
        let deadline = DEADLINE.then(|| Instant::now() + Duration::from_secs(24 * 60 * 60));
        let _ = self.0.insert(key, Expiring::new(value, deadline));
    }
    fn contains(&self, key: &u64) -> bool {
        self.0.contains_key(key)
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl Unsync for lru::LruCache<u64, Bytes> {
    fn build() -> Self {
        lru::LruCache::new(NonZeroUsize::new(ENTRIES).expect("nonzero"))
    }
    fn get(&mut self, key: &u64) -> Option<&Bytes> {
        lru::LruCache::get(self, key)
    }
    fn insert(&mut self, key: u64, value: Bytes) {
        self.put(key, value);
    }
    fn contains(&self, key: &u64) -> bool {
        lru::LruCache::contains(self, key)
    }
    fn len(&self) -> usize {
        lru::LruCache::len(self)
    }
}

/// The weight of an entry, for the caches that take a weigher type rather than a closure.
#[derive(Clone, Copy, Debug)]
struct EntryWeight;

impl clru::WeightScale<u64, Bytes> for EntryWeight {
    fn weight(&self, _key: &u64, value: &Bytes) -> usize {
        size_of::<u64>() + value.len()
    }
}

impl quick_cache::Weighter<u64, Bytes> for EntryWeight {
    fn weight(&self, _key: &u64, value: &Bytes) -> u64 {
        (size_of::<u64>() + value.len()) as u64
    }
}

/// `clru`'s weighted cache.
type Clru = clru::CLruCache<u64, Bytes, std::collections::hash_map::RandomState, EntryWeight>;

impl Unsync for Clru {
    fn build() -> Self {
        // clru bounds `len + total weight`: every entry costs 1 + 72.
        let capacity = NonZeroUsize::new(ENTRIES * (ENTRY_BYTES + 1)).expect("nonzero");
        clru::CLruCache::with_config(clru::CLruCacheConfig::new(capacity).with_scale(EntryWeight))
    }
    fn get(&mut self, key: &u64) -> Option<&Bytes> {
        clru::CLruCache::get(self, key)
    }
    fn insert(&mut self, key: u64, value: Bytes) {
        let _ = self.put_with_weight(key, value);
    }
    fn contains(&self, key: &u64) -> bool {
        clru::CLruCache::contains(self, key)
    }
    fn len(&self) -> usize {
        clru::CLruCache::len(self)
    }
}

/// `quick_cache`'s single-threaded cache, weighted.
type QuickUnsync = quick_cache::unsync::Cache<u64, Bytes, EntryWeight>;

impl Unsync for QuickUnsync {
    fn build() -> Self {
        quick_cache::unsync::Cache::with_weighter(ENTRIES, BUDGET as u64, EntryWeight)
    }
    fn get(&mut self, key: &u64) -> Option<&Bytes> {
        quick_cache::unsync::Cache::get(self, key)
    }
    fn insert(&mut self, key: u64, value: Bytes) {
        quick_cache::unsync::Cache::insert(self, key, value);
    }
    fn contains(&self, key: &u64) -> bool {
        self.contains_key(key)
    }
    fn len(&self) -> usize {
        quick_cache::unsync::Cache::len(self)
    }
}

/// A cache of type `C` filled with keys `0..ENTRIES`.
fn full<C: Unsync>() -> C {
    let mut cache = C::build();
    for k in 0..ENTRIES as u64 {
        cache.insert(k, value());
    }
    cache
}

/// `get_hit`: a shuffled cycle over the keys the full cache holds.
fn bench_get_hit<C: Unsync>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str) {
    let mut cache = full::<C>();
    let mut keys: Vec<u64> = (0..ENTRIES as u64).filter(|k| cache.contains(k)).collect();
    assert!(
        keys.len() >= ENTRIES * 9 / 10,
        "{name}: only {} of {ENTRIES} keys stayed cached",
        keys.len()
    );
    keys.shuffle(&mut StdRng::seed_from_u64(1));
    let mut i = 0;
    group.bench_function(name, |b| {
        b.iter(|| {
            black_box(cache.get(black_box(&keys[i])));
            i += 1;
            if i == keys.len() {
                i = 0;
            }
        });
    });
    assert!(cache.len() <= ENTRIES);
}

/// `insert_evict`: every insert a key never seen before.
fn bench_insert_evict<C: Unsync>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str) {
    let mut cache = full::<C>();
    let mut next = ENTRIES as u64;
    group.bench_function(name, |b| {
        b.iter(|| {
            cache.insert(black_box(next), value());
            next += 1;
        });
    });
    assert!(cache.len() <= ENTRIES, "{name}: {} entries", cache.len());
}

/// Runs `ops` against `cache` and returns (gets, hits).
fn run_counting<C: Unsync>(cache: &mut C, ops: &[Op]) -> (u64, u64) {
    let (mut gets, mut hits) = (0, 0);
    for op in ops {
        match *op {
            Op::Get(k) => {
                gets += 1;
                hits += u64::from(cache.get(&k).is_some());
            }
            Op::Insert(k) => cache.insert(k, value()),
        }
    }
    (gets, hits)
}

/// `mixed_zipf`: one op per iteration, cycling through `ops`.
fn bench_mixed<C: Unsync>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, ops: &[Op]) {
    // Fill the cache, then count hits over the rest of the sequence (untimed). This also leaves
    // the cache warm for the timed run.
    let mut cache = C::build();
    run_counting(&mut cache, &ops[..WARM_LEN]);
    let (gets, hits) = run_counting(&mut cache, &ops[WARM_LEN..]);
    println!(
        "mixed_zipf/{name}: hit ratio {:.4} ({hits} hits / {gets} gets after a warm run of \
         {WARM_LEN} ops; {} entries cached)",
        hits as f64 / gets as f64,
        cache.len(),
    );
    let mut i = 0;
    group.bench_function(name, |b| {
        b.iter(|| {
            match ops[i] {
                Op::Get(k) => {
                    black_box(cache.get(black_box(&k)));
                }
                Op::Insert(k) => cache.insert(black_box(k), value()),
            }
            i += 1;
            if i == ops.len() {
                i = 0;
            }
        });
    });
    assert!(cache.len() <= ENTRIES, "{name}: {} entries", cache.len());
}

// ---------------------------------------------------------------------------------------------
// Thread-safe contenders.

/// What the two-thread group needs of a cache shared by reference.
trait Shared: Sync {
    /// An empty cache with room for [`ENTRIES`] entries of [`ENTRY_BYTES`].
    fn build() -> Self;
    /// A clone of the value of `key`, marking it used as the crate's policy does.
    fn get(&self, key: &u64) -> Option<Bytes>;
    /// Stores `key -> value`, evicting as needed.
    fn insert(&self, key: u64, value: Bytes);
    /// Finishes deferred maintenance (moka's lazy eviction), so sizes read afterwards are
    /// exact. Never called in a timed loop.
    fn settle(&self) {}
    /// Entries and bytes cached, for the sanity line printed with the hit ratio.
    fn size(&self) -> (u64, u64);
}

impl Shared for alo_lru::ShardedLru<u64, Bytes> {
    fn build() -> Self {
        // Default shard count: four per core, rounded up to a power of two (8 on 2 cores).
        alo_lru::ShardedLru::new(BUDGET)
    }
    fn get(&self, key: &u64) -> Option<Bytes> {
        alo_lru::ShardedLru::get(self, key)
    }
    fn insert(&self, key: u64, value: Bytes) {
        let _ = alo_lru::ShardedLru::insert(self, key, value);
    }
    fn size(&self) -> (u64, u64) {
        (self.len() as u64, self.bytes() as u64)
    }
}

impl Shared for Mutex<lru::LruCache<u64, Bytes>> {
    fn build() -> Self {
        Mutex::new(<lru::LruCache<u64, Bytes> as Unsync>::build())
    }
    fn get(&self, key: &u64) -> Option<Bytes> {
        self.lock().expect("unpoisoned").get(key).cloned()
    }
    fn insert(&self, key: u64, value: Bytes) {
        self.lock().expect("unpoisoned").put(key, value);
    }
    fn size(&self) -> (u64, u64) {
        let len = self.lock().expect("unpoisoned").len();
        (len as u64, (len * ENTRY_BYTES) as u64)
    }
}

impl Shared for moka::sync::Cache<u64, Bytes> {
    fn build() -> Self {
        moka::sync::Cache::builder()
            .max_capacity(BUDGET as u64)
            .weigher(|_key: &u64, value: &Bytes| (size_of::<u64>() + value.len()) as u32)
            .build()
    }
    fn get(&self, key: &u64) -> Option<Bytes> {
        moka::sync::Cache::get(self, key)
    }
    fn insert(&self, key: u64, value: Bytes) {
        moka::sync::Cache::insert(self, key, value);
    }
    fn settle(&self) {
        self.run_pending_tasks();
    }
    fn size(&self) -> (u64, u64) {
        (self.entry_count(), self.weighted_size())
    }
}

/// `quick_cache`'s thread-safe cache, weighted.
type QuickSync = quick_cache::sync::Cache<u64, Bytes, EntryWeight>;

impl Shared for QuickSync {
    fn build() -> Self {
        quick_cache::sync::Cache::with_weighter(ENTRIES, BUDGET as u64, EntryWeight)
    }
    fn get(&self, key: &u64) -> Option<Bytes> {
        quick_cache::sync::Cache::get(self, key)
    }
    fn insert(&self, key: u64, value: Bytes) {
        quick_cache::sync::Cache::insert(self, key, value);
    }
    fn size(&self) -> (u64, u64) {
        (self.len() as u64, self.weight())
    }
}

/// One shared-cache operation.
fn shared_op<C: Shared>(cache: &C, op: Op) {
    match op {
        Op::Get(k) => {
            black_box(cache.get(black_box(&k)));
        }
        Op::Insert(k) => cache.insert(black_box(k), value()),
    }
}

/// Runs each sequence's `range` on its own thread, all starting together; returns the summed
/// (gets, hits).
fn run_threads_counting<C: Shared>(
    cache: &C,
    seqs: &[Vec<Op>],
    range: std::ops::Range<usize>,
) -> (u64, u64) {
    let barrier = Barrier::new(seqs.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = seqs
            .iter()
            .map(|ops| {
                let (barrier, range) = (&barrier, range.clone());
                s.spawn(move || {
                    barrier.wait();
                    let (mut gets, mut hits) = (0u64, 0u64);
                    for op in &ops[range] {
                        match *op {
                            Op::Get(k) => {
                                gets += 1;
                                hits += u64::from(cache.get(&k).is_some());
                            }
                            Op::Insert(k) => cache.insert(k, value()),
                        }
                    }
                    (gets, hits)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("counting thread"))
            .fold((0, 0), |(g, h), (g2, h2)| (g + g2, h + h2))
    })
}

/// `iters` ops on each thread, all starting together at a barrier, each from its own sequence
/// and cursor; the time from the first thread's start to the last one's end.
fn timed_threads<C: Shared>(
    cache: &C,
    seqs: &[Vec<Op>],
    cursors: &mut [usize],
    iters: u64,
) -> Duration {
    let barrier = Barrier::new(seqs.len());
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
        let handles: Vec<_> = seqs
            .iter()
            .zip(cursors.iter_mut())
            .map(|(ops, cursor)| {
                let barrier = &barrier;
                s.spawn(move || {
                    let mut i = *cursor;
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        shared_op(cache, ops[i]);
                        i += 1;
                        if i == ops.len() {
                            i = 0;
                        }
                    }
                    let end = Instant::now();
                    *cursor = i;
                    (start, end)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .collect()
    });
    let start = spans.iter().map(|s| s.0).min().expect("threads");
    let end = spans.iter().map(|s| s.1).max().expect("threads");
    end - start
}

/// `mixed_zipf_2threads` for one contender.
fn bench_shared<C: Shared>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, seqs: &[Vec<Op>]) {
    // Untimed: fill, settle, count hits over the rest of each sequence, settle again and check
    // the budget held. Leaves the cache warm for the timed run.
    let cache = C::build();
    run_threads_counting(&cache, seqs, 0..WARM_LEN);
    cache.settle();
    let (gets, hits) = run_threads_counting(&cache, seqs, WARM_LEN..SEQUENCE_LEN);
    cache.settle();
    let (entries, bytes) = cache.size();
    println!(
        "mixed_zipf_2threads/{name}: hit ratio {:.4} ({hits} hits / {gets} gets over 2 threads \
         after a warm run of {WARM_LEN} ops each; {entries} entries, {bytes} of {BUDGET} bytes)",
        hits as f64 / gets as f64,
    );
    assert!(
        bytes <= BUDGET as u64,
        "{name}: {bytes} bytes over the budget"
    );
    let mut cursors = vec![0; seqs.len()];
    group.bench_function(name, |b: &mut Bencher<'_>| {
        b.iter_custom(|iters| timed_threads(&cache, seqs, &mut cursors, iters));
    });
}

// ---------------------------------------------------------------------------------------------
// Groups.

/// Short measurements: the whole `cargo bench -p alo-lru` stays within a few minutes.
fn configure(group: &mut BenchmarkGroup<'_, WallTime>, ops_per_iter: u64) {
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(ops_per_iter));
}

fn get_hit(c: &mut Criterion) {
    let mut group = c.benchmark_group("get_hit");
    configure(&mut group, 1);
    bench_get_hit::<alo_lru::Lru<u64, Bytes>>(&mut group, "alo");
    bench_get_hit::<AloTtl<false>>(&mut group, "alo_ttl_no_deadline");
    bench_get_hit::<AloTtl<true>>(&mut group, "alo_ttl_deadline");
    bench_get_hit::<lru::LruCache<u64, Bytes>>(&mut group, "lru");
    bench_get_hit::<Clru>(&mut group, "clru");
    bench_get_hit::<QuickUnsync>(&mut group, "quick_cache");
    group.finish();
}

fn insert_evict(c: &mut Criterion) {
    let mut group = c.benchmark_group("insert_evict");
    configure(&mut group, 1);
    bench_insert_evict::<alo_lru::Lru<u64, Bytes>>(&mut group, "alo");
    bench_insert_evict::<lru::LruCache<u64, Bytes>>(&mut group, "lru");
    bench_insert_evict::<Clru>(&mut group, "clru");
    bench_insert_evict::<QuickUnsync>(&mut group, "quick_cache");
    group.finish();
}

fn mixed_zipf(c: &mut Criterion) {
    let ops = zipf_ops(42);
    let mut group = c.benchmark_group("mixed_zipf");
    configure(&mut group, 1);
    bench_mixed::<alo_lru::Lru<u64, Bytes>>(&mut group, "alo", &ops);
    bench_mixed::<lru::LruCache<u64, Bytes>>(&mut group, "lru", &ops);
    bench_mixed::<Clru>(&mut group, "clru", &ops);
    bench_mixed::<QuickUnsync>(&mut group, "quick_cache", &ops);
    group.finish();
}

fn mixed_zipf_2threads(c: &mut Criterion) {
    let seqs = [zipf_ops(7), zipf_ops(8)];
    let mut group = c.benchmark_group("mixed_zipf_2threads");
    // One iteration is one op on each thread.
    configure(&mut group, seqs.len() as u64);
    bench_shared::<alo_lru::ShardedLru<u64, Bytes>>(&mut group, "alo", &seqs);
    bench_shared::<Mutex<lru::LruCache<u64, Bytes>>>(&mut group, "lru", &seqs);
    bench_shared::<moka::sync::Cache<u64, Bytes>>(&mut group, "moka", &seqs);
    bench_shared::<QuickSync>(&mut group, "quick_cache", &seqs);
    group.finish();
}

criterion_group!(
    benches,
    get_hit,
    insert_evict,
    mixed_zipf,
    mixed_zipf_2threads
);
criterion_main!(benches);
