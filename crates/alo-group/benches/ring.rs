//! The cost of a get as the cluster grows: the same gets on `testing::RingCluster`s of 3, 10 and
//! 100 nodes, in one criterion group (`ring_get`), so that one report shows whether the cost
//! stays flat.
//!
//! Rows, for each size `n`:
//! - `hit/n`: a get of a key the asked node holds (its owner), a main-cache hit.
//! - `miss/n`: a get of a key never asked before, asked of a node that is not its owner: the
//!   picker names the owner on the ring (the lookup whose cost could grow with `n`), the owner
//!   loads it through its getter (which answers at once) and answers through the in-process
//!   transport. A new key each time, so no cache (main or hot) answers it.
//!
//! For `hit`, 2,000 keys of 64 bytes are loaded first, each by its owner, and the timed gets
//! cycle through them. Each iteration is one get, `.await`ed on a current-thread runtime.

use std::time::Duration;

use alo_group::testing::RingCluster;
use alo_group::{Group, LoadError, getter_fn};
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};

const KEYS: usize = 2_000;

/// A warm cluster of `n` nodes: every key loaded by its owner. The keys, each with its owner.
fn warm(rt: &tokio::runtime::Runtime, n: usize) -> (RingCluster, Vec<(Bytes, usize)>) {
    let value = Bytes::from(vec![7u8; 64]);
    let getter = getter_fn(move |_key: Bytes| {
        let value = value.clone();
        async move { Ok::<_, LoadError>(value) }
    });
    // Room for every key on its owner; a hot cache of 1 KiB (an eighth of the budget).
    let cluster = rt.block_on(async {
        RingCluster::new(n, Duration::ZERO, move |_| {
            Group::builder("g", getter.clone()).max_bytes(8 << 10 | (KEYS * 400))
        })
        .expect("valid groups")
    });
    let keys: Vec<(Bytes, usize)> = (0..KEYS)
        .map(|i| {
            let key = Bytes::from(format!("key:{i}"));
            let owner = cluster.owner(&key).expect("members");
            (key, owner)
        })
        .collect();
    rt.block_on(async {
        for (key, owner) in &keys {
            cluster.group(*owner).get(key).await.expect("loaded");
        }
    });
    (cluster, keys)
}

fn ring_get(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut group = c.benchmark_group("ring_get");
    for n in [3, 10, 100] {
        let (cluster, keys) = warm(&rt, n);
        let owners: Vec<Group> = keys.iter().map(|(_, o)| cluster.group(*o)).collect();
        let groups: Vec<Group> = (0..n).map(|i| cluster.group(i)).collect();
        let mut i = 0;
        group.bench_function(format!("hit/{n}"), |b| {
            b.to_async(&rt).iter(|| {
                i = (i + 1) % KEYS;
                let (key, owner) = (&keys[i].0, &owners[i]);
                async move { owner.get(key).await.expect("a hit") }
            });
        });
        let mut fresh = 0u64;
        group.bench_function(format!("miss/{n}"), |b| {
            b.to_async(&rt).iter(|| {
                fresh += 1;
                let key = Bytes::from(format!("fresh:{fresh}"));
                let owner = cluster.owner(&key).expect("members");
                let asked = &groups[(owner + 1) % n];
                async move { asked.get(key).await.expect("loaded by the owner") }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, ring_get);
criterion_main!(benches);
