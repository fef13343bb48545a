//! Whether a peer is up: consecutive failures mark it down for a growing backoff, one probe at
//! a time brings it back; a request that waits long asks for a probe, so a peer that hangs with
//! its connections open is found out. And the peer's counters, as `/stats` shows them.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use alo_group::{BoxFuture, BucketCounts, Buckets, DURATION_BUCKETS_NS, escape};
use serde::Serialize;
use tokio::sync::Notify;

/// How a pool decides that a peer is down, and when it looks again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HealthOptions {
    /// Consecutive failures (connect errors and timeouts, resets, probes without an answer)
    /// that mark a peer down.
    pub(crate) failures: u32,
    /// How long a probe may take; also how long a request waits before it asks for a probe.
    pub(crate) probe_timeout: Duration,
    /// The first backoff of a down peer; doubled after each failed probe up to `max_backoff`.
    pub(crate) backoff: Duration,
    pub(crate) max_backoff: Duration,
    /// The least time without an answer, while requests wait on a peer, that makes it suspect
    /// of a stall (see [`Health::is_stalled`]).
    pub(crate) stall_after: Duration,
}

/// How many times a peer's usual latency without an answer, while requests wait on it, makes it
/// suspect of a stall (if longer than `stall_after`).
const STALL_LATENCIES: u32 = 20;

/// One peer's health. Failures and successes come from requests and probes; the state changes
/// are logged once each, not once per request.
pub(crate) struct Health {
    peer: String,
    options: HealthOptions,
    /// Set while the peer is down.
    down: AtomicBool,
    /// Woken when the peer goes down, so that requests waiting on it stop waiting at once.
    went_down: Notify,
    state: Mutex<State>,
    /// Set while a probe runs: one at a time.
    probing: AtomicBool,
    /// Set by a failure (and the backoff it grows), cleared by a success: a success with
    /// nothing to reset takes no lock, as after most answers.
    troubled: AtomicBool,
    marked_down: AtomicU64,
    marked_up: AtomicU64,
    failures_total: AtomicU64,
    batches: AtomicU64,
    batched_keys: AtomicU64,
    /// How long each request took to its answer, by kind (see [`RequestKind`]), in nanoseconds.
    durations: [Buckets; 4],
    /// Keys in each batch get.
    batch_keys: Buckets,
    /// What the stall check reads, all on tokio's clock, in nanoseconds since `start`.
    start: tokio::time::Instant,
    /// Requests waiting on the peer now.
    outstanding: AtomicUsize,
    /// When the peer last answered (a request or a probe), or when the first of the requests
    /// outstanding began, whichever is later.
    last_answer: AtomicU64,
    /// The peer's usual latency: a moving average over its answers (1/8 of each new one).
    latency: AtomicU64,
    /// Times a stall was suspected.
    stalls: AtomicU64,
    /// Set while a suspicion of a stall is being checked with a quick probe.
    suspecting: AtomicBool,
    /// Set when a quick probe confirmed a stall, until the peer answers again: requests waiting
    /// on it stop waiting, and its keys go to its successor.
    stalled: AtomicBool,
    /// Woken when a stall is confirmed.
    stall_confirmed: Notify,
}

struct State {
    /// Failures since the last success.
    consecutive: u32,
    /// The wait before the next probe of a down peer.
    backoff: Duration,
}

/// What a failure or a success changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    None,
    /// The peer was up and is now down: start probing it.
    WentDown,
}

