"""Pure builders for `spec.autoscaling`: a KEDA ScaledObject that scales the worker Deployment on
the inbox's lag (KEDA's redis-streams scaler), and the TriggerAuthentication for Redis's password."""

from __future__ import annotations

from typing import Any

from magent2.bus import Keys
from magent2.bus.api import GROUP as CONSUMER_GROUP
from magent2.contracts import AgentSpec
from magent2_operator.builders import _metadata, agent_name, child_name
from magent2_operator.settings import OperatorSettings

KEDA = "keda.sh/v1alpha1"


def scaling_children(
    name: str, namespace: str, uid: str, spec: AgentSpec, settings: OperatorSettings
) -> list[dict[str, Any]]:
    """The ScaledObject (and its TriggerAuthentication when Redis has a password), or nothing."""
    scaling = spec.autoscaling
    if scaling is None:
        return []
    trigger: dict[str, Any] = {
        "type": "redis-streams",
        "metadata": {
            "address": settings.keda_address or "",
            "stream": Keys(settings.bus_prefix).inbox(agent_name(name, spec)),
            "consumerGroup": CONSUMER_GROUP,
            "lagCount": str(scaling.target_backlog_per_replica),
            "activationLagCount": "0",  # any backlog wakes a scaled-to-zero agent
        },
    }
    objects: list[dict[str, Any]] = []
    if settings.keda_redis_password_secret:
        secret, key = settings.keda_redis_password_secret.split("/")
        objects.append(
            {
                "apiVersion": KEDA,
                "kind": "TriggerAuthentication",
                "metadata": _metadata(name, namespace, uid, spec, "redis"),
                "spec": {"secretTargetRef": [{"parameter": "password", "name": secret, "key": key}]},
            }
        )
        trigger["authenticationRef"] = {"name": f"{name}-redis"}
    scaled: dict[str, Any] = {
        "apiVersion": KEDA,
        "kind": "ScaledObject",
        "metadata": _metadata(name, namespace, uid, spec, "scaler"),
        "spec": {
            "scaleTargetRef": {"name": child_name(name)},
            "minReplicaCount": scaling.min_replicas,
            "maxReplicaCount": scaling.max_replicas,
            "pollingInterval": 5,
            "cooldownPeriod": 60,
            "triggers": [trigger],
        },
    }
    if spec.paused:
        scaled["metadata"]["annotations"] = {"autoscaling.keda.sh/paused-replicas": "0"}
    return [*objects, scaled]


def scaling_names(name: str, namespace: str) -> list[dict[str, Any]]:
    """What `scaling_children` may have created, to delete once spec.autoscaling is removed."""
    return [
        {"apiVersion": KEDA, "kind": kind, "metadata": {"name": f"{name}-{suffix}", "namespace": namespace}}
        for kind, suffix in (("ScaledObject", "scaler"), ("TriggerAuthentication", "redis"))
    ]
