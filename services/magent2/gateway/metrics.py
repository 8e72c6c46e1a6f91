"""Prometheus metrics of one gateway app (own registry, so several apps can share a process)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass
class GatewayMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "magent2_gateway_requests_total", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.published = Counter("magent2_gateway_messages_published_total", "Messages accepted", registry=r)
        self.publish_errors = Counter(
            "magent2_gateway_publish_errors_total", "Messages not published (bus unavailable)", registry=r
        )
        self.open_streams = Gauge("magent2_gateway_open_streams", "SSE streams open now", registry=r)
        self.events_sent = Counter("magent2_gateway_events_sent_total", "Events sent over SSE", registry=r)
        self.event_lag = Histogram(
            "magent2_gateway_event_lag_seconds",
            "From an event's creation to its delivery to an SSE client",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )


class RequestCounter:
    """Pure ASGI middleware (no body buffering, so SSE streams pass straight through)."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(scope["method"], path, str(status)).inc()
