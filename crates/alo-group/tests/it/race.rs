//! The core promise of writes, against random interleavings: once a remove or a set of a key
//! has returned, no get that begins afterwards, on any node, is answered with a value loaded
//! before the write began. Gets, updates at the source followed by a remove, sets and slow loads
//! run on paused time over a two-node in-memory cluster (so peer fetches and hot copies take
//! part), and every answer is checked against the version the source had when the get began.

use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use crate::net::{Cluster, version_of};

const KEYS: [&str; 4] = ["a0", "a1", "b0", "b1"];

#[derive(Clone, Debug)]
enum Op {
    /// A get on a node, left running.
    Get { node: usize, key: usize },
    /// The source changes the key, then a node removes it.
    Update { node: usize, key: usize },
    /// A node sets the key to a new version (the source takes it too).
    Set { node: usize, key: usize },
    /// Time passes; loads take 10 ms.
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..2usize, 0..KEYS.len()).prop_map(|(node, key)| Op::Get { node, key }),
        2 => (0..2usize, 0..KEYS.len()).prop_map(|(node, key)| Op::Update { node, key }),
        1 => (0..2usize, 0..KEYS.len()).prop_map(|(node, key)| Op::Set { node, key }),
        3 => (0..25u64).prop_map(Op::Advance),
    ]
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let cluster = Cluster::new(2, |b| b);
        *cluster.origin.delay.lock().expect("not poisoned") = Duration::from_millis(10);
        let mut gets = Vec::new();
        for op in ops {
            match op {
                Op::Get { node, key } => {
                    let key = KEYS[key];
                    // Everything written before this get began is at least this version.
                    let floor = cluster.origin.version(key.as_bytes());
                    let g = cluster.node(node).clone();
                    gets.push((key, floor, tokio::spawn(async move { g.get(key).await })));
                }
                Op::Update { node, key } => {
                    let key = KEYS[key];
                    cluster.origin.update(key.as_bytes());
                    cluster.node(node).remove(key).await.expect("remove");
                }
                Op::Set { node, key } => {
                    let key = KEYS[key];
                    let version = cluster.origin.update(key.as_bytes());
                    let value = Bytes::from(format!("{key}@{version}"));
                    cluster.node(node).set(key, value, None).await.expect("set");
                }
                Op::Advance(ms) => tokio::time::advance(Duration::from_millis(ms)).await,
            }
            tokio::task::yield_now().await;
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        for (key, floor, get) in gets {
            let value = get.await.expect("joined").expect("value");
            prop_assert!(
                version_of(&value) >= floor,
                "a get of {key} begun at version {floor} got {:?}",
                value
            );
        }
        // Nothing older than the last write is cached anywhere.
        for n in 0..2 {
            for key in KEYS {
                let value = cluster.node(n).get(key).await.expect("value");
                prop_assert_eq!(version_of(&value), cluster.origin.version(key.as_bytes()));
            }
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn nothing_written_over_is_served_afterwards(ops in prop::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}
