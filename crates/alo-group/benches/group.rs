//! The cost of a [`Group`] over the thread-safe LRU it keeps its values in: the same operations
//! on a `Group` and on a bare `alo_lru::ShardedLru` built the way the group builds its main cache
//! (same budget, same shard count), side by side in the same criterion groups.
//!
//! Groups (rows `group` and `bare_lru` in each):
//! - `hit`: one get of a warm key per iteration, on one thread. 10,000 keys `key:<n>` with
//!   64-byte values are loaded first into a 64 MiB budget (3 shards), then visited in a
//!   shuffled cycle, so every get is a hit that relinks a node not already at the front. Both
//!   rows run the same harness: a plain `b.iter` that makes the get's future in place on the
//!   stack (`std::pin::pin!`) and polls it once with a no-op waker (a hit never awaits
//!   anything; for `bare_lru` the future is an `async` wrapper around `ShardedLru::get`, which
//!   compiles down to the call). That every timed get was a hit is checked against the caches'
//!   counters afterwards. Polling in place is the harness with the least overhead: the group's
//!   `get` future is 384 bytes, and `FutureExt::now_or_never`, which takes the future by value,
//!   copies it on every call (about 60 ns a hit instead of about 34 on the machine this was
//!   written on; criterion's `to_async` on a current-thread runtime, about 44).
//! - `zipf_2threads`: read-through gets on two OS threads at once, each with its own seeded
//!   sequence of keys Zipf-distributed (exponent 1.0) over 100,000 keys, against a budget that
//!   holds about 10% of them. A miss loads: `group` through its getter, which returns the value
//!   at once; `bare_lru` by inserting the value after the miss (copying the key into an owned
//!   `Bytes`, as the group does). One iteration is one get on each thread
//!   (`Throughput::Elements(2)`): the time from the first thread's start to the last one's end,
//!   threads started together at a barrier. Each thread drives its gets inside its own
//!   current-thread tokio runtime (one `block_on` around the whole timed loop, each get
//!   `.await`ed): a getter that is ready at once never leaves a get pending, except a get that
//!   joins the other thread's load of the same key while that load is being polled, which must
//!   be woken. Both rows run in the same harness. Each row's hit ratio is measured in an untimed
//!   pass (after an untimed warm pass) and printed before it runs.
//!
//! The getter returns the same static 64-byte `Bytes` every time; the group copies it into an
//! allocation of its own before caching it (a cached value owns its bytes), so `bare_lru` caches
//! an owned copy too, and both charge an entry `key + value + ENTRY_OVERHEAD`: cloning a value
//! out costs both rows the same reference-count increment, and the rows differ only by what the
//! group adds to the cache.
//!
//! The group's main cache has as many shards (at most 16) as leave each room for its largest
//! cacheable value, 16 MiB or the whole budget if smaller (see `cache` in `src/group.rs`): 3 in
//! `hit`, a single shard, one mutex, in `zipf_2threads`, whose budget is well under 16 MiB.
//! `bare_lru` mirrors that.

use std::hint::black_box;
use std::pin::{Pin, pin};
use std::sync::Barrier;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use alo_group::{Group, LoadError, getter_fn};
use alo_lru::ShardedLru;
use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand_distr::{Distribution, Zipf};
use tokio::runtime::Runtime;

/// Bytes of every value.
const VALUE_LEN: usize = 64;

/// The one value every entry holds; static, so a clone is no reference-count increment.
static VALUE: [u8; VALUE_LEN] = [0xA5; VALUE_LEN];

/// A fresh handle to the value.
fn value() -> Bytes {
    Bytes::from_static(&VALUE)
}

/// The shard count of a group's main cache of `max_bytes` with the default largest value
/// (`cache` in `src/group.rs`, whose slack per shard is 64 KiB).
fn group_shards(max_bytes: usize) -> usize {
    let max_value = alo_group::DEFAULT_MAX_VALUE_BYTES.min(max_bytes);
    (max_bytes / (max_value + (64 << 10))).clamp(1, 16)
}

/// How the group charges an entry.
type Weigher = fn(&Bytes, &Bytes) -> usize;

fn weigh(key: &Bytes, value: &Bytes) -> usize {
    key.len() + value.len() + alo_group::ENTRY_OVERHEAD
}

/// The key of number `n`: `key:<n>`.
fn key(n: usize) -> Vec<u8> {
    format!("key:{n}").into_bytes()
}

/// `hit`: keys loaded before timing, all of them held.
const HIT_KEYS: usize = 10_000;
/// `hit`: a budget that holds every key many times over.
const HIT_BUDGET: usize = 64 << 20;

