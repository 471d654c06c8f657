"""The daemon's Prometheus metrics, on a registry of its own (so several daemons in one
process, as in tests, never share counters). Names follow the Prometheus conventions:
``oibus_<what>_total`` for counters, ``_seconds`` for durations, and a help text each."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry()
        self.operations = Counter(
            "oibus_daemon_operations_total",
            "Scripts the daemon ran, by script and outcome (ok, noop, error).",
            ["script", "outcome"],
            registry=r,
        )
        self.entries = Counter(
            "oibus_bus_entries_total",
            "Bus entries the daemon handled and acknowledged, by event type.",
            ["event_type"],
            registry=r,
        )
        self.reclaimed = Counter(
            "oibus_bus_entries_reclaimed_total",
            "Pending bus entries taken over from daemons whose heartbeat expired.",
            registry=r,
        )
        self.lease_expiries = Counter(
            "oibus_lease_expiries_total",
            "Leases the sweep recorded as expired (lease_expired events it wrote).",
            registry=r,
        )
        self.lease_expiry_delay = Histogram(
            "oibus_lease_expiry_delay_seconds",
            "Time from a lease's expiry to the sweep recording it.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "oibus_retries_total",
            "Retries by stage: dispatched (sent to the agent at their due time), "
            "fallback (handed to the fallback agent), exhausted (no fallback).",
            ["stage"],
            registry=r,
        )
        self.retry_delay = Histogram(
            "oibus_retry_dispatch_delay_seconds",
            "Time from a retry's due time to its dispatch.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.portfolio_syncs = Counter(
            "oibus_portfolio_syncs_total",
            "Portfolio member moves replayed from the bus, and membership links repaired.",
            ["kind"],
            registry=r,
        )
        self.unblock_latency = Histogram(
            "oibus_unblock_latency_seconds",
            "Time from a dependency's completion to the dependent becoming active, as seen "
            "on the bus (both are written by one script, so this is the bus's own delay).",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.trimmed = Counter(
            "oibus_bus_entries_trimmed_total",
            "Bus entries removed by retention after every consumer group acknowledged them.",
            registry=r,
        )
        self.lag = Gauge(
            "oibus_consumer_group_lag",
            "Bus entries not yet delivered to a consumer group, by group (summed over partitions).",
            ["group"],
            registry=r,
        )
        self.pending = Gauge(
            "oibus_consumer_group_pending",
            "Bus entries delivered to a consumer group and not yet acknowledged, by group.",
            ["group"],
            registry=r,
        )
        self.dead_letters = Gauge(
            "oibus_dead_letters",
            "Entries in the dead-letter store.",
            registry=r,
        )
        self.webhook_attempts = Counter(
            "oibus_webhook_attempts_total",
            "Webhook delivery attempts by outcome (delivered, retry, dead_letter).",
            ["outcome"],
            registry=r,
        )
        self.webhook_latency = Histogram(
            "oibus_webhook_request_seconds",
            "Duration of webhook POSTs, whatever their outcome.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.loop_heartbeats = Counter(
            "oibus_daemon_loop_iterations_total",
            "Iterations of each daemon loop (a loop that stops counting is stuck).",
            ["loop"],
            registry=r,
        )
        self.loop_errors = Counter(
            "oibus_daemon_loop_errors_total",
            "Errors a daemon loop caught and survived, by loop.",
            ["loop"],
            registry=r,
        )

    def render(self) -> bytes:
        """The text exposition format, for GET /metrics."""
        return generate_latest(self.registry)
