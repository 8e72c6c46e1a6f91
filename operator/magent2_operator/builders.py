"""Pure functions: an Agent in, its child manifests out (ConfigMap, ServiceAccount, Deployment)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from magent2.contracts import AgentSpec
from magent2_operator import GROUP, KIND, VERSION
from magent2_operator.settings import OperatorSettings

MANAGED_BY = "magent2-operator"
HEALTH_PORT = 8081
WORKSPACE = "/workspace"


def agent_name(name: str, spec: AgentSpec) -> str:
    return spec.agent_name or name


def child_name(name: str) -> str:
    return f"{name}-worker"


def selector(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/instance": name, "app.kubernetes.io/component": "worker"}


def labels(name: str, spec: AgentSpec) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "magent2-worker",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/part-of": "magent2",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "magent2.dev/agent": agent_name(name, spec),
    }


def owner_reference(name: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(name: str, namespace: str, uid: str, spec: AgentSpec, suffix: str) -> dict[str, Any]:
    return {
        "name": f"{name}-{suffix}",
        "namespace": namespace,
        "labels": labels(name, spec),
        "ownerReferences": [owner_reference(name, uid)],
    }


def worker_config(name: str, spec: AgentSpec) -> dict[str, str]:
    """Non-secret worker settings, as the env names of DESIGN.md."""
    terminal = spec.terminal
    config = {
        "AGENT_NAME": agent_name(name, spec),
        "AGENT_MODEL": spec.model,
        "AGENT_MAX_TURNS": str(spec.model_settings.max_turns),
        "AGENT_CONCURRENCY": str(spec.concurrency),
        "AGENT_ON_NEW_MESSAGE": spec.on_new_message,
        "AGENT_APPROVAL_TOOLS": ",".join(spec.approval.tools),
        "AGENT_APPROVAL_TIMEOUT_SECONDS": str(spec.approval.timeout_seconds),
        "AGENT_APPROVAL_ON_TIMEOUT": spec.approval.on_timeout,
        "AGENT_REQUIRE_EXPLICIT_TOOLS": "1",
        "AGENT_TOOLS": ",".join(spec.tools) if spec.tools is not None else "",
        "AGENT_MCP_SERVERS": json.dumps(
            [s.model_dump(by_alias=True, exclude_none=True) for s in spec.mcp_servers]
        ),
        "TERMINAL_TIMEOUT_SECONDS": str(terminal.timeout_seconds),
        "TERMINAL_OUTPUT_CAP_BYTES": str(terminal.output_cap_bytes),
        "TERMINAL_FUNCTION_OUTPUT_MAX_CHARS": str(terminal.function_output_max_chars),
        "TERMINAL_REDACT_SUBSTRINGS": json.dumps(terminal.redact_substrings),
        "TERMINAL_REDACT_PATTERNS": json.dumps(terminal.redact_patterns),
        "TERMINAL_WORKDIR": WORKSPACE,
    }
    if spec.tools is None:  # the spec did not restrict: every detected tool
        del config["AGENT_TOOLS"], config["AGENT_REQUIRE_EXPLICIT_TOOLS"]
    if terminal.allowed_commands is not None:
        config["TERMINAL_ALLOWED_COMMANDS"] = ",".join(terminal.allowed_commands)
    if spec.model_settings.temperature is not None:
        config["AGENT_TEMPERATURE"] = str(spec.model_settings.temperature)
    if spec.openai.base_url:
        config["OPENAI_BASE_URL"] = spec.openai.base_url
    if spec.openai.api:
        config["OPENAI_API"] = spec.openai.api
    if spec.provider is not None and spec.provider.base_url:
        config["LITELLM_BASE_URL"] = spec.provider.base_url
    if spec.instructions_from is None:
        config["AGENT_INSTRUCTIONS"] = spec.instructions or "You are a helpful assistant."
    return config


def configmap(name: str, namespace: str, uid: str, spec: AgentSpec) -> dict[str, Any]:
    """The worker's policy and inline instructions, keyed by env name (the pod takes it via envFrom)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(name, namespace, uid, spec, "config"),
        "data": worker_config(name, spec),
    }


