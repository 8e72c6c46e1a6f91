"""Kopf handlers: Agent -> children (server-side apply), status, events; drift repair by timer."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import kopf
from kubernetes import client, config
from kubernetes.dynamic.exceptions import ResourceNotFoundError
from prometheus_client import Counter, Histogram
from pydantic import ValidationError

from magent2.bus import Keys
from magent2.contracts import AgentSpec
from magent2_operator import GROUP, PLURAL, VERSION, builders
from magent2_operator.apply import Applier
from magent2_operator.conditions import condition, merge, same
from magent2_operator.preflight import SpecProblem, check
from magent2_operator.scaling import scaling_children, scaling_names
from magent2_operator.settings import OperatorSettings

log = logging.getLogger("magent2.operator")
SETTINGS = OperatorSettings()

RECONCILES = Counter("magent2_operator_reconciles_total", "Agent reconciliations", ["result"])
DURATION = Histogram("magent2_operator_reconcile_seconds", "Time to reconcile one Agent")


class State:
    api: client.ApiClient | None = None
    applier: Applier | None = None


def api() -> client.ApiClient:
    if State.api is None:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        State.api = client.ApiClient()
        State.applier = Applier(State.api)
    return State.api


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Progress and diff-base in annotations only (the CRD's status schema is strict); events only
    # for warnings and errors, so a healthy reconcile writes nothing.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 270
    api()


def desired_status(
    spec: AgentSpec,
    name: str,
    generation: int,
    deployment: dict[str, Any] | None,
    autoscaling: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Conditions and replica counts from the live Deployment, plus the Autoscaling condition
    when spec.autoscaling is set."""
    status = (deployment or {}).get("status") or {}
    if spec.autoscaling is not None:  # KEDA decides how many
        wanted = int(((deployment or {}).get("spec") or {}).get("replicas") or 0)
    else:
        wanted = 0 if spec.paused else spec.replicas
    ready = int(status.get("ready_replicas") or status.get("readyReplicas") or 0)
    current = int(status.get("replicas") or 0)
    rolled_out = ready >= wanted and current == wanted
    conditions = [
        condition(
            "Ready",
            rolled_out,
            "Available" if rolled_out else "Waiting",
            f"{ready}/{wanted} workers ready" + (" (paused)" if spec.paused else ""),
        ),
        condition(
            "Progressing",
            not rolled_out,
            "RollingOut" if not rolled_out else "Complete",
            "waiting for workers" if not rolled_out else "all workers are up to date",
        ),
        condition("Degraded", False, "Reconciled", "children match the spec"),
    ]
    if autoscaling is not None:
        conditions.append(autoscaling)
    return {
        "observedGeneration": generation,
        "conditions": conditions,
        "replicas": current,
        "readyReplicas": ready,
        "selector": ",".join(f"{k}={v}" for k, v in builders.selector(name).items()),
        "inbox": Keys(SETTINGS.bus_prefix).inbox(spec.agent_name or name),
    }


def apply_scaling(
    name: str, namespace: str, uid: str, agent: AgentSpec, *, was_autoscaled: bool
) -> dict[str, Any] | None:
    """Apply (or, once spec.autoscaling is gone, delete) the KEDA objects; the Autoscaling
    condition. Agents that never autoscaled cost no lookup of KEDA's kinds (a miss refreshes the
    whole API discovery)."""
    assert State.applier is not None
    if agent.autoscaling is None:
        if was_autoscaled:
            for stale in scaling_names(name, namespace):
                State.applier.delete(stale)
        return None
    if not SETTINGS.keda_address:
        return condition(
            "Autoscaling",
            False,
            "NoRedisAddress",
            "set KEDA_REDIS_ADDRESS (host:port) on the operator so KEDA can read the inbox",
        )
    try:
        for child in scaling_children(name, namespace, uid, agent, SETTINGS):
            State.applier.apply(child)
    except ResourceNotFoundError:
        return condition(
            "Autoscaling",
            False,
            "KEDANotInstalled",
            "spec.autoscaling needs KEDA (keda.sh/v1alpha1 ScaledObject); install KEDA, or use spec.replicas",
        )
    scaling = agent.autoscaling
    return condition(
        "Autoscaling",
        True,
        "KEDA",
        f"{scaling.min_replicas}-{scaling.max_replicas} replicas, "
        f"{scaling.target_backlog_per_replica} backlog per replica",
    )


def _write_status(patch: kopf.Patch, old: dict[str, Any], new: dict[str, Any]) -> None:
    """Patch only what changed, so an unchanged Agent is not written to."""
    new = {**new, "conditions": merge(old.get("conditions", []), new["conditions"])}
    for key, value in new.items():
        if key == "conditions":
            if not same(old.get("conditions"), value):
                patch.status["conditions"] = value
        elif old.get(key) != value:
            patch.status[key] = value


def reconcile(
    body: kopf.Body,
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    patch: kopf.Patch,
    retry: int,
    **_: Any,
) -> None:
    name, namespace, uid = meta["name"], meta["namespace"], meta["uid"]
    began = time.perf_counter()
    old = dict(status)
    try:
        agent = AgentSpec.model_validate(dict(spec))
        check(api(), name, namespace, uid, agent, namespaces=SETTINGS.namespaces)
        assert State.applier is not None
        live = None
        for child in builders.children(name, namespace, uid, agent, SETTINGS):
            live = State.applier.apply(child)  # the Deployment comes last
        was_autoscaled = any(c.get("type") == "Autoscaling" for c in old.get("conditions", []))
        scaling = apply_scaling(name, namespace, uid, agent, was_autoscaled=was_autoscaled)
        _write_status(patch, old, desired_status(agent, name, meta.get("generation", 0), live, scaling))
        RECONCILES.labels("ok").inc()
    except (SpecProblem, ValidationError) as exc:
        reason = exc.reason if isinstance(exc, SpecProblem) else "InvalidSpec"
        message = exc.message if isinstance(exc, SpecProblem) else str(exc)
        degraded = [
            condition("Ready", False, reason, message),
            condition("Progressing", False, reason, "waiting for the problem to be fixed"),
            condition("Degraded", True, reason, message),
        ]
        _write_status(patch, old, {"observedGeneration": meta.get("generation", 0), "conditions": degraded})
        RECONCILES.labels("degraded").inc()
        kopf.warn(body, reason=reason, message=message)
        # Retried with back-off until fixed (a new Secret does not touch the Agent).
        raise kopf.TemporaryError(message, delay=min(5 * 2**retry, 300)) from None
    finally:
        DURATION.observe(time.perf_counter() - began)


for register in (kopf.on.create, kopf.on.update, kopf.on.resume):
    register(GROUP, VERSION, PLURAL, id="reconcile")(reconcile)


@kopf.timer(
    GROUP, VERSION, PLURAL, interval=SETTINGS.resync_seconds, idle=SETTINGS.resync_seconds / 2, id="resync"
)
def resync(
    body: kopf.Body, spec: kopf.Spec, meta: kopf.Meta, status: kopf.Status, patch: kopf.Patch, **kwargs: Any
) -> None:
    """Drift repair and status refresh: restore a hand-edited or deleted child; follow rollouts."""
    with contextlib.suppress(kopf.TemporaryError):  # already reported on the Agent
        reconcile(body=body, spec=spec, meta=meta, status=status, patch=patch, retry=0)