/// `zipf_2threads`: distinct keys the sequences draw from.
const KEY_SPACE: usize = 100_000;
/// `zipf_2threads`: entries the budget holds, 10% of the key space.
const ZIPF_ENTRIES: usize = KEY_SPACE / 10;
/// `zipf_2threads`: the budget, [`ZIPF_ENTRIES`] entries of a 9-byte key (`key:` and five
/// digits, as 90% of the keys are) and a 64-byte value.
const ZIPF_BUDGET: usize = ZIPF_ENTRIES * (9 + VALUE_LEN);
/// `zipf_2threads`: the Zipf exponent.
const ZIPF_EXPONENT: f64 = 1.0;
/// `zipf_2threads`: gets in each thread's pre-generated sequence; the timed loops cycle through it.
const SEQUENCE_LEN: usize = 1 << 20;
/// `zipf_2threads`: the part of a sequence run before counting hits, to fill the cache.
const WARM_LEN: usize = SEQUENCE_LEN / 4;

/// A read-through cache: what both rows of each group are driven through. Generic code over it
/// is monomorphised, so the calls go straight to each contender.
trait ReadThrough: Sync {
    /// An empty cache of `max_bytes`.
    fn build(max_bytes: usize) -> Self;
    /// The value of `key`, loaded on a miss.
    async fn get(&self, key: &[u8]) -> Bytes;
    /// Gets and hits so far.
    fn counts(&self) -> (u64, u64);
    /// Entries and bytes cached.
    fn size(&self) -> (u64, u64);
    /// Loads that joined another caller's load of the same key, so far.
    fn deduped(&self) -> u64 {
        0
    }
}

/// The group's getter: the value, at once.
fn build_group(max_bytes: usize) -> Group {
    let getter = getter_fn(|_key: Bytes| async { Ok::<_, LoadError>(value()) });
    Group::builder("bench", getter)
        .max_bytes(max_bytes)
        .build()
        .expect("a valid group")
}

impl ReadThrough for Group {
    fn build(max_bytes: usize) -> Self {
        build_group(max_bytes)
    }
    async fn get(&self, key: &[u8]) -> Bytes {
        Group::get(self, key).await.expect("the getter never fails")
    }
    fn counts(&self) -> (u64, u64) {
        let s = self.stats();
        (s.gets, s.cache_hits)
    }
    fn size(&self) -> (u64, u64) {
        let s = self.stats();
        (s.main_cache.items, s.main_cache.bytes)
    }
    fn deduped(&self) -> u64 {
        self.stats().loads_deduped
    }
}

/// The bare cache, built as the group builds its main cache, made read-through by hand.
struct Bare(ShardedLru<Bytes, Bytes, Weigher>);

impl ReadThrough for Bare {
    fn build(max_bytes: usize) -> Self {
        let shards = group_shards(max_bytes);
        Bare(ShardedLru::with_weigher(
            max_bytes,
            shards,
            weigh as Weigher,
        ))
    }
    async fn get(&self, key: &[u8]) -> Bytes {
        match self.0.get(key) {
            Some(value) => value,
            None => {
                let value = value();
                // Never too large: 64 bytes of a shard of at least 730,000.
                let owned = Bytes::copy_from_slice(&value);
                let _ = self.0.insert(Bytes::copy_from_slice(key), owned.clone());
                owned
            }
        }
    }
    fn counts(&self) -> (u64, u64) {
        let s = self.0.stats();
        (s.hits + s.misses, s.hits)
    }
    fn size(&self) -> (u64, u64) {
        (self.0.len() as u64, self.0.bytes() as u64)
    }
}

// ---------------------------------------------------------------------------------------------
// `hit`

/// Polls `fut` once, where it lies, with a waker that does nothing: its output, or `None` if it
/// is pending.
fn poll_once<F: Future>(fut: Pin<&mut F>) -> Option<F::Output> {
    match fut.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

/// `hit` for one contender: `keys` (shuffled) loaded, then got in a cycle.
fn bench_hit<C: ReadThrough>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    keys: &[Vec<u8>],
) {
    let cache = C::build(HIT_BUDGET);
    // Loads run on tokio tasks; the timed hits below never leave the caller.
    Runtime::new().expect("a runtime").block_on(async {
        for k in keys {
            cache.get(k).await;
        }
    });
    let (entries, _) = cache.size();
    assert_eq!(entries, keys.len() as u64, "{name}: not every key stayed");
    let (gets_before, hits_before) = cache.counts();
    let mut i = 0;
    group.bench_function(name, |b| {
        b.iter(|| {
            black_box(poll_once(pin!(cache.get(black_box(&keys[i])))));
            i += 1;
            if i == keys.len() {
                i = 0;
            }
        });
    });
    let (gets, hits) = cache.counts();
    assert_eq!(
        gets - gets_before,
        hits - hits_before,
        "{name}: a timed get missed"
    );
}

// ---------------------------------------------------------------------------------------------
// `zipf_2threads`