def service_account(name: str, namespace: str, uid: str, spec: AgentSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(name, namespace, uid, spec, "worker"),
        "automountServiceAccountToken": False,
    }


def checksum(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _env(spec: AgentSpec, settings: OperatorSettings) -> list[dict[str, Any]]:
    """What the ConfigMap cannot hold: Secret references, operator-wide settings, the user's env."""
    env: list[dict[str, Any]] = []
    if settings.redis_url_secret:
        secret, key = settings.redis_url_secret.split("/")
        env.append({"name": "REDIS_URL", "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
    elif settings.redis_url:
        env.append({"name": "REDIS_URL", "value": settings.redis_url})
    if settings.bus_prefix:
        env.append({"name": "BUS_PREFIX", "value": settings.bus_prefix})
    env.append({"name": "WORKER_HEALTH_PORT", "value": str(HEALTH_PORT)})
    keys = [("OPENAI_API_KEY", spec.openai.api_key_secret_ref)]
    if spec.provider is not None:
        keys.append(("LITELLM_API_KEY", spec.provider.api_key_secret_ref))
    for variable, ref in keys:
        if ref is not None:
            env.append(
                {"name": variable, "valueFrom": {"secretKeyRef": ref.model_dump(exclude_defaults=True)}}
            )
    source = spec.instructions_from
    if source is not None:
        if source.config_map_key_ref is not None:
            value_from = {"configMapKeyRef": source.config_map_key_ref.model_dump()}
        else:
            assert source.secret_key_ref is not None
            value_from = {"secretKeyRef": source.secret_key_ref.model_dump()}
        env.append({"name": "AGENT_INSTRUCTIONS", "valueFrom": value_from})
    env += [var.model_dump(by_alias=True, exclude_none=True) for var in spec.env]
    return env


def deployment(
    name: str, namespace: str, uid: str, spec: AgentSpec, settings: OperatorSettings, *, config_checksum: str
) -> dict[str, Any]:
    probe = {"httpGet": {"path": "/livez", "port": "health"}, "periodSeconds": 10, "failureThreshold": 3}
    container: dict[str, Any] = {
        "name": "worker",
        "image": spec.image or settings.worker_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["magent2", "worker"],
        "envFrom": [{"configMapRef": {"name": f"{name}-config"}}],
        "env": _env(spec, settings),
        "ports": [{"name": "health", "containerPort": HEALTH_PORT}],
        "livenessProbe": probe,
        "readinessProbe": {**probe, "httpGet": {"path": "/readyz", "port": "health"}, "periodSeconds": 5},
        "resources": spec.resources or settings.default_resources,
        "securityContext": {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "workspace", "mountPath": WORKSPACE},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    pod_spec: dict[str, Any] = {
        "serviceAccountName": spec.service_account_name or child_name(name),
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationGracePeriodSeconds": 30,
        "containers": [container],
        "volumes": [
            {"name": "workspace", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    if spec.node_selector:
        pod_spec["nodeSelector"] = spec.node_selector
    if spec.tolerations:
        pod_spec["tolerations"] = spec.tolerations
    workload: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(name, namespace, uid, spec, "worker"),
        "spec": {
            "selector": {"matchLabels": selector(name)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {
                    "labels": labels(name, spec),
                    "annotations": {"magent2.dev/config-checksum": config_checksum},
                },
                "spec": pod_spec,
            },
        },
    }
    if spec.autoscaling is None:  # else KEDA owns the replica count (the field is left out of the apply)
        workload["spec"]["replicas"] = 0 if spec.paused else spec.replicas
    return workload


def children(
    name: str, namespace: str, uid: str, spec: AgentSpec, settings: OperatorSettings
) -> list[dict[str, Any]]:
    """Every child of one Agent, in the order they are applied."""
    config = configmap(name, namespace, uid, spec)
    objects = [config]
    if spec.service_account_name is None:
        objects.append(service_account(name, namespace, uid, spec))
    objects.append(deployment(name, namespace, uid, spec, settings, config_checksum=checksum(config["data"])))
    return objects
