//! `node_for` against the `hashring` crate and jump consistent hash, side by side in one
//! criterion group per ring size, so one report shows the ratios.
//!
//! Rows, for 3, 10, 100 and 1000 nodes:
//! - `alo`: `HashRing` with the default 500 virtual nodes per node and xxh3.
//! - `hashring`: the `hashring` crate with the same 500 virtual nodes per node (added as
//!   `(name, i)` items) and its default hasher, SipHash-2-4: what its users get.
//! - `hashring_xxh3`: the same ring with xxh3 as its hasher, to compare the search alone.
//! - `jump`: jump consistent hash (Lamping and Veach 2014) of the key's xxh3: no table at all,
//!   the speed floor, though it cannot remove an arbitrary node.
//!
//! Each iteration looks up one of 4096 pre-made keys (`user:<n>`), cycling through them.
//!
//! A second group, `preference`, walks a key's preference list on the same rings: `second`
//! takes its second member (a failover's lookup), `all` the whole list, beside `node_for`.

use std::hint::black_box;

use alo_hashring::{DEFAULT_REPLICAS, HashRing, RingHasher, Xxh3};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use xxhash_rust::xxh3::Xxh3Builder;

const SIZES: [usize; 4] = [3, 10, 100, 1000];

fn node(i: usize) -> String {
    format!("http://10.0.{}.{}:8001", i / 250, i % 250 + 1)
}

/// Jump consistent hash: the bucket in `0..buckets` for `key`, moving only 1/n of the keys when
/// the n-th bucket is added.
fn jump(mut key: u64, buckets: i64) -> i64 {
    let (mut b, mut j) = (-1i64, 0i64);
    while j < buckets {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b
}

fn node_for(c: &mut Criterion) {
    let keys: Vec<String> = (0..4096).map(|i| format!("user:{i}")).collect();
    let mut group = c.benchmark_group("node_for");
    for n in SIZES {
        let names: Vec<String> = (0..n).map(node).collect();

        let alo: HashRing<String> = names.iter().cloned().collect();
        let mut i = 0;
        group.bench_with_input(BenchmarkId::new("alo", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(alo.node_for(black_box(&keys[i])))
            });
        });

        let vnodes: Vec<(String, usize)> = names
            .iter()
            .flat_map(|name| (0..DEFAULT_REPLICAS).map(move |r| (name.clone(), r)))
            .collect();
        let mut sip = hashring::HashRing::new();
        sip.batch_add(vnodes.clone());
        group.bench_with_input(BenchmarkId::new("hashring", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(sip.get(black_box(&keys[i])))
            });
        });

        let mut xxh = hashring::HashRing::with_hasher(Xxh3Builder::new());
        xxh.batch_add(vnodes);
        group.bench_with_input(BenchmarkId::new("hashring_xxh3", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(xxh.get(black_box(&keys[i])))
            });
        });

        group.bench_with_input(BenchmarkId::new("jump", n), &n, |b, &n| {
            b.iter(|| {
                i = (i + 1) & 4095;
                let bucket = jump(Xxh3.hash(black_box(keys[i].as_bytes())), n as i64);
                black_box(&names[bucket as usize])
            });
        });
    }
    group.finish();
}

/// The walk of a key's preference list: the second member (where a key goes while its owner is
/// down) and the whole list, against `node_for` in the same group.
fn preference(c: &mut Criterion) {
    let keys: Vec<String> = (0..4096).map(|i| format!("user:{i}")).collect();
    let mut group = c.benchmark_group("preference");
    for n in SIZES {
        let ring: HashRing<String> = (0..n).map(node).collect();
        let mut i = 0;
        group.bench_with_input(BenchmarkId::new("node_for", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(ring.node_for(black_box(&keys[i])))
            });
        });
        group.bench_with_input(BenchmarkId::new("second", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(ring.preference(black_box(&keys[i])).nth(1))
            });
        });
        group.bench_with_input(BenchmarkId::new("all", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(ring.preference(black_box(&keys[i])).last())
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(40)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = node_for, preference
}
criterion_main!(benches);