/// One peer's health, as `/stats` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PeerStats {
    /// The peer's URL.
    pub url: String,
    /// `"up"` or `"down"`.
    pub state: &'static str,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Requests and probes that failed (connect errors and timeouts, resets, no answer in time).
    pub failures: u64,
    /// Times the peer was marked down.
    pub marked_down: u64,
    /// Times a probe brought it back up.
    pub marked_up: u64,
    /// Batch gets sent to the peer (requests that asked for two keys or more at once).
    pub batches: u64,
    /// Keys asked for in those batches.
    pub batched_keys: u64,
    /// Times the peer was suspected of a stall: requests waited on it for many times its usual
    /// latency without an answer. New keys then went to its successor until it answered a
    /// probe.
    pub stalls: u64,
    /// Removes and purges that did not reach the peer, waiting to be delivered when it answers
    /// again (keys, and a purge counts one).
    pub pending_writes: u64,
    /// Removes and purges delivered late, when the peer answered again.
    pub late_writes: u64,
    /// Times the waiting removes outgrew their bound and became a purge of their group.
    pub writes_overflowed: u64,
    /// How long requests to the peer took to their answer, in nanoseconds, by kind (`get`,
    /// `batch`, `peek`, `write`); requests without an answer are not counted.
    #[serde(skip)]
    pub request_durations: Vec<(&'static str, BucketCounts)>,
    /// Keys in each batch get sent to the peer.
    #[serde(skip)]
    pub batch_keys: BucketCounts,
}

/// Bounds for the keys of a batch get: powers of two up to the asker's default batch of 64.
pub const BATCH_KEYS_BUCKETS: [u64; 7] = [1, 2, 4, 8, 16, 32, 64];

/// What a request to a peer asked, for its latency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestKind {
    Get,
    Batch,
    Peek,
    Write,
}

impl RequestKind {
    const ALL: [RequestKind; 4] = [
        RequestKind::Get,
        RequestKind::Batch,
        RequestKind::Peek,
        RequestKind::Write,
    ];

    /// What `request` asks; `None` for the liveness probe, which is not timed.
    pub(crate) fn of(request: &crate::protocol::Request<'_>) -> Option<RequestKind> {
        use crate::protocol::Request;
        Some(match request {
            Request::Probe => return None,
            Request::Get { .. } => RequestKind::Get,
            Request::GetMany { .. } => RequestKind::Batch,
            Request::Peek { .. } | Request::PeekMany { .. } => RequestKind::Peek,
            _ => RequestKind::Write,
        })
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RequestKind::Get => "get",
            RequestKind::Batch => "batch",
            RequestKind::Peek => "peek",
            RequestKind::Write => "write",
        }
    }
}

impl Health {
    pub(crate) fn new(peer: String, options: HealthOptions) -> Self {
        Health {
            peer,
            options,
            down: AtomicBool::new(false),
            went_down: Notify::new(),
            state: Mutex::new(State {
                consecutive: 0,
                backoff: options.backoff,
            }),
            probing: AtomicBool::new(false),
            troubled: AtomicBool::new(false),
            marked_down: AtomicU64::new(0),
            marked_up: AtomicU64::new(0),
            failures_total: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            batched_keys: AtomicU64::new(0),
            durations: RequestKind::ALL.map(|_| Buckets::new(&DURATION_BUCKETS_NS)),
            batch_keys: Buckets::new(&BATCH_KEYS_BUCKETS),
            start: tokio::time::Instant::now(),
            outstanding: AtomicUsize::new(0),
            last_answer: AtomicU64::new(0),
            latency: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
            suspecting: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
            stall_confirmed: Notify::new(),
        }
    }

    fn nanos(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// A request to the peer begins: counted as outstanding until the guard is dropped, which
    /// notes an answer with [`Outstanding::answered`].
    pub(crate) fn begin(&self) -> Outstanding<'_> {
        if self.outstanding.fetch_add(1, Ordering::AcqRel) == 0 {
            // The stall clock starts with the first request outstanding.
            self.last_answer.store(self.nanos(), Ordering::Relaxed);
        }
        Outstanding {
            health: self,
            began: self.nanos(),
        }
    }

    /// Whether requests have waited on the peer for many times its usual latency, at least
    /// `stall_after`, without an answer: a peer that hangs with its connections open (stopped,
    /// or its host gone) looks so long before a probe times out. A peer that is only slow (a long
    /// origin load) answers the probe the suspicion asks for, which clears it.
    pub(crate) fn is_stalled(&self) -> bool {
        if self.outstanding.load(Ordering::Acquire) == 0 {
            return false;
        }
        let silent = self
            .nanos()
            .saturating_sub(self.last_answer.load(Ordering::Relaxed));
        let usual = self
            .latency
            .load(Ordering::Relaxed)
            .saturating_mul(u64::from(STALL_LATENCIES));
        let floor = u64::try_from(self.options.stall_after.as_nanos()).unwrap_or(u64::MAX);
        silent > usual.max(floor)
    }

