"""Prometheus metrics of one worker (own registry), served on its health port at /metrics: runs and
their timings, tokens, tool calls, and the agent's queue (backlog, in flight, approvals, dead letters)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from magent2.contracts import StreamEvent
from magent2.observer.queries import QueueFacts

_SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


@dataclass
class WorkerMetrics:
    model: str = "unknown"  # the label of the tokens this worker's runs use
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
        self.runs = Counter(
            "magent2_worker_runs_total",
            "Runs by outcome: output, error, cancelled, paused (a tool call waits for approval)",
            ["outcome"],
            registry=r,
        )
        self.run_seconds = Histogram(
            "magent2_worker_run_duration_seconds",
            "Run duration by outcome",
            ["outcome"],
            buckets=_SECONDS,
            registry=r,
        )
        self.first_token_seconds = Histogram(
            "magent2_worker_time_to_first_token_seconds",
            "From a run's start to its first streamed token",
            buckets=_SECONDS,
            registry=r,
        )
        self.queue_wait_seconds = Histogram(
            "magent2_worker_queue_wait_seconds",
            "From a message's acceptance into the inbox to the start of its run",
            buckets=_SECONDS,
            registry=r,
        )
        self.tokens = Counter(
            "magent2_worker_tokens_total",
            "Model tokens reported by runs, by model and kind (input, output)",
            ["model", "kind"],
            registry=r,
        )
        self.tool_calls = Counter(
            "magent2_worker_tool_calls_total",
            "Tool calls by tool and outcome",
            ["tool", "outcome"],
            registry=r,
        )
        self.approvals_pending = Gauge(
            "magent2_worker_approvals_pending", "The agent's conversations waiting for a decision", registry=r
        )
        self.inbox_backlog = Gauge(
            "magent2_worker_inbox_backlog", "Inbox entries not yet delivered to any worker (lag)", registry=r
        )
        self.inbox_in_flight = Gauge(
            "magent2_worker_inbox_in_flight", "Inbox entries delivered and not yet finished", registry=r
        )
        self.inbox_oldest_pending_seconds = Gauge(
            "magent2_worker_inbox_oldest_pending_seconds",
            "Age of the oldest unfinished inbox entry",
            registry=r,
        )

    def run(self, accepted_ms: int) -> RunMeter:
        """A meter for a run starting now, of a message accepted at `accepted_ms` (unix ms)."""
        self.queue_wait_seconds.observe(max(0.0, time.time() - accepted_ms / 1000))
        return RunMeter(self)

    def queue(self, facts: QueueFacts) -> None:
        self.inbox_backlog.set(facts.health.backlog)
        self.inbox_in_flight.set(facts.health.in_flight)
        self.inbox_oldest_pending_seconds.set(facts.health.oldest_pending_s)
        self.approvals_pending.set(facts.awaiting_approval)
        self.dead_letters.set(facts.dead_letters)


@dataclass
class RunMeter:
    """Watches one run's events as they are published."""

    metrics: WorkerMetrics
    started: float = field(default_factory=time.monotonic)
    outcome: str = "unknown"
    first_token: bool = False

    def observe(self, event: StreamEvent) -> None:
        m = self.metrics
        if event.event == "token" and not self.first_token:
            self.first_token = True
            m.first_token_seconds.observe(time.monotonic() - self.started)
        elif event.event == "tool_step" and event.status != "start":
            m.tool_calls.labels(event.name, event.status).inc()
        elif event.event == "output":
            self.outcome = "output"
            for kind in ("input", "output"):
                if count := event.usage.get(f"{kind}_tokens"):
                    m.tokens.labels(m.model, kind).inc(count)
        elif event.event in ("error", "cancelled"):
            self.outcome = event.event

    def finish(self, *, paused: bool = False) -> None:
        outcome = "paused" if paused else self.outcome
        self.metrics.runs.labels(outcome).inc()
        self.metrics.run_seconds.labels(outcome).observe(time.monotonic() - self.started)
