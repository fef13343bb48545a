//! Cost of duplicate-call suppression: `alo_singleflight::Flight` against the two anchors,
//! `async_singleflight::Group` (0.6) and `singleflight_async::SingleFlight` (0.2).
//!
//! Every contender uses `u64` keys and work that returns `Result<u64, String>`, and every
//! benchmark runs on a current-thread tokio runtime (`b.to_async(&runtime)`).
//!
//! Groups and rows:
//! - `uncontended`: one call at a time on the same key (forgotten after each call, so each call
//!   starts the work afresh), the work an immediately-ready future returning `Ok(42)`.
//!   - `direct`: awaits the same future without any singleflight, the floor;
//!   - `alo`: `Flight::work`;
//!   - `async_singleflight`: `Group::work`;
//!   - `singleflight_async`: `SingleFlight::work`, whose output is the whole `Result`.
//! - `contended_64`: per iteration, 64 concurrent callers on one key, joined with
//!   `futures_util::future::join_all` in one task. The work hands its value to a spawned task
//!   and awaits the `JoinHandle`, so it completes only once the runtime has run that task,
//!   after every caller has been polled: the callers overlap. Rows `alo`,
//!   `async_singleflight`, `singleflight_async`; throughput is 64 elements (calls) per
//!   iteration. Before timing, each contender is checked once to run the work exactly once per
//!   64 callers, with every caller getting `Ok(42)`; the check is printed.
//!
//! Why not `tokio::task::yield_now` as the contended work: it is ready on its second poll,
//! woken or not. `alo` drives the work through a `futures_util::future::Shared`, and a caller
//! that joins polls it, so the first joiner completes the work and the 64 callers form 32
//! pairs: the work runs 32 times. The anchors poll the work from the leader only.

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alo_singleflight::Flight;
use async_singleflight::Group;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::future::join_all;
use singleflight_async::SingleFlight;
use tokio::runtime::Runtime;

/// The key every call uses.
const KEY: u64 = 7;
/// The value the work returns.
const VALUE: u64 = 42;
/// Concurrent callers per iteration in `contended_64`.
const CALLERS: usize = 64;
/// Rounds of `CALLERS` calls in each contender's correctness check.
const CHECK_ROUNDS: usize = 100;

/// How many times the contended work has run; reset before each contender's check.
static RUNS: AtomicUsize = AtomicUsize::new(0);

/// The uncontended work: ready at once.
async fn ready() -> Result<u64, String> {
    Ok(VALUE)
}

/// The contended work: counts its run, then waits for a spawned task to produce the value, so
/// it stays pending, however often it is polled, until the runtime runs that task.
async fn spawned() -> Result<u64, String> {
    RUNS.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async { VALUE })
        .await
        .map_err(|e| e.to_string())
}

/// A current-thread runtime; the work neither sleeps nor does I/O, so no driver is enabled.
/// Tasks spawned by the work run when the benchmark's `block_on` future is pending.
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("current-thread runtime")
}

/// Short measurements: the whole bench target should take well under two minutes.
fn short(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
}

/// One call at a time, against the `direct` floor.
fn uncontended(c: &mut Criterion) {
    let rt = runtime();
    let alo: Flight<u64, u64, String> = Flight::new();
    let asf: Group<u64, u64, String> = Group::new();
    let sfa: SingleFlight<u64, Result<u64, String>> = SingleFlight::new();

    let mut group = c.benchmark_group("uncontended");
    short(&mut group);

    group.bench_function("direct", |b| {
        b.to_async(&rt).iter(|| async { ready().await });
    });
    group.bench_function("alo", |b| {
        let alo = &alo;
        b.to_async(&rt)
            .iter(|| async move { alo.work(black_box(KEY), ready).await.result });
    });
    group.bench_function("async_singleflight", |b| {
        let asf = &asf;
        b.to_async(&rt)
            .iter(|| async move { asf.work(&black_box(KEY), ready()).await });
    });
    group.bench_function("singleflight_async", |b| {
        let sfa = &sfa;
        b.to_async(&rt)
            .iter(|| async move { sfa.work(black_box(KEY), ready).await });
    });
    group.finish();
}

