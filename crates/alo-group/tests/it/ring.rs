//! Membership changes at scale, simulated on the in-process ring cluster: keys moved per join and
//! leave against the ideal, origin loads during a rolling restart of 100 nodes under a Zipf
//! workload, and one load per key with 10 owners down at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alo_group::testing::RingCluster;
use alo_group::{Group, LoadError, getter_fn};
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Zipf};

/// Origin loads per key.
#[derive(Clone, Default)]
struct Origin(Arc<Mutex<HashMap<Bytes, usize>>>);

impl Origin {
    fn total(&self) -> usize {
        self.0.lock().expect("not poisoned").values().sum()
    }

    fn keys(&self) -> usize {
        self.0.lock().expect("not poisoned").len()
    }

    fn most(&self) -> usize {
        let loads = self.0.lock().expect("not poisoned");
        loads.values().copied().max().unwrap_or(0)
    }
}

/// A ring of `n` nodes whose getters count their loads in one origin.
fn ring(n: usize) -> (RingCluster, Origin) {
    let origin = Origin::default();
    let counted = origin.clone();
    let getter = getter_fn(move |key: Bytes| {
        *counted
            .0
            .lock()
            .expect("not poisoned")
            .entry(key.clone())
            .or_default() += 1;
        async move { Ok::<_, LoadError>(key) }
    });
    let cluster = RingCluster::new(n, Duration::from_secs(600), move |_| {
        Group::builder("g", getter.clone()).max_bytes(8 << 20)
    })
    .expect("valid groups");
    (cluster, origin)
}

fn key(i: u64) -> Bytes {
    Bytes::from(format!("key-{i}"))
}

/// `gets` gets of Zipf-distributed keys among `keys`, each from a random member.
async fn zipf_gets(cluster: &RingCluster, rng: &mut StdRng, keys: u64, gets: usize) {
    let zipf = Zipf::new(keys as f64, 1.0).expect("valid");
    let members = cluster.members();
    for _ in 0..gets {
        let k = key(zipf.sample(rng) as u64 - 1);
        let node = members[rng.random_range(0..members.len())];
        let got = cluster
            .group(node)
            .get(&k)
            .await
            .expect("every get answered");
        assert_eq!(got, k);
    }
}

#[test]
fn a_join_or_a_leave_moves_about_one_nth_of_the_keys() {
    const KEYS: u64 = 10_000;
    let (cluster, _) = ring(100);
    let owners = |c: &RingCluster| -> Vec<usize> {
        (0..KEYS)
            .map(|i| c.owner(&key(i)).expect("members"))
            .collect()
    };
    let mut ratios = Vec::new();
    for i in 0..100 {
        let before = owners(&cluster);
        cluster.leave(i);
        let after = owners(&cluster);
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        // Only the leaving node's keys move, each to one other node.
        assert!(before.iter().zip(&after).all(|(a, b)| a == b || *a == i));
        ratios.push(moved as f64 / (KEYS as f64 / 100.0));
        cluster.join(i);
        let back = owners(&cluster);
        assert_eq!(back, before, "a join undoes the leave exactly");
    }
    let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
    eprintln!(
        "keys moved per join or leave against K/N: mean {mean:.3}, max {:.3}",
        ratios.iter().cloned().fold(0.0, f64::max)
    );
    assert!(mean <= 1.1, "mean {mean:.3}");
}

