"""Self metrics of the cluster layer, named as Grafana Agent / dskit name them where they exist."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RING_MEMBERS = Gauge("agent_dskit_ring_members", "Number of members in the ring, by state.", ["state"])
RESHARD_DURATION = Histogram("agent_metrics_scraping_service_reshard_duration",
                             "How long it took for resharding to run.", ["success"],
                             buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
RESHARDS = Counter("agent_cluster_reshards_total", "Reshards run by this node, by what asked for them.",
                   ["trigger"])
CONFIGS_OWNED = Gauge("agent_cluster_configs_owned", "Configs the ring assigns to this node.")
CONFIGS_INVALID = Gauge("agent_cluster_configs_invalid",
                        "Configs this node owns whose stored value cannot be decoded or parsed (not (re)started; "
                        "the log names each).")
CONFIGS_PENDING = Gauge("agent_cluster_configs_pending_handoff",
                        "Configs this node owns but another node still holds the claim of.")
HANDOFF_WAIT = Histogram("agent_cluster_handoff_wait_seconds",
                         "Time from when this node first wanted a config held by another node until it claimed it.",
                         buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60))
TAKEOVERS = Counter("agent_cluster_takeover_starts_total",
                    "Configs started by the fast takeover (a claim or a member gone), between full reshards.")
