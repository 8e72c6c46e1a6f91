"""Prometheus metrics of one worker (own registry), served on its health port at /metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge


@dataclass
class WorkerMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.completions = Counter(
            "magent2_worker_completions_total",
            "Completions by verdict: ok, duplicate (ran before), lost (another worker took it over)",
            ["verdict"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "magent2_worker_dead_lettered_total",
            "Messages this worker moved to the dead-letter stream",
            registry=r,
        )
        self.dead_letters = Gauge(
            "magent2_worker_dead_letters",
            "Entries in the agent's dead-letter stream (dlq:{agent})",
            registry=r,
        )