#[tokio::test(start_paused = true)]
async fn a_rolling_restart_of_100_nodes_under_zipf_asks_the_origin_for_little() {
    const KEYS: u64 = 5_000;
    let (cluster, origin) = ring(100);
    let mut rng = StdRng::seed_from_u64(26);
    zipf_gets(&cluster, &mut rng, KEYS, 20_000).await;
    let cached = origin.keys();
    let warm = origin.total();
    assert_eq!(warm, cached, "warming loads each key once");
    let started = Instant::now();
    for i in 0..100 {
        // A graceful restart: hand over, leave, start again empty, rejoin; traffic between.
        let deadline = tokio::time::Instant::now().into_std() + Duration::from_secs(5);
        cluster.group(i).hand_over(usize::MAX, deadline).await;
        cluster.leave(i);
        zipf_gets(&cluster, &mut rng, KEYS, 100).await;
        cluster.restart(i).expect("valid group");
        cluster.join(i);
        zipf_gets(&cluster, &mut rng, KEYS, 100).await;
    }
    // Keys asked for the first time during the restart are loaded as ever: what counts is the
    // keys loaded again.
    let again = origin.total() - origin.keys();
    let share = again as f64 / cached as f64;
    eprintln!(
        "rolling restart of 100 nodes: {again} keys loaded again for {cached} cached ({:.2}%), {} first loads, in {:?}",
        share * 100.0,
        origin.keys() - cached,
        started.elapsed()
    );
    assert!(
        share <= 0.02,
        "{again} loads again for {cached} cached keys"
    );
}

#[tokio::test]
async fn with_10_owners_down_every_key_is_loaded_once() {
    const KEYS: u64 = 3_000;
    let (cluster, origin) = ring(100);
    let mut rng = StdRng::seed_from_u64(10);
    let mut down: Vec<usize> = (0..100).collect();
    for i in 0..10 {
        let j = rng.random_range(i..100);
        down.swap(i, j);
    }
    let down = &down[..10];
    for &i in down {
        cluster.set_down(i, true);
    }
    let up: Vec<usize> = (0..100).filter(|i| !down.contains(i)).collect();
    for round in 0..3 {
        for k in 0..KEYS {
            let node = up[rng.random_range(0..up.len())];
            assert_eq!(
                cluster.group(node).get(key(k)).await.expect("answered"),
                key(k),
                "round {round}"
            );
        }
    }
    assert_eq!(origin.keys(), KEYS as usize);
    assert_eq!(origin.most(), 1, "no key loaded twice");
}

#[tokio::test]
async fn a_handover_skips_a_member_that_is_down_for_the_next_one_up() {
    let (cluster, origin) = ring(5);
    let leaving = 0;
    let keys: Vec<Bytes> = (0..2_000)
        .map(key)
        .filter(|k| cluster.owner(k) == Some(leaving))
        .collect();
    for k in &keys {
        cluster
            .group(leaving)
            .get(k)
            .await
            .expect("loaded by its owner");
    }
    let loaded = origin.total();
    // One of the members the values would go to is down: they go to the next one up.
    cluster.set_down(1, true);
    let deadline = tokio::time::Instant::now().into_std() + Duration::from_secs(5);
    let handover = cluster.group(leaving).hand_over(usize::MAX, deadline).await;
    assert_eq!(
        (handover.values, handover.left),
        (keys.len(), 0),
        "{handover:?}"
    );
    assert!(handover.unreachable.is_empty());
    cluster.leave(leaving);
    for k in &keys {
        cluster.group(2).get(k).await.expect("answered");
    }
    assert_eq!(origin.total(), loaded, "no key loaded again");
}

#[tokio::test]
async fn a_new_owner_does_not_peek_for_a_key_written_to_it_before_the_previous_owner() {
    let (cluster, origin) = ring(3);
    let mine: Vec<Bytes> = (0..)
        .map(key)
        .filter(|k| cluster.owner(k) == Some(0))
        .take(2)
        .collect();
    let (written, untouched) = (&mine[0], &mine[1]);
    // While node 0 is away its keys are loaded by their successors; then it comes back.
    cluster.leave(0);
    for k in &mine {
        cluster.group(1).get(k).await.expect("loaded");
    }
    cluster.join(0);
    // A remove reaches the key's owner first, and the others after: here node 0 took it and
    // the previous owner not yet, so the value it holds is older than the write.
    cluster
        .group(0)
        .local()
        .remove(std::slice::from_ref(written));
    cluster.group(0).get(written).await.expect("loaded");
    cluster.group(0).get(untouched).await.expect("peeked");
    let stats = cluster.group(0).stats();
    assert_eq!(
        (stats.peeks, stats.peek_hits),
        (1, 1),
        "only the key not written was peeked"
    );
    assert_eq!(
        origin.total(),
        3,
        "the written key loaded again, after the write"
    );
    assert_eq!(origin.most(), 2);
}
