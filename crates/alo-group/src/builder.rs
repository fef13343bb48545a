//! Building a group: its budget and how it is split, its timeouts, its limits and its expiry.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::freshness::{Deadlines, Expiry};
use crate::group::{Group, Inner, sweep};
use crate::stats::Counters;
use crate::store::Store;
use crate::{Error, Getter, PeerPicker};

/// The budget a group gets unless told otherwise.
pub const DEFAULT_MAX_BYTES: usize = 64 << 20;

/// The largest value a group caches unless told otherwise (or its main cache, if smaller).
pub const DEFAULT_MAX_VALUE_BYTES: usize = 16 << 20;

/// How long a load may take unless told otherwise.
pub const DEFAULT_LOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a write to another member may take unless told otherwise. A member applies a write
/// in memory, without asking its origin, so a member that takes longer is taken for hung.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// How many getter calls of a group run at once unless told otherwise; more wait their turn.
pub const DEFAULT_MAX_CONCURRENT_LOADS: usize = 64;

/// The hot cache's share of the budget: at most 1/8, as groupcache keeps it.
const HOT_SHARE: usize = 8;

/// The rate of asks, per minute and per member that may ask, that an owner must report for a
/// key before an asker keeps a copy, unless told otherwise (see [`GroupBuilder::hot_rate`]).
pub const DEFAULT_HOT_RATE: u32 = 8;

/// Builds a [`Group`]; start with [`Group::builder`].
pub struct GroupBuilder {
    name: String,
    getter: Arc<dyn Getter>,
    max_bytes: usize,
    max_value_bytes: usize,
    deadlines: Deadlines,
    max_concurrent_loads: usize,
    picker: Option<Arc<dyn PeerPicker>>,
    hot_rate: u32,
    seed: u64,
    expiry: Expiry,
}

impl Group {
    /// A builder for a group called `name` that loads through `getter`, with a budget of
    /// [`DEFAULT_MAX_BYTES`] and no peers.
    pub fn builder(name: impl Into<String>, getter: impl Getter) -> GroupBuilder {
        GroupBuilder {
            name: name.into(),
            getter: Arc::new(getter),
            max_bytes: DEFAULT_MAX_BYTES,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            deadlines: Deadlines {
                load_timeout: DEFAULT_LOAD_TIMEOUT,
                write_timeout: DEFAULT_WRITE_TIMEOUT,
            },
            max_concurrent_loads: DEFAULT_MAX_CONCURRENT_LOADS,
            picker: None,
            hot_rate: DEFAULT_HOT_RATE,
            seed: 0x616c6f,
            expiry: Expiry::default(),
        }
    }
}

impl GroupBuilder {
    /// The budget of both caches together, in bytes of keys and values; 0 means unbounded.
    pub fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// The largest value the group caches, in bytes (default [`DEFAULT_MAX_VALUE_BYTES`], and at
    /// most the main cache's budget). Larger values are served, not cached, and counted in
    /// `values_too_large`. The caches are split into as many shards (at most 16) as leave each
    /// room for a value this large, so a larger limit means fewer shards to spread the locks.
    pub fn max_value_bytes(mut self, max_value_bytes: usize) -> Self {
        self.max_value_bytes = max_value_bytes;
        self
    }

    /// How long a load may take (default [`DEFAULT_LOAD_TIMEOUT`]): a getter call has what is
    /// left of it, and a peer asked for the key has it plus half of
    /// [`PEER_MARGIN`](crate::PEER_MARGIN). Past it the callers get [`Error::Timeout`], the load
    /// is dropped and counted in `load_timeouts`, and nothing is cached.
    pub fn load_timeout(mut self, load_timeout: Duration) -> Self {
        self.deadlines.load_timeout = load_timeout;
        self
    }

    /// How long a write to another member may take (default [`DEFAULT_WRITE_TIMEOUT`], 2 s): the
    /// deadline the transport is given. A member that does not answer in time is listed
    /// unreachable in the write's [`Written`](crate::Written): a member applies a write in
    /// memory, so one that does not answer in this time is hung or gone.
    pub fn write_timeout(mut self, write_timeout: Duration) -> Self {
        self.deadlines.write_timeout = write_timeout;
        self
    }

    /// How many getter calls run at once (default [`DEFAULT_MAX_CONCURRENT_LOADS`], 64): a load
    /// beyond it waits for a turn within its deadline, so no burst of cold keys, from one
    /// request or many, puts more than this on the origin at once. `GroupStats` counts the
    /// calls running and waiting (`loads_running`, `loads_waiting`) and the loads that waited
    /// (`load_waits`); a load that reaches its deadline waiting is a load timeout.
    pub fn max_concurrent_loads(mut self, loads: usize) -> Self {
        self.max_concurrent_loads = loads;
        self
    }

