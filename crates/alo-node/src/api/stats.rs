//! What the node says about itself in `/stats` (JSON).

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
}
