"""`magent2 operator`: run the Kopf operator (watched namespaces, liveness, metrics, peering)."""

from __future__ import annotations

import asyncio

import kopf
from prometheus_client import start_http_server

from magent2.settings import load
from magent2.startup import StartupError, exits_2_on_startup_errors
from magent2_operator.settings import OperatorSettings


def require_credentials() -> None:
    """Fail at once, in one line, when there is no cluster to talk to (kopf would retry forever)."""
    from kubernetes import config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except (config.ConfigException, OSError) as exc:
            raise StartupError(
                "no Kubernetes credentials: run in a pod with a service account, or set KUBECONFIG "
                f"(or ~/.kube/config) ({exc})"
            ) from None


@exits_2_on_startup_errors("magent2 operator")
def main() -> None:
    settings = load(OperatorSettings)
    require_credentials()
    import magent2_operator.handlers
    import magent2_operator.queue  # noqa: F401

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