    /// Where to find the owner of a key. Without a picker the group loads every key itself.
    pub fn picker(mut self, picker: Arc<dyn PeerPicker>) -> Self {
        self.picker = Some(picker);
        self
    }

    /// When a value fetched from its owner is worth a copy in the hot cache: when the owner
    /// reports the key asked at least `per_member` times a minute for each other member (each
    /// may be asking it), so the bar rises with the cluster (default [`DEFAULT_HOT_RATE`]).
    /// The owner counts every peer's asks for each key in a small fading sketch, the one place
    /// that sees a key's whole demand. A popular key is kept after a few fetches, a key asked
    /// once takes no hot-cache room; a peer that reports no rate has one value in ten kept.
    pub fn hot_rate(mut self, per_member: u32) -> Self {
        self.hot_rate = per_member;
        self
    }

    /// Seeds the choice of which peer values go into the hot cache, for repeatable tests.
    #[cfg(feature = "testing")]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// How long a value is served when its getter gives it no time to live of its own, and
    /// a [`set`](Group::set) gives none (default: for as long as it stays in the cache).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.expiry.ttl = Some(ttl);
        self
    }

    /// How long the getter's "not found" for a key is remembered (default: not at all). Within
    /// it, gets of the key are answered [`Error::NotFound`] without asking the getter: one
    /// origin request per key per window, however many gets. The price: a key created at the
    /// origin in the meantime stays "not found" here until the window ends (or a `set` or
    /// `remove` of it).
    pub fn not_found_ttl(mut self, ttl: Duration) -> Self {
        self.expiry.not_found_ttl = ttl;
        self
    }

    /// How long past its expiry a value may still be served when its reload fails (default:
    /// not at all). The caller gets the old value, marked
    /// [`Stale::IfError`](crate::Stale::IfError), instead of the error.
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        self.expiry.stale_if_error = window;
        self
    }

    /// How long past its expiry a value is served at once, marked
    /// [`Stale::WhileRevalidate`](crate::Stale::WhileRevalidate), while one background load per
    /// key reloads it (default: not at all).
    pub fn stale_while_revalidate(mut self, window: Duration) -> Self {
        self.expiry.stale_while_revalidate = window;
        self
    }

    /// The group.
    ///
    /// # Errors
    /// [`Error::EmptyName`] when the name is empty; [`Error::ZeroTimeout`] for a zero load or
    /// write timeout; [`Error::ZeroConcurrency`] for no getter calls at once;
    /// [`Error::ZeroTtl`] for a zero default TTL.
    ///
    /// Built inside a tokio runtime, the group sweeps its expired entries once a second on a
    /// task of its own, which ends when the group is dropped. Outside one, expired entries are
    /// dropped only when a lookup finds them, or by eviction.
    pub fn build(self) -> Result<Group, Error> {
        if self.name.is_empty() {
            return Err(Error::EmptyName);
        }
        let Deadlines {
            load_timeout,
            write_timeout,
        } = self.deadlines;
        if load_timeout.is_zero() || write_timeout.is_zero() {
            return Err(Error::ZeroTimeout);
        }
        if self.max_concurrent_loads == 0 {
            return Err(Error::ZeroConcurrency);
        }
        if self.expiry.ttl == Some(Duration::ZERO) {
            return Err(Error::ZeroTtl);
        }
        let hot_bytes = match (&self.picker, self.max_bytes) {
            (None, _) => None,
            (Some(_), 0) => Some(0),
            (Some(_), max) => Some(max / HOT_SHARE).filter(|&b| b > 0),
        };
        let main_bytes = self.max_bytes - hot_bytes.unwrap_or(0);
        let max_value_bytes = match main_bytes {
            0 => self.max_value_bytes,
            main => self.max_value_bytes.min(main),
        };
        let store = Store::new(
            main_bytes,
            hot_bytes,
            max_value_bytes,
            self.expiry,
            self.hot_rate,
            self.seed,
        );
        let inner = Arc::new(Inner {
            name: self.name,
            getter: self.getter,
            picker: self.picker,
            store,
            revalidating: Mutex::default(),
            counters: Counters::default(),
            deadlines: self.deadlines,
            turns: Semaphore::new(self.max_concurrent_loads.min(Semaphore::MAX_PERMITS)),
            load_durations: crate::Buckets::new(&crate::DURATION_BUCKETS_NS),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(sweep(Arc::downgrade(&inner)));
        }
        Ok(Group { inner })
    }
}

impl fmt::Debug for GroupBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupBuilder")
            .field("name", &self.name)
            .field("max_bytes", &self.max_bytes)
            .field("max_value_bytes", &self.max_value_bytes)
            .field("deadlines", &self.deadlines)
            .field("max_concurrent_loads", &self.max_concurrent_loads)
            .field("peers", &self.picker.is_some())
            .field("hot_rate", &self.hot_rate)
            .field("expiry", &self.expiry)
            .finish_non_exhaustive()
    }
}