    /// Whether a quick probe confirmed a stall, and the peer has not answered since.
    pub(crate) fn is_stall_confirmed(&self) -> bool {
        self.stalled.load(Ordering::Acquire)
    }

    /// Resolves when a stall of the peer is confirmed (at once if it is).
    pub(crate) async fn stall_confirmed(&self) {
        let notified = self.stall_confirmed.notified();
        let mut notified = std::pin::pin!(notified);
        // Registered before the check, so a change between the two is not missed.
        notified.as_mut().enable();
        if !self.is_stall_confirmed() {
            notified.await;
        }
    }

    /// How long a quick probe of a suspected peer may take: as long as the suspicion's own
    /// threshold, a live peer answers a probe from memory in a round trip.
    fn quick_probe_timeout(&self) -> Duration {
        let usual = self
            .latency
            .load(Ordering::Relaxed)
            .saturating_mul(u64::from(STALL_LATENCIES));
        self.options.stall_after.max(Duration::from_nanos(usual))
    }

    /// The peer answered something (a probe, a request): its silence ends, and with it any
    /// stall.
    fn heard(&self) {
        self.last_answer.store(self.nanos(), Ordering::Relaxed);
        self.stalled.store(false, Ordering::Release);
    }

    pub(crate) fn options(&self) -> &HealthOptions {
        &self.options
    }

    pub(crate) fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// Resolves when the peer is marked down (at once if it is).
    pub(crate) async fn went_down(&self) {
        let notified = self.went_down.notified();
        let mut notified = std::pin::pin!(notified);
        // Registered before the check, so a change between the two is not missed.
        notified.as_mut().enable();
        if !self.is_down() {
            notified.await;
        }
    }

    /// The peer answered: it is up.
    pub(crate) fn success(&self) {
        self.heard();
        if !self.troubled.swap(false, Ordering::AcqRel) {
            return;
        }
        let mut state = self.lock();
        state.consecutive = 0;
        state.backoff = self.options.backoff;
        drop(state);
        if self.down.swap(false, Ordering::AcqRel) {
            self.marked_up.fetch_add(1, Ordering::Relaxed);
            tracing::info!(peer = %self.peer, "peer is up again");
        }
    }

    /// The peer gave no answer, for `reason`.
    pub(crate) fn failure(&self, reason: &dyn fmt::Display) -> Change {
        self.fail(reason, false)
    }

    /// The peer gave a sure sign it is not serving (it refused the connection: nobody listens):
    /// marked down at once, without waiting for more failures.
    pub(crate) fn refused(&self, reason: &dyn fmt::Display) -> Change {
        self.fail(reason, true)
    }

    fn fail(&self, reason: &dyn fmt::Display, for_sure: bool) -> Change {
        self.failures_total.fetch_add(1, Ordering::Relaxed);
        let mut state = self.lock();
        self.troubled.store(true, Ordering::Release);
        state.consecutive = state.consecutive.saturating_add(1);
        if (state.consecutive < self.options.failures && !for_sure) || self.is_down() {
            return Change::None;
        }
        drop(state);
        if self.down.swap(true, Ordering::AcqRel) {
            return Change::None;
        }
        self.went_down.notify_waiters();
        self.marked_down.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(peer = %self.peer, reason = %escape(reason), failures = self.options.failures, "peer marked down; its keys load locally until a probe answers");
        Change::WentDown
    }

    /// The wait before the next probe of a down peer; each call doubles the next, up to the cap.
    pub(crate) fn next_backoff(&self) -> Duration {
        let mut state = self.lock();
        self.troubled.store(true, Ordering::Release);
        let wait = state.backoff;
        state.backoff = (wait * 2).min(self.options.max_backoff);
        wait
    }

