//! `/metrics`: one `prometheus` registry per node, in the Prometheus text format. The
//! counters and histograms live where their numbers do (the groups, the pool, the membership;
//! the gets' latency here) and are read when scraped. Every histogram is an
//! [`alo_group::Buckets`], which observes with atomics.
//!
//! The `prometheus` crate and not `prometheus-client`: it writes the Prometheus text format,
//! which Prometheus and `promtool check metrics` read as they are (prometheus-client writes
//! only OpenMetrics, whose counter families `promtool` takes for counters without help).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use alo_group::{BucketCounts, Buckets, DURATION_BUCKETS_NS, GroupStats, Groups, Via};
use alo_http::{HttpPool, PeerStats};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};
use prometheus::{Encoder as _, Registry, TextEncoder};

use crate::members::Membership;

/// How a get through the client API was answered: `alo_get_duration_seconds`'s `outcome`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// From this node's caches.
    Hit,
    /// From another member.
    Peer,
    /// Loaded from the origin here.
    Origin,
    /// An expired value, under a stale window.
    Stale,
    /// No value: not found, or a failure.
    Error,
}

impl Outcome {
    const ALL: [Outcome; 5] = [
        Outcome::Hit,
        Outcome::Peer,
        Outcome::Origin,
        Outcome::Stale,
        Outcome::Error,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Peer => "peer",
            Outcome::Origin => "origin",
            Outcome::Stale => "stale",
            Outcome::Error => "error",
        }
    }

    /// How `found`, a value served, was answered.
    pub(crate) fn of(found: &alo_group::Found) -> Outcome {
        match (found.stale, found.via) {
            (Some(_), _) => Outcome::Stale,
            (None, Via::Peer) => Outcome::Peer,
            (None, Via::Origin) => Outcome::Origin,
            _ => Outcome::Hit,
        }
    }
}

/// Each group's get latency in nanoseconds, one histogram per outcome, made once: observing
/// one is a map lookup by the group's name and two atomic adds, no lock and no allocation.
type GetDurations = HashMap<String, [Buckets; 5]>;

/// The node's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    gets: Arc<GetDurations>,
}

impl Metrics {
    /// The registry of a node serving `groups` (all of them registered by now).
    pub(crate) fn new(
        groups: &Groups,
        pool: Arc<HttpPool>,
        membership: Arc<Membership>,
    ) -> prometheus::Result<Self> {
        let gets: Arc<GetDurations> = Arc::new(
            groups
                .all()
                .iter()
                .map(|g| {
                    let each = Outcome::ALL.map(|_| Buckets::new(&DURATION_BUCKETS_NS));
                    (g.name().to_string(), each)
                })
                .collect(),
        );
        let registry = Registry::new();
        let snapshot = Snapshot {
            groups: groups.clone(),
            pool,
            membership,
            gets: Arc::clone(&gets),
            desc: Desc::new(
                "alo_counters".into(),
                "The counters of the groups, the peers and the membership.".into(),
                Vec::new(),
                HashMap::new(),
            )?,
        };
        registry.register(Box::new(snapshot))?;
        Ok(Metrics { registry, gets })
    }

    /// Counts a get of `group` answered by `outcome` after `took`.
    pub(crate) fn observe_get(&self, group: &str, outcome: Outcome, took: Duration) {
        if let Some(each) = self.gets.get(group) {
            each[outcome as usize].observe_duration(took);
        }
    }