/// [`SEQUENCE_LEN`] key numbers, Zipf-distributed over [`KEY_SPACE`] (0 the most frequent).
fn zipf_sequence(seed: u64) -> Vec<u32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let zipf = Zipf::new(KEY_SPACE as f64, ZIPF_EXPONENT).expect("valid Zipf parameters");
    // Samples are 1..=KEY_SPACE.
    (0..SEQUENCE_LEN)
        .map(|_| zipf.sample(&mut rng) as u32 - 1)
        .collect()
}

/// `iters` gets on each thread, each from its own sequence and cursor inside its own runtime,
/// all starting together at a barrier; the time from the first thread's start to the last
/// one's end.
fn run_threads<C: ReadThrough>(
    cache: &C,
    keys: &[Vec<u8>],
    seqs: &[Vec<u32>],
    runtimes: &[Runtime],
    cursors: &mut [usize],
    iters: u64,
) -> Duration {
    let barrier = Barrier::new(seqs.len());
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
        let handles: Vec<_> = seqs
            .iter()
            .zip(runtimes)
            .zip(cursors.iter_mut())
            .map(|((seq, runtime), cursor)| {
                let barrier = &barrier;
                s.spawn(move || {
                    runtime.block_on(async {
                        let mut i = *cursor;
                        barrier.wait();
                        let start = Instant::now();
                        for _ in 0..iters {
                            black_box(cache.get(black_box(&keys[seq[i] as usize])).await);
                            i += 1;
                            if i == seq.len() {
                                i = 0;
                            }
                        }
                        let end = Instant::now();
                        *cursor = i;
                        (start, end)
                    })
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

/// `zipf_2threads` for one contender.
fn bench_zipf<C: ReadThrough>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    keys: &[Vec<u8>],
    seqs: &[Vec<u32>],
) {
    let runtimes: Vec<Runtime> = seqs
        .iter()
        .map(|_| {
            // The group's loads have deadlines: the timer is on.
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("a runtime")
        })
        .collect();
    let mut cursors = vec![0; seqs.len()];
    // Untimed: fill, then count hits over the rest of each sequence. Leaves the cache warm and
    // the cursors back at the start of each sequence.
    let cache = C::build(ZIPF_BUDGET);
    run_threads(&cache, keys, seqs, &runtimes, &mut cursors, WARM_LEN as u64);
    let (gets_before, hits_before) = cache.counts();
    let deduped_before = cache.deduped();
    let counted = (SEQUENCE_LEN - WARM_LEN) as u64;
    run_threads(&cache, keys, seqs, &runtimes, &mut cursors, counted);
    let (gets, hits) = cache.counts();
    let (gets, hits) = (gets - gets_before, hits - hits_before);
    let (entries, bytes) = cache.size();
    println!(
        "zipf_2threads/{name}: hit ratio {:.4} ({hits} hits / {gets} gets over 2 threads after a \
         warm run of {WARM_LEN} gets each; {} loads deduped; {entries} entries, {bytes} of \
         {ZIPF_BUDGET} bytes, {} shard(s))",
        hits as f64 / gets as f64,
        cache.deduped() - deduped_before,
        group_shards(ZIPF_BUDGET),
    );
    assert!(bytes <= ZIPF_BUDGET as u64, "{name}: over the budget");
    group.bench_function(name, |b| {
        b.iter_custom(|iters| run_threads(&cache, keys, seqs, &runtimes, &mut cursors, iters));
    });
    let (all_gets, all_hits) = cache.counts();
    println!(
        "zipf_2threads/{name}: over every run, timed included: hit ratio {:.4} of {all_gets} \
         gets; {} loads deduped",
        all_hits as f64 / all_gets as f64,
        cache.deduped(),
    );
}

// ---------------------------------------------------------------------------------------------
// Groups.

/// Short measurements: the whole `cargo bench -p alo-group` stays within a minute or two.
fn configure(group: &mut BenchmarkGroup<'_, WallTime>, ops_per_iter: u64) {
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(ops_per_iter));
}

fn hit(c: &mut Criterion) {
    let mut keys: Vec<Vec<u8>> = (0..HIT_KEYS).map(key).collect();
    keys.shuffle(&mut StdRng::seed_from_u64(1));
    let mut group = c.benchmark_group("hit");
    configure(&mut group, 1);
    bench_hit::<Group>(&mut group, "group", &keys);
    bench_hit::<Bare>(&mut group, "bare_lru", &keys);
    group.finish();
}

fn zipf_2threads(c: &mut Criterion) {
    let keys: Vec<Vec<u8>> = (0..KEY_SPACE).map(key).collect();
    let seqs = [zipf_sequence(7), zipf_sequence(8)];
    let mut group = c.benchmark_group("zipf_2threads");
    // One iteration is one get on each thread.
    configure(&mut group, seqs.len() as u64);
    bench_zipf::<Group>(&mut group, "group", &keys, &seqs);
    bench_zipf::<Bare>(&mut group, "bare_lru", &keys, &seqs);
    group.finish();
}

criterion_group!(benches, hit, zipf_2threads);
criterion_main!(benches);