    /// Claims the right to probe; `false` when a probe is running already.
    fn start_probe(&self) -> bool {
        !self.probing.swap(true, Ordering::AcqRel)
    }

    fn end_probe(&self) {
        self.probing.store(false, Ordering::Release);
    }

    /// A batch get of `keys` keys was sent.
    pub(crate) fn batched(&self, keys: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batched_keys.fetch_add(keys as u64, Ordering::Relaxed);
        self.batch_keys.observe(keys as u64);
    }

    /// A request of `kind` was answered after `took`.
    pub(crate) fn answered_in(&self, kind: RequestKind, took: Duration) {
        self.durations[kind as usize].observe_duration(took);
    }

    pub(crate) fn stats(&self) -> PeerStats {
        PeerStats {
            url: self.peer.clone(),
            state: if self.is_down() { "down" } else { "up" },
            consecutive_failures: self.lock().consecutive,
            failures: self.failures_total.load(Ordering::Relaxed),
            marked_down: self.marked_down.load(Ordering::Relaxed),
            marked_up: self.marked_up.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            batched_keys: self.batched_keys.load(Ordering::Relaxed),
            stalls: self.stalls.load(Ordering::Relaxed),
            request_durations: RequestKind::ALL
                .map(|kind| (kind.as_str(), self.durations[kind as usize].snapshot()))
                .to_vec(),
            batch_keys: self.batch_keys.snapshot(),
            pending_writes: 0,
            late_writes: 0,
            writes_overflowed: 0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A request outstanding on a peer; see [`Health::begin`].
pub(crate) struct Outstanding<'a> {
    health: &'a Health,
    began: u64,
}

impl Outstanding<'_> {
    /// The peer answered the request: its silence ends, and the answer's latency joins its
    /// usual one.
    pub(crate) fn answered(self) {
        let health = self.health;
        let now = health.nanos();
        health.last_answer.store(now, Ordering::Relaxed);
        let took = now.saturating_sub(self.began);
        let usual = health.latency.load(Ordering::Relaxed);
        let next = match usual {
            0 => took,
            usual => usual - usual / 8 + took / 8,
        };
        health.latency.store(next, Ordering::Relaxed);
    }
}

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        self.health.outstanding.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A peer whose health is kept here: what probing needs of it.
pub(crate) trait Probed: Send + Sync + 'static {
    fn health(&self) -> &Health;

    /// One probe (`GET {base}`), within the probe timeout: any HTTP answer means the peer is
    /// serving. `Err` with why not.
    fn probe(&self) -> BoxFuture<'_, Result<(), String>>;

    /// What must reach a down peer that answers again before it is marked up (the writes that
    /// missed it). `Err` with why not: it stays down.
    fn before_up(this: &Arc<Self>) -> BoxFuture<'_, Result<(), String>>;
}

/// The peer looks stalled (see [`Health::is_stalled`]): unless a suspicion is being checked
/// already, counts one and checks it with a quick probe. No answer within the quick probe's
/// timeout confirms the stall: requests waiting on the peer stop waiting (their keys go to its
/// successor), and the usual probes decide whether it is down. An answer clears it: the peer was
/// only slow (a long origin load), and its waiting requests go on waiting.
pub(crate) fn suspect<P: Probed>(peer: &Arc<P>) {
    let health = peer.health();
    if health.suspecting.swap(true, Ordering::AcqRel) {
        return;
    }
    health.stalls.fetch_add(1, Ordering::Relaxed);
    let peer = Arc::clone(peer);
    tokio::spawn(async move {
        let health = peer.health();
        let limit = health.quick_probe_timeout();
        match tokio::time::timeout(limit, peer.probe()).await {
            Ok(Ok(())) => health.heard(),
            _ => {
                health.stalled.store(true, Ordering::Release);
                health.stall_confirmed.notify_waiters();
                tracing::debug!(peer = %health.peer, ?limit, "a stall confirmed: no answer to a quick probe");
                // Nothing is sent to it now, so the usual probes decide: until it answers (the
                // stall is over) or enough of them fail to mark it down (and revive takes over).
                while health.is_stall_confirmed() && !health.is_down() {
                    if !health.start_probe() {
                        tokio::time::sleep(health.options.probe_timeout).await;
                        continue;
                    }
                    let result = peer.probe().await;
                    health.end_probe();
                    match result {
                        Ok(()) => health.success(),
                        Err(reason) => failed(&peer, &reason),
                    }
                }
            }
        }
        health.suspecting.store(false, Ordering::Release);
    });
}