    /// Every family in the Prometheus text format.
    pub(crate) fn encode(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "encoding the metrics failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// What a scrape reads of the counters: their values at that moment.
struct Snapshot {
    groups: Groups,
    pool: Arc<HttpPool>,
    membership: Arc<Membership>,
    gets: Arc<GetDurations>,
    /// The registry asks a collector for descriptions; the families are described in full when
    /// collected.
    desc: Desc,
}

impl Collector for Snapshot {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.families()
    }
}

impl Snapshot {
    /// Every family, from the counters as they are now.
    fn families(&self) -> Vec<MetricFamily> {
        let groups = self.groups.all();
        let stats: Vec<(String, GroupStats)> = groups
            .iter()
            .map(|g| (g.name().to_string(), g.stats()))
            .collect();
        let mut out = Vec::new();
        let counters: [Metric<GroupStats>; 26] = [
            ("gets_total", "counter", "Gets received.", |s| s.gets),
            // Not `cache_hits_total`: that family is the caches' own, by cache.
            (
                "hits_total",
                "counter",
                "Gets answered from a local cache (main or hot).",
                |s| s.cache_hits,
            ),
            ("peer_loads_total", "counter", "Values from peers.", |s| {
                s.peer_loads
            }),
            (
                "peer_load_errs_total",
                "counter",
                "Owners' answers without a value (not found, invalid, load failed or timed out).",
                |s| s.peer_load_errs,
            ),
            (
                "peer_errors_total",
                "counter",
                "Peer requests without an answer.",
                |s| s.peer_errors,
            ),
            (
                "load_timeouts_total",
                "counter",
                "Loads dropped at their deadline.",
                |s| s.load_timeouts,
            ),
            (
                "values_too_large_total",
                "counter",
                "Values served but too large to cache.",
                |s| s.values_too_large,
            ),
            (
                "loads_total",
                "counter",
                "Gets that missed the caches.",
                |s| s.loads,
            ),
            (
                "loads_deduped_total",
                "counter",
                "Loads that joined another caller's.",
                |s| s.loads_deduped,
            ),
            (
                "local_loads_total",
                "counter",
                "Values loaded from the origin.",
                |s| s.local_loads,
            ),
            (
                "local_load_errs_total",
                "counter",
                "Failed origin loads.",
                |s| s.local_load_errs,
            ),
            (
                "server_requests_total",
                "counter",
                "Requests from peers.",
                |s| s.server_requests,
            ),
            (
                "sets_total",
                "counter",
                "Values stored here by a set.",
                |s| s.sets,
            ),
            (
                "removes_total",
                "counter",
                "Keys dropped here by a remove.",
                |s| s.removes,
            ),
            ("purges_total", "counter", "Purges applied here.", |s| {
                s.purges
            }),
            (
                "expired_total",
                "counter",
                "Entries dropped because their TTL had passed.",
                |s| s.expired,
            ),
            (
                "negative_hits_total",
                "counter",
                "Gets answered from a remembered \"not found\".",
                |s| s.negative_hits,
            ),
            (
                "stale_serves_total",
                "counter",
                "Gets answered with an expired value under a stale window.",
                |s| s.stale_serves,
            ),
            (
                "origin_loads_running",
                "gauge",
                "Origin loads running now (at most --origin-max-concurrency).",
                |s| s.loads_running,
            ),
            (
                "origin_loads_waiting",
                "gauge",
                "Loads waiting now for a turn at the origin.",
                |s| s.loads_waiting,
            ),
            (
                "origin_load_waits_total",
                "counter",
                "Loads that waited for a turn at the origin.",
                |s| s.load_waits,
            ),
            (
                "peeks_total",
                "counter",
                "Keys owned since the members changed, asked of their successor before the origin.",
                |s| s.peeks,
            ),
            (
                "peek_hits_total",
                "counter",
                "Peeks answered with a value, kept without an origin load.",
                |s| s.peek_hits,
            ),
            (
                "fills_total",
                "counter",
                "Values kept here that a leaving member handed over.",
                |s| s.fills,
            ),
            (
                "handed_over_total",
                "counter",
                "Values this node handed over when it left.",
                |s| s.handed_over,
            ),
            (
                "successor_loads_total",
                "counter",
                "Keys asked of the member taking a down owner's place.",
                |s| s.successor_loads,
            ),
        ];
        for (name, kind, help, value) in counters {
            let samples = stats
                .iter()
                .map(|(group, s)| (vec![("group", group.as_str())], value(s)));
            out.push(family((name, kind, help), samples));
        }
        let caches: [Metric<alo_group::CacheStats>; 6] = [
            ("cache_bytes", "gauge", "Bytes held.", |c| c.bytes),
            (
                "cache_max_bytes",
                "gauge",
                "The cache's budget in bytes (0: unbounded).",
                |c| c.max_bytes,
            ),
            ("cache_items", "gauge", "Entries held.", |c| c.items),
            ("cache_gets_total", "counter", "Cache lookups.", |c| c.gets),
            (
                "cache_hits_total",
                "counter",
                "Cache lookups that hit.",
                |c| c.hits,
            ),
            (
                "cache_evictions_total",
                "counter",
                "Entries evicted.",
                |c| c.evictions,
            ),
        ];
        for (name, kind, help, value) in caches {
            let samples = stats.iter().flat_map(|(group, s)| {
                [("main", &s.main_cache), ("hot", &s.hot_cache)]
                    .map(|(cache, c)| (vec![("group", group.as_str()), ("cache", cache)], value(c)))
            });
            out.push(family((name, kind, help), samples));
        }
        let gets = self.gets.iter().flat_map(|(group, each)| {
            Outcome::ALL.map(|outcome| {
                let labels = vec![("group", group.as_str()), ("outcome", outcome.as_str())];
                (labels, each[outcome as usize].snapshot())
            })
        });
        out.push(histogram(
            (
                "get_duration_seconds",
                "Gets through the client API, from the request's key to the answer, by how they were answered.",
            ),
            gets,
            NANOS,
        ));
        let loads = groups
            .iter()
            .map(|g| (vec![("group", g.name())], g.load_durations()));
        out.push(histogram(
            (
                "origin_load_duration_seconds",
                "Getter calls (origin loads) from their turn to their answer.",
            ),
            loads,
            NANOS,
        ));
        let peers = self.pool.peer_stats();
        let requests = peers.iter().flat_map(|p| {
            p.request_durations.iter().map(|(kind, durations)| {
                (
                    vec![("peer", p.url.as_str()), ("kind", *kind)],
                    durations.clone(),
                )
            })
        });
        out.push(histogram(
            (
                "peer_request_duration_seconds",
                "Requests to a peer that got an answer, by kind (get, batch, peek, write), from sending to the answer.",
            ),
            requests,
            NANOS,
        ));
        let batches = peers
            .iter()
            .map(|p| (vec![("peer", p.url.as_str())], p.batch_keys.clone()));
        out.push(histogram(
            ("peer_batch_keys", "Keys in each batch get sent to a peer."),
            batches,
            1.0,
        ));
        let health: [Metric<PeerStats>; 10] = [
            (
                "peer_up",
                "gauge",
                "1 while the peer is up, 0 while down.",
                |p| u64::from(p.state == "up"),
            ),
            (
                "peer_failures_total",
                "counter",
                "Peer requests and probes without an answer.",
                |p| p.failures,
            ),
            (
                "peer_marked_down_total",
                "counter",
                "Times the peer was marked down.",
                |p| p.marked_down,
            ),
            (
                "peer_marked_up_total",
                "counter",
                "Times a probe brought the peer back.",
                |p| p.marked_up,
            ),
            (
                "peer_batches_total",
                "counter",
                "Batch gets sent to the peer (two keys or more in one request).",
                |p| p.batches,
            ),
            (
                "peer_batched_keys_total",
                "counter",
                "Keys asked for in batch gets.",
                |p| p.batched_keys,
            ),
            (
                "peer_stalls_total",
                "counter",
                "Times the peer was suspected of a stall (new keys went to its successor).",
                |p| p.stalls,
            ),
            (
                "peer_pending_writes",
                "gauge",
                "Removes and purges waiting for the peer to answer again.",
                |p| p.pending_writes,
            ),
            (
                "peer_late_writes_total",
                "counter",
                "Removes and purges delivered to the peer late.",
                |p| p.late_writes,
            ),
            (
                "peer_writes_overflowed_total",
                "counter",
                "Times the removes waiting for the peer became a purge.",
                |p| p.writes_overflowed,
            ),
        ];
        for (name, kind, help, value) in health {
            let samples = peers
                .iter()
                .map(|p| (vec![("peer", p.url.as_str())], value(p)));
            out.push(family((name, kind, help), samples));
        }
        let members = self.pool.members().len() as u64;
        let membership = [
            (
                "members",
                "gauge",
                "Members in this node's view, itself included.",
                members,
            ),
            (
                "ready",
                "gauge",
                "1 once a member list that includes this node is applied.",
                u64::from(self.membership.is_ready()),
            ),
            (
                "membership_changes_total",
                "counter",
                "Member lists applied that changed the members, after the first.",
                self.membership.changes(),
            ),
            (
                "membership_failures_total",
                "counter",
                "Reads of the member source that failed or gave no usable list.",
                self.membership.failures(),
            ),
        ];
        for (name, kind, help, value) in membership {
            out.push(family((name, kind, help), [(Vec::new(), value)]));
        }
        out
    }
}

/// A metric: its name, Prometheus type, help text, and how to read it from a snapshot.
type Metric<T> = (&'static str, &'static str, &'static str, fn(&T) -> u64);

/// Nanoseconds in a second: a duration histogram's `per_unit`.
const NANOS: f64 = 1e9;

/// A histogram family from bucket counts, each bound and the sum divided by `per_unit` (so a
/// bound of 25,000 ns reads `0.000025`, as exactly as that decimal can be).
fn histogram<'a>(
    (name, help): (&str, &str),
    samples: impl IntoIterator<Item = (Vec<(&'a str, &'a str)>, BucketCounts)>,
    per_unit: f64,
) -> MetricFamily {
    let metrics = samples
        .into_iter()
        .map(|(labels, counts)| {
            let mut h = proto::Histogram::default();
            h.set_sample_count(counts.count);
            h.set_sample_sum(counts.sum as f64 / per_unit);
            h.set_bucket(
                counts
                    .bounds
                    .iter()
                    .zip(&counts.at_or_under)
                    .map(|(&bound, &n)| {
                        let mut bucket = proto::Bucket::default();
                        bucket.set_upper_bound(bound as f64 / per_unit);
                        bucket.set_cumulative_count(n);
                        bucket
                    })
                    .collect(),
            );
            let mut metric = proto::Metric::default();
            metric.set_label(label_pairs(labels));
            metric.set_histogram(h);
            metric
        })
        .collect();
    let mut family = MetricFamily::default();
    family.set_name(format!("alo_{name}"));
    family.set_help(help.to_string());
    family.set_field_type(MetricType::HISTOGRAM);
    family.set_metric(metrics);
    family
}

/// Labels as the registry's protocol has them.
fn label_pairs(labels: Vec<(&str, &str)>) -> Vec<LabelPair> {
    labels
        .into_iter()
        .map(|(name, value)| {
            let mut pair = LabelPair::default();
            pair.set_name(name.to_string());
            pair.set_value(value.to_string());
            pair
        })
        .collect()
}

/// One family: its name, help and type, and a sample per label set.
fn family<'a>(
    (name, kind, help): (&str, &str, &str),
    samples: impl IntoIterator<Item = (Vec<(&'a str, &'a str)>, u64)>,
) -> MetricFamily {
    let counter = kind == "counter";
    let metrics = samples
        .into_iter()
        .map(|(labels, value)| {
            let mut metric = proto::Metric::default();
            metric.set_label(label_pairs(labels));
            if counter {
                let mut c = proto::Counter::default();
                c.set_value(value as f64);
                metric.set_counter(c);
            } else {
                let mut g = proto::Gauge::default();
                g.set_value(value as f64);
                metric.set_gauge(g);
            }
            metric
        })
        .collect();
    let mut family = MetricFamily::default();
    family.set_name(format!("alo_{name}"));
    family.set_help(help.to_string());
    family.set_field_type(if counter {
        MetricType::COUNTER
    } else {
        MetricType::GAUGE
    });
    family.set_metric(metrics);
    family
}
