//! Writes that did not reach a member, kept until it answers again: a remove is not lost while a
//! member is briefly away.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

/// The most keys kept for one member; past it, the group whose keys overflow is purged there
/// instead: a purge drops more than needed, never less.
pub(crate) const MAX_PENDING_KEYS: usize = 10_000;

/// The removes and purges one member missed.
#[derive(Default)]
pub(super) struct Pending {
    groups: Mutex<HashMap<String, Missed>>,
    /// Whether any group has something waiting: read without the lock after every answer.
    waiting: AtomicBool,
    /// Set while a delivery runs: one at a time.
    delivering: AtomicBool,
    delivered: AtomicU64,
    overflowed: AtomicU64,
}

/// What one group missed on a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Missed {
    /// These keys' removes.
    Keys(HashSet<Bytes>),
    /// A purge (which covers any remove).
    Purge,
}

impl Pending {
    /// Keeps the removes of `keys` of `group` for later.
    pub(super) fn removes(&self, group: &str, keys: &[Bytes]) {
        let mut groups = self.lock();
        let total: usize = groups.values().map(Missed::len).sum();
        let missed = groups
            .entry(group.to_string())
            .or_insert_with(|| Missed::Keys(HashSet::new()));
        if let Missed::Keys(held) = missed {
            if total + keys.len() > MAX_PENDING_KEYS {
                *missed = Missed::Purge;
                self.overflowed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    group,
                    limit = MAX_PENDING_KEYS,
                    "too many removes waiting for a member: it will be purged of the group instead"
                );
            } else {
                held.extend(keys.iter().cloned());
            }
        }
    }

    /// Keeps a purge of `group` for later.
    pub(super) fn purge(&self, group: &str) {
        self.lock().insert(group.to_string(), Missed::Purge);
    }

    /// A write of `keys` of `group` reached the member: earlier removes of them are done (and a
    /// later one, a set, must not be undone by them).
    pub(super) fn reached(&self, group: &str, keys: &[Bytes]) {
        let mut groups = self.lock();
        if let Some(Missed::Keys(held)) = groups.get_mut(group) {
            for key in keys {
                held.remove(key);
            }
            if held.is_empty() {
                groups.remove(group);
            }
        }
    }

    /// A purge of `group` reached the member: everything missed before it is done.
    pub(super) fn purged(&self, group: &str) {
        self.lock().remove(group);
    }

    /// Whether anything waits. Reads no lock: cheap after every answer from the member.
    pub(super) fn is_empty(&self) -> bool {
        !self.waiting.load(Ordering::Acquire)
    }

    /// Claims the right to deliver: `false` when a delivery runs already.
    pub(super) fn start_delivery(&self) -> bool {
        !self.delivering.swap(true, Ordering::AcqRel)
    }

    pub(super) fn end_delivery(&self) {
        self.delivering.store(false, Ordering::Release);
    }

    /// What waits now, group by group, to be delivered; what is delivered is then marked with
    /// [`reached`](Pending::reached) or [`purged`](Pending::purged).
    pub(super) fn snapshot(&self) -> Vec<(String, Missed)> {
        self.lock()
            .iter()
            .map(|(group, missed)| (group.clone(), missed.clone()))
            .collect()
    }

    /// Counts writes delivered late: keys, a purge one.
    pub(super) fn delivered(&self, writes: usize) {
        self.delivered.fetch_add(writes as u64, Ordering::Relaxed);
    }

    /// Writes waiting, delivered late, and overflows, for the member's stats.
    pub(super) fn counts(&self) -> (u64, u64, u64) {
        let waiting: usize = self.lock().values().map(Missed::len).sum();
        (
            waiting as u64,
            self.delivered.load(Ordering::Relaxed),
            self.overflowed.load(Ordering::Relaxed),
        )
    }

    fn lock(&self) -> Guard<'_> {
        Guard {
            groups: self.groups.lock().unwrap_or_else(PoisonError::into_inner),
            waiting: &self.waiting,
        }
    }
}

/// The groups' missed writes, locked; on release, whether anything waits is noted.
struct Guard<'a> {
    groups: MutexGuard<'a, HashMap<String, Missed>>,
    waiting: &'a AtomicBool,
}

impl std::ops::Deref for Guard<'_> {
    type Target = HashMap<String, Missed>;

    fn deref(&self) -> &Self::Target {
        &self.groups
    }
}

impl std::ops::DerefMut for Guard<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.groups
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.waiting
            .store(!self.groups.is_empty(), Ordering::Release);
    }
}

impl Missed {
    /// Writes it stands for: its keys, or one purge.
    pub(super) fn len(&self) -> usize {
        match self {
            Missed::Keys(keys) => keys.len(),
            Missed::Purge => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&'static str]) -> Vec<Bytes> {
        names
            .iter()
            .map(|k| Bytes::from_static(k.as_bytes()))
            .collect()
    }

    #[test]
    fn a_later_write_of_a_key_takes_its_missed_remove_away() {
        let pending = Pending::default();
        pending.removes("g", &keys(&["a", "b"]));
        pending.reached("g", &keys(&["a"]));
        assert_eq!(pending.counts().0, 1);
        pending.reached("g", &keys(&["b"]));
        assert!(pending.is_empty());
        pending.purge("g");
        pending.removes("g", &keys(&["c"]));
        assert_eq!(
            pending.snapshot(),
            [("g".to_string(), Missed::Purge)],
            "a purge covers it"
        );
        pending.purged("g");
        assert!(pending.is_empty());
    }

    #[test]
    fn too_many_removes_become_a_purge() {
        let pending = Pending::default();
        let many: Vec<Bytes> = (0..MAX_PENDING_KEYS)
            .map(|i| Bytes::from(i.to_string()))
            .collect();
        pending.removes("g", &many);
        assert_eq!(pending.counts(), (MAX_PENDING_KEYS as u64, 0, 0));
        pending.removes("g", &keys(&["one more"]));
        assert_eq!(pending.snapshot(), [("g".to_string(), Missed::Purge)]);
        assert_eq!(pending.counts(), (1, 0, 1));
    }
}
