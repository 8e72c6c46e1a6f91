"""`magent2 operator`: run the Kopf operator (watched namespaces, liveness, metrics, peering)."""

from __future__ import annotations

import asyncio
import logging

import kopf
from prometheus_client import start_http_server

from magent2.settings import load
from magent2_operator.settings import OperatorSettings


def main() -> None:
    settings = load(OperatorSettings)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import magent2_operator.handlers  # noqa: F401 - registers the handlers with Kopf

    start_http_server(settings.metrics_port)
    asyncio.run(
        kopf.operator(
            namespaces=settings.namespaces,
            clusterwide=not settings.namespaces,
            liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz",
            peering_name=settings.peering,
            standalone=settings.peering is None,
        )
    )
