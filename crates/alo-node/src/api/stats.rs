//! What the node says about itself: `/stats` (JSON) and `/metrics` (Prometheus text).

use std::fmt::Write as _;

use alo_group::GroupStats;
use alo_http::PeerStats;

use super::Api;

impl Api {
    pub(super) fn stats(&self) -> serde_json::Value {
        let groups: serde_json::Map<String, serde_json::Value> = self
            .groups
            .all()
            .iter()
            .map(|g| (g.name().to_string(), serde_json::json!(g.stats())))
            .collect();
        serde_json::json!({
            "self_url": self.pool.self_url(),
            "peers": self.pool.members(),
            "peer_health": self.pool.peer_stats(),
            "membership": {
                "source": self.membership.source,
                "ready": self.membership.is_ready(),
                "changes": self.membership.changes(),
                "failures": self.membership.failures(),
            },
            "groups": groups,
        })
    }

    /// The counters in Prometheus text exposition format.
    pub(super) fn metrics(&self) -> String {
        let stats: Vec<(String, GroupStats)> = self
            .groups
            .all()
            .iter()
            .map(|g| (escape(g.name()), g.stats()))
            .collect();
        let mut out = String::new();
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
                .map(|(group, s)| (format!("group=\"{group}\""), value(s)));
            family(&mut out, (name, kind, help), samples);
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
                    .map(|(cache, c)| (format!("group=\"{group}\",cache=\"{cache}\""), value(c)))
            });
            family(&mut out, (name, kind, help), samples);
        }
        let peers = self.pool.peer_stats();
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
                .map(|p| (format!("peer=\"{}\"", escape(&p.url)), value(p)));
            family(&mut out, (name, kind, help), samples);
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
            family(&mut out, (name, kind, help), [(String::new(), value)]);
        }
        out
    }
}

/// A metric: its name, Prometheus type, help text, and how to read it from a snapshot.
type Metric<T> = (&'static str, &'static str, &'static str, fn(&T) -> u64);

/// Writes one metric family: its `HELP` and `TYPE` lines, then a sample per label set.
fn family(
    out: &mut String,
    (name, kind, help): (&str, &str, &str),
    samples: impl IntoIterator<Item = (String, u64)>,
) {
    let _ = writeln!(out, "# HELP alo_{name} {help}");
    let _ = writeln!(out, "# TYPE alo_{name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "alo_{name} {value}");
        } else {
            let _ = writeln!(out, "alo_{name}{{{labels}}} {value}");
        }
    }
}

/// A label value with `\`, `"` and newlines escaped, as the exposition format asks.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
