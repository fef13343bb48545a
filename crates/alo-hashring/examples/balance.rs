//! How evenly the ring spreads keys, and how many move when a node joins or leaves.
//!
//! `cargo run -p alo-hashring --example balance --release`
//!
//! For 3, 10 and 100 nodes and 50, 160 and 500 virtual nodes per node, over 1,000,000 keys:
//! the most loaded node against the mean, the standard deviation of the loads (relative to the
//! mean), and the fraction of keys that changed owner when one node joined and when one left,
//! next to the ideal (1/(N+1) and 1/N).

use alo_hashring::HashRing;

const KEYS: usize = 1_000_000;

fn node(i: usize) -> String {
    format!("http://10.0.{}.{}:8001", i / 250, i % 250 + 1)
}

/// The owner (as an index into the node list) of every key.
fn owners(ring: &HashRing<String>, keys: &[String], names: &[String]) -> Vec<u32> {
    keys.iter()
        .map(|k| {
            let owner = ring.node_for(k).expect("ring has nodes");
            names.iter().position(|n| n == owner).expect("member") as u32
        })
        .collect()
}

fn moved(before: &[u32], after: &[u32]) -> f64 {
    let n = before.iter().zip(after).filter(|(a, b)| a != b).count();
    n as f64 / before.len() as f64
}

fn main() {
    let keys: Vec<String> = (0..KEYS).map(|i| format!("key:{i}")).collect();
    println!(
        "| nodes | vnodes | max/mean | stddev/mean | moved on join (ideal) | join/ideal | \
         moved on leave (ideal) | leave/ideal |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for nodes in [3, 10, 100] {
        for replicas in [50, 160, 500] {
            let names: Vec<String> = (0..=nodes).map(node).collect();
            let mut ring = HashRing::with_replicas(replicas);
            for name in &names[..nodes] {
                ring.add(name.clone());
            }
            let base = owners(&ring, &keys, &names);

            let mut load = vec![0usize; nodes];
            for &o in &base {
                load[o as usize] += 1;
            }
            let mean = KEYS as f64 / nodes as f64;
            let max = *load.iter().max().expect("nodes") as f64;
            let var = load.iter().map(|&l| (l as f64 - mean).powi(2)).sum::<f64>() / nodes as f64;

            ring.add(names[nodes].clone());
            let joined = moved(&base, &owners(&ring, &keys, &names));
            ring.remove(names[nodes].as_bytes());
            ring.remove(names[0].as_bytes());
            let left = moved(&base, &owners(&ring, &keys, &names));

            let (join_ideal, leave_ideal) = (1.0 / (nodes + 1) as f64, 1.0 / nodes as f64);
            println!(
                "| {nodes} | {replicas} | {:.3} | {:.3} | {:.4} ({:.4}) | {:.2} | {:.4} ({:.4}) | {:.2} |",
                max / mean,
                var.sqrt() / mean,
                joined,
                join_ideal,
                joined / join_ideal,
                left,
                leave_ideal,
                left / leave_ideal,
            );
        }
    }
}