/// Counts a failure against `peer`; the one that marks it down starts bringing it back.
pub(crate) fn failed<P: Probed>(peer: &Arc<P>, reason: &dyn fmt::Display) {
    if peer.health().failure(reason) == Change::WentDown {
        tokio::spawn(revive(Arc::downgrade(peer)));
    }
}

/// `peer` refused a connection: nobody listens there. Marked down at once, and brought back
/// when a probe answers.
pub(crate) fn refused<P: Probed>(peer: &Arc<P>, reason: &dyn fmt::Display) {
    if peer.health().refused(reason) == Change::WentDown {
        tokio::spawn(revive(Arc::downgrade(peer)));
    }
}

/// Probes `peer` on a task of its own, unless a probe is running already (`false` then): a
/// request that has waited a probe timeout, or a suspected stall, asks whether the peer is slow
/// or hung.
pub(crate) fn probe_soon<P: Probed>(peer: &Arc<P>) -> bool {
    if !peer.health().start_probe() {
        return false;
    }
    let peer = Arc::clone(peer);
    tokio::spawn(async move {
        let result = peer.probe().await;
        peer.health().end_probe();
        match result {
            Ok(()) => peer.health().success(),
            Err(reason) => failed(&peer, &reason),
        }
    });
    true
}

/// Brings a down peer back: waits its backoff, probes, and again with a doubled backoff until a
/// probe answers. Ends when the peer is up, or gone from the membership.
async fn revive<P: Probed>(peer: Weak<P>) {
    loop {
        let Some(wait) = peer.upgrade().map(|p| p.health().next_backoff()) else {
            return;
        };
        tokio::time::sleep(wait).await;
        let Some(peer) = peer.upgrade() else { return };
        let health = peer.health();
        if !health.is_down() {
            return;
        }
        if !health.start_probe() {
            continue;
        }
        let result = match peer.probe().await {
            Ok(()) => P::before_up(&peer).await,
            Err(reason) => Err(reason),
        };
        health.end_probe();
        match result {
            Ok(()) => return health.success(),
            Err(reason) => {
                health.failure(&reason);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(failures: u32) -> Health {
        Health::new(
            "http://peer".into(),
            HealthOptions {
                failures,
                probe_timeout: Duration::from_millis(100),
                backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(5),
                stall_after: Duration::from_millis(100),
            },
        )
    }

    #[test]
    fn consecutive_failures_mark_down_once_and_a_success_brings_it_back() {
        let h = health(3);
        assert_eq!(h.failure(&"a"), Change::None);
        h.success();
        assert_eq!(h.failure(&"b"), Change::None);
        assert_eq!(h.failure(&"c"), Change::None);
        assert!(!h.is_down(), "a success in between reset the count");
        assert_eq!(h.failure(&"d"), Change::WentDown);
        assert!(h.is_down());
        assert_eq!(h.failure(&"e"), Change::None, "already down");
        h.success();
        let s = h.stats();
        assert_eq!(
            (s.state, s.marked_down, s.marked_up, s.failures),
            ("up", 1, 1, 5)
        );
    }

    #[test]
    fn the_backoff_doubles_up_to_its_cap_and_resets_on_success() {
        let h = health(1);
        let waits: Vec<u64> = (0..5).map(|_| h.next_backoff().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 5, 5]);
        h.success();
        assert_eq!(h.next_backoff(), Duration::from_secs(1));
    }

    #[test]
    fn one_probe_at_a_time() {
        let h = health(1);
        assert!(h.start_probe());
        assert!(!h.start_probe());
        h.end_probe();
        assert!(h.start_probe());
    }
}
