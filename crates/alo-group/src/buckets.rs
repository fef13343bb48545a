//! Counts of observations in fixed buckets, for latency histograms a server exports: kept with
//! atomics, so that observing one takes no lock and no allocation.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Bounds for durations in nanoseconds: 25 us to 10 s, for a cache's hits and its origin's
/// loads alike.
pub const DURATION_BUCKETS_NS: [u64; 18] = [
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// A histogram of `u64` observations: how many fell at or under each bound, and above the
/// last; and their sum.
#[derive(Debug)]
pub struct Buckets {
    bounds: &'static [u64],
    /// One a bound, then one for the values above the last.
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl Buckets {
    /// Empty buckets with `bounds`, which must rise.
    pub fn new(bounds: &'static [u64]) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds must rise");
        Buckets {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    /// Counts `value` in the first bucket whose bound it does not pass.
    pub fn observe(&self, value: u64) {
        let at = self.bounds.partition_point(|&bound| bound < value);
        self.counts[at].fetch_add(1, Relaxed);
        self.sum.fetch_add(value, Relaxed);
    }

    /// Counts `took` in nanoseconds (saturating), for buckets of [`DURATION_BUCKETS_NS`].
    pub fn observe_duration(&self, took: Duration) {
        self.observe(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
    }

    /// The counts now, as an exposition format wants them: cumulative.
    pub fn snapshot(&self) -> BucketCounts {
        let mut seen = 0;
        let cumulative: Vec<u64> = self
            .counts
            .iter()
            .map(|c| {
                seen += c.load(Relaxed);
                seen
            })
            .collect();
        BucketCounts {
            bounds: self.bounds,
            count: seen,
            at_or_under: cumulative[..self.bounds.len()].to_vec(),
            sum: self.sum.load(Relaxed),
        }
    }
}

/// What [`Buckets`] held at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BucketCounts {
    /// The bounds.
    pub bounds: &'static [u64],
    /// Observations at or under each bound (cumulative).
    pub at_or_under: Vec<u64>,
    /// All observations.
    pub count: u64,
    /// Their sum.
    pub sum: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_value_counts_at_or_under_every_bound_it_does_not_pass() {
        static BOUNDS: [u64; 3] = [10, 20, 40];
        let buckets = Buckets::new(&BOUNDS);
        for value in [0, 10, 11, 20, 39, 41, 1000] {
            buckets.observe(value);
        }
        let counts = buckets.snapshot();
        assert_eq!(counts.at_or_under, [2, 4, 5]);
        assert_eq!((counts.count, counts.sum), (7, 1121));
    }
}
