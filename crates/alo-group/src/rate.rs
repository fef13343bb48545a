//! How often peers ask the owner for each key: a small frequency sketch whose counts fade, so
//! that the owner, the one member that sees a key's whole demand, can tell an asker how popular
//! the key is, and the asker keep a copy of the popular ones only.
//!
//! A count-min sketch with conservative update (a key's count is the least of its four
//! counters; an ask raises only the counters at that least) in 4 × 4,096 32-bit counters
//! (64 KiB a group), halved every [`HALF_LIFE`]. A key's count over- but never under-states its
//! asks: keys that share all four counters with busier ones read as busier. Counting an ask is
//! four atomic reads and at most four `fetch_max`es, and a clock read; no lock.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// How often every count is halved: a key's count is its asks of the last few half-lives, the
/// recent ones weighing most.
pub(crate) const HALF_LIFE: Duration = Duration::from_secs(10);

/// Counters per row; a power of two, at most 2^16 (a row's index is 16 bits of the hash).
const WIDTH: usize = 4096;
const ROWS: usize = 4;

/// The asks of each key, fading.
pub(crate) struct Rates {
    counters: Box<[AtomicU32]>,
    /// The half-lives since `born` that the counts have been halved for.
    halved: AtomicU64,
    born: Instant,
}

impl Rates {
    pub(crate) fn new() -> Self {
        Rates {
            counters: (0..ROWS * WIDTH).map(|_| AtomicU32::new(0)).collect(),
            halved: AtomicU64::new(0),
            born: Instant::now(),
        }
    }

    /// Counts one ask for `key` and returns its rate, asks per minute, this one included.
    pub(crate) fn ask(&self, key: &[u8]) -> u32 {
        self.ask_at(key, Instant::now())
    }

    fn ask_at(&self, key: &[u8], now: Instant) -> u32 {
        self.fade(now);
        let slots = self.slots(key);
        let count = least(&slots).saturating_add(1);
        for slot in slots {
            slot.fetch_max(count, Relaxed);
        }
        per_minute(count)
    }

    /// The rate of `key` without counting an ask.
    #[cfg(test)]
    fn rate(&self, key: &[u8]) -> u32 {
        per_minute(least(&self.slots(key)))
    }

    /// The key's counter in each row.
    fn slots(&self, key: &[u8]) -> [&AtomicU32; ROWS] {
        let hash = xxhash_rust::xxh3::xxh3_64(key);
        std::array::from_fn(|row| {
            let index = (hash >> (16 * row)) as usize & (WIDTH - 1);
            &self.counters[row * WIDTH + index]
        })
    }

    /// Halves every count once for each half-life passed since the last time. One caller does
    /// it; asks counted meanwhile may be halved with the rest, or not: the rate is an estimate.
    fn fade(&self, now: Instant) {
        let due = now.saturating_duration_since(self.born).as_secs() / HALF_LIFE.as_secs();
        let done = self.halved.load(Relaxed);
        if due <= done
            || self
                .halved
                .compare_exchange(done, due, Relaxed, Relaxed)
                .is_err()
        {
            return;
        }
        let shift = (due - done).min(31) as u32;
        for counter in &self.counters {
            let _ = counter.fetch_update(Relaxed, Relaxed, |c| Some(c >> shift));
        }
    }
}

/// A key's count: the least of its counters.
fn least(slots: &[&AtomicU32; ROWS]) -> u32 {
    slots.iter().map(|s| s.load(Relaxed)).min().unwrap_or(0)
}

/// A count in the sketch as asks per minute. A key asked `r` times a second holds, halved every
/// half-life `h`, between `r·h` and `2·r·h` asks: `1.44·r·h` on average, hence the factor.
fn per_minute(count: u32) -> u32 {
    const SCALE: f64 = 60.0 / (1.44 * HALF_LIFE.as_secs() as f64);
    (f64::from(count) * SCALE).round() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_asked_more_reads_as_asked_more_and_an_unasked_key_as_none() {
        let rates = Rates::new();
        let now = rates.born;
        for _ in 0..100 {
            rates.ask_at(b"hot", now);
        }
        let once = rates.ask_at(b"cold", now);
        assert_eq!(rates.rate(b"never"), 0);
        assert_eq!(once, per_minute(1));
        assert_eq!(rates.rate(b"hot"), per_minute(100));
        assert!(per_minute(100) > 100 * per_minute(1) - 100);
    }

    #[test]
    fn counts_halve_every_half_life() {
        let rates = Rates::new();
        let start = rates.born;
        for _ in 0..64 {
            rates.ask_at(b"k", start);
        }
        // One half-life later the 64 asks count 32, then the new ask: 33.
        assert_eq!(rates.ask_at(b"k", start + HALF_LIFE), per_minute(33));
        // Three more: 33 / 8 = 4, and one more ask.
        assert_eq!(rates.ask_at(b"k", start + HALF_LIFE * 4), per_minute(5));
        // Long after, nothing is left of them.
        assert_eq!(rates.ask_at(b"k", start + HALF_LIFE * 100), per_minute(1));
    }

    #[test]
    fn among_many_keys_a_key_is_never_under_counted() {
        let rates = Rates::new();
        let now = rates.born;
        // 50,000 keys asked once each, and one asked 20 times among them.
        for i in 0..50_000u32 {
            rates.ask_at(&i.to_le_bytes(), now);
            if i % 2_500 == 0 {
                rates.ask_at(b"popular", now);
            }
        }
        assert!(rates.rate(b"popular") >= per_minute(20));
        // Most one-off keys read as far less popular than the popular one, sharing counters
        // as they do (12 keys a counter).
        let below = (0..50_000u32)
            .filter(|i| rates.rate(&i.to_le_bytes()) < per_minute(10))
            .count();
        assert!(below > 45_000, "{below}");
    }
}