/// One round of `CALLERS` concurrent `alo` calls on `KEY`.
async fn alo_round(
    flight: &Flight<u64, u64, String>,
) -> Vec<alo_singleflight::Outcome<u64, String>> {
    join_all((0..CALLERS).map(|_| flight.work(KEY, spawned))).await
}

/// One round of `CALLERS` concurrent `async_singleflight` calls on `KEY`.
async fn asf_round(group: &Group<u64, u64, String>) -> Vec<Result<u64, Option<String>>> {
    join_all((0..CALLERS).map(|_| group.work(&KEY, spawned()))).await
}

/// One round of `CALLERS` concurrent `singleflight_async` calls on `KEY`.
async fn sfa_round(flight: &SingleFlight<u64, Result<u64, String>>) -> Vec<Result<u64, String>> {
    join_all((0..CALLERS).map(|_| flight.work(KEY, spawned))).await
}

/// Runs `CHECK_ROUNDS` rounds outside timing and asserts that the work ran once per round and
/// that every caller got `Ok(VALUE)`; `shared` counts the callers per round that report having
/// joined a call (only `alo` reports it). Prints the result.
fn check<R: Future<Output = Vec<(bool, Option<bool>)>>>(
    rt: &Runtime,
    name: &str,
    mut round: impl FnMut() -> R,
) {
    RUNS.store(0, Ordering::Relaxed);
    let mut shared = None;
    for _ in 0..CHECK_ROUNDS {
        let results = rt.block_on(round());
        assert_eq!(results.len(), CALLERS, "{name}: callers per round");
        assert!(
            results.iter().all(|&(ok, _)| ok),
            "{name}: a caller did not get Ok({VALUE})"
        );
        let joined = results
            .iter()
            .filter_map(|&(_, s)| s)
            .filter(|&s| s)
            .count();
        if results.iter().any(|&(_, s)| s.is_some()) {
            assert_eq!(joined, CALLERS - 1, "{name}: callers that joined the call");
            shared = Some(joined);
        }
    }
    let runs = RUNS.load(Ordering::Relaxed);
    assert_eq!(
        runs, CHECK_ROUNDS,
        "{name}: work runs in {CHECK_ROUNDS} rounds of {CALLERS} callers"
    );
    let shared = shared.map_or(String::new(), |n| {
        format!(", {n} of {CALLERS} callers shared per round")
    });
    println!(
        "contended_64/{name}: {CHECK_ROUNDS} rounds of {CALLERS} callers, work ran {runs} times (once per round){shared}"
    );
}

/// 64 concurrent callers on one key per iteration.
fn contended(c: &mut Criterion) {
    let rt = runtime();
    let alo: Flight<u64, u64, String> = Flight::new();
    let asf: Group<u64, u64, String> = Group::new();
    let sfa: SingleFlight<u64, Result<u64, String>> = SingleFlight::new();

    check(&rt, "alo", || async {
        let outcomes = alo_round(&alo).await;
        outcomes
            .into_iter()
            .map(|o| (o.result == Ok(VALUE), Some(o.shared)))
            .collect()
    });
    check(&rt, "async_singleflight", || async {
        let results = asf_round(&asf).await;
        results
            .into_iter()
            .map(|r| (r == Ok(VALUE), None))
            .collect()
    });
    check(&rt, "singleflight_async", || async {
        let results = sfa_round(&sfa).await;
        results
            .into_iter()
            .map(|r| (r == Ok(VALUE), None))
            .collect()
    });

    let mut group = c.benchmark_group("contended_64");
    short(&mut group);
    group.throughput(Throughput::Elements(CALLERS as u64));

    group.bench_function("alo", |b| {
        let alo = &alo;
        b.to_async(&rt).iter(|| alo_round(alo));
    });
    group.bench_function("async_singleflight", |b| {
        let asf = &asf;
        b.to_async(&rt).iter(|| asf_round(asf));
    });
    group.bench_function("singleflight_async", |b| {
        let sfa = &sfa;
        b.to_async(&rt).iter(|| sfa_round(sfa));
    });
    group.finish();
}

criterion_group!(benches, uncontended, contended);
criterion_main!(benches);
