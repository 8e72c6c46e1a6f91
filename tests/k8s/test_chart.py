"""The Helm chart: lint, Dockerfiles, rendering validated by the real API server, schema errors, and an
install whose operator — running with exactly the chart's RBAC — reconciles an Agent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.controlplane import ROOT, TOOLS_BIN, ControlPlane

CHART = ROOT / "charts" / "magent2"
ALL_ON = [
    "--set",
    "gateway.ingress.enabled=true",
    "--set",
    "gateway.autoscaling.enabled=true",
    "--set",
    "gateway.auth.existingSecret=gateway-tokens",
    "--set",
    "busPrefix=t1:",
    "--set",
    "agents[0].name=dev-agent",
    "--set",
    "agents[0].spec.model=gpt-4o-mini",
    "--set",
    "agents[0].spec.tools={todo}",
    "--set",
    "redis.appendfsync=always",
    "--set",
    "gateway.durableAck=true",
]


def helm(
    *args: str, check: bool = True, kube: ControlPlane | None = None
) -> subprocess.CompletedProcess[str]:
    env = kube.env() if kube else {**os.environ}
    result = subprocess.run(
        [str(TOOLS_BIN / "helm"), *args], capture_output=True, text=True, env=env, timeout=120
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)}: {result.stderr}")
    return result


def test_helm_lint_strict() -> None:
    assert "0 chart(s) failed" in helm("lint", "--strict", str(CHART)).stdout


def test_dockerfiles_pass_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "Dockerfile.worker", "Dockerfile.gateway"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_chart_ships_the_same_crd() -> None:
    assert (CHART / "crds" / "agents.magent2.dev.yaml").read_text() == (
        ROOT / "crds" / "agents.magent2.dev.yaml"
    ).read_text()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["--set", "redis.enabled=nope"], "at '/redis/enabled': got string, want boolean"),
        (["--set", "operator.replicas=2"], "at '/operator/replicas': maximum: got 2, want 1"),
        (["--set", "gateway.service.type=Magic"], "/gateway/service/type"),
        (["--set", "unknownKey=1"], "additional properties 'unknownKey' not allowed"),
        (["--set", "redis.enabled=false"], "redis.enabled=false needs redis.externalUrl"),
        (["--set", "redis.appendfsync=sometimes"], "/redis/appendfsync"),
    ],
)
def test_values_that_break_the_schema_fail_with_its_message(values: list[str], message: str) -> None:
    result = helm("template", "t", str(CHART), *values, check=False)
    assert result.returncode != 0 and message in result.stderr


@pytest.mark.parametrize(
    "values",
    [[], ALL_ON, ["--set", "operator.watchNamespaces={chart-a}"]],
    ids=["defaults", "everything-on", "namespaced"],
)
def test_rendered_manifests_pass_server_side_validation(kube: ControlPlane, values: list[str]) -> None:
    kube.kubectl("apply", "--server-side", "-f", str(ROOT / "crds" / "agents.magent2.dev.yaml"))
    kube.create_namespace("chart-a")
    rendered = helm("template", "t", str(CHART), "-n", "chart-a", *values).stdout
    objects = [doc for doc in yaml.safe_load_all(rendered) if doc]
    result = kube.kubectl("apply", "--dry-run=server", "-n", "chart-a", "-f", "-", input=rendered)
    assert result.stdout.count("(server dry run)") == len(objects)
    for obj in objects:  # non-root everywhere
        pod = obj.get("spec", {}).get("template", {}).get("spec") or (
            obj["spec"] if obj["kind"] == "Pod" else None
        )
        if pod:
            assert pod["securityContext"]["runAsNonRoot"] is True, obj["metadata"]["name"]
            for container in pod["containers"]:
                assert container["securityContext"]["allowPrivilegeEscalation"] is False
                assert container["resources"]["limits"], container["name"]
            labels = obj["metadata"]["labels"]
            assert (
                labels["app.kubernetes.io/instance"] == "t"
                and labels["app.kubernetes.io/part-of"] == "magent2"
            )


def test_install_and_the_operator_works_with_exactly_the_charts_rbac(
    kube: ControlPlane, tmp_path: Path
) -> None:
    ns = f"rel-{uuid.uuid4().hex[:6]}"
    kube.create_namespace(ns)
    kube.kubectl("create", "secret", "generic", "openai", "-n", ns, "--from-literal=api-key=sk-test")
    helm(
        "install",
        "rel",
        str(CHART),
        "-n",
        ns,
        "--set",
        f"operator.watchNamespaces={{{ns}}}",
        "--set",
        "agents[0].name=dev-agent",
        "--set",
        "agents[0].spec.agentName=DevAgent",
        "--set",
        "agents[0].spec.openai.apiKeySecretRef.name=openai",
        "--set",
        "agents[0].spec.openai.apiKeySecretRef.key=api-key",
        kube=kube,
    )
    assert "rel" in helm("list", "-n", ns, kube=kube).stdout
    operator = yaml.safe_load(
        kube.kubectl("get", "deployment", "rel-magent2-operator", "-n", ns, "-o", "yaml").stdout
    )
    env = {e["name"]: e.get("value") for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}

    # The operator process here, authenticated as the chart's ServiceAccount (a real token).
    token = kube.kubectl("create", "token", "rel-magent2-operator", "-n", ns, "--duration=1h").stdout.strip()
    config = yaml.safe_load(kube.kubeconfig.read_text())
    config["users"] = [{"name": "operator", "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = "operator"
    kubeconfig = tmp_path / "operator.kubeconfig"
    kubeconfig.write_text(json.dumps(config))

    def can_i(*args: str) -> str:
        return kube.kubectl("auth", "can-i", *args, f"--token={token}", check=False).stdout.strip()

    assert can_i("patch", "agents.magent2.dev/status", "-n", ns) == "yes"
    assert can_i("create", "deployments", "-n", ns) == "yes"
    assert can_i("get", "secrets", "-n", ns) == "yes"
    assert can_i("list", "secrets", "-n", ns) == "no"  # get by name only
    assert can_i("delete", "deployments", "-n", ns) == "no"  # garbage collection deletes, not the operator
    assert can_i("create", "deployments", "-n", "kube-system") == "no"  # only the watched namespace
    assert can_i("get", "secrets", "-n", "kube-system") == "no"
    assert can_i("create", "clusterroles") == "no"
    assert can_i("delete", "nodes") == "no"

    chart_env = {k: v for k, v in env.items() if v is not None}
    overrides = {**chart_env, "KUBECONFIG": str(kubeconfig), "OPERATOR_RESYNC_SECONDS": "2"}
    process = kube.start_operator(output=subprocess.PIPE, **overrides)
    try:
        deadline = time.monotonic() + 60
        status: dict[str, Any] = {}
        while time.monotonic() < deadline and not status.get("inbox"):
            time.sleep(0.5)
            got = kube.kubectl("get", "agent", "dev-agent", "-n", ns, "-o", "json", check=False)
            status = json.loads(got.stdout).get("status", {}) if got.returncode == 0 else {}
    finally:
        process.terminate()
        output = process.communicate(timeout=20)[0].decode()
    assert status.get("inbox") == "chat:DevAgent", output[-4000:]
    assert "Forbidden" not in output and "403" not in output, output[-3000:]
    worker = yaml.safe_load(
        kube.kubectl("get", "deployment", "dev-agent-worker", "-n", ns, "-o", "yaml").stdout
    )
    [container] = worker["spec"]["template"]["spec"]["containers"]
    assert container["image"] == env["WORKER_IMAGE"]
    redis = next(e for e in container["env"] if e["name"] == "REDIS_URL")
    assert redis["valueFrom"]["secretKeyRef"] == {"name": "rel-magent2-redis-url", "key": "url"}
    helm("uninstall", "rel", "-n", ns, kube=kube)  # frees agentName DevAgent for other tests


def test_durability_values_reach_redis_and_the_gateway() -> None:
    rendered = helm("template", "t", str(CHART), *ALL_ON).stdout
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(rendered) if d}
    [redis] = [d for (kind, _), d in docs.items() if kind == "StatefulSet"]
    assert "--appendfsync always" in redis["spec"]["template"]["spec"]["containers"][0]["command"][-1]
    [gateway] = [d for (kind, name), d in docs.items() if kind == "Deployment" and "gateway" in name]
    env = {e["name"]: e.get("value") for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["GATEWAY_DURABLE_ACK"] == "true"


def test_keda_gets_a_redis_address_that_resolves_from_its_own_namespace() -> None:
    rendered = helm("template", "t", str(CHART), "-n", "apps").stdout
    [operator] = [
        d
        for d in yaml.safe_load_all(rendered)
        if d and d["kind"] == "Deployment" and "operator" in d["metadata"]["name"]
    ]
    env = {e["name"]: e.get("value") for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["KEDA_REDIS_ADDRESS"] == "t-magent2-redis.apps.svc:6379"


def test_monitoring_objects_select_what_serves_metrics_and_the_dashboard_uses_real_metrics() -> None:
    import re

    from prometheus_client import generate_latest

    from magent2.contracts import AgentSpec
    from magent2.gateway.metrics import GatewayMetrics
    from magent2.worker.metrics import WorkerMetrics
    from magent2_operator.builders import labels

    flags = ["--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.dashboard.enabled=true"]
    objects = [o for o in yaml.safe_load_all(helm("template", "t", str(CHART), *flags).stdout) if o]
    by_kind = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    gateway_service = by_kind[("Service", "t-magent2-gateway")]
    monitor = by_kind[("ServiceMonitor", "t-magent2-gateway")]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= gateway_service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == gateway_service["spec"]["ports"][0]["name"]
    workers = by_kind[("PodMonitor", "t-magent2-workers")]
    assert workers["spec"]["selector"]["matchLabels"].items() <= labels("a", AgentSpec()).items()
    assert workers["spec"]["podMetricsEndpoints"][0]["port"] == "health"  # the worker container's port name
    dashboard = json.loads(by_kind[("ConfigMap", "t-magent2-dashboard")]["data"]["magent2.json"])
    exposed = (
        generate_latest(WorkerMetrics().registry).decode()
        + generate_latest(GatewayMetrics().registry).decode()
    )
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for metric in re.findall(r"magent2_[a-z_]+", target["expr"]):
                family = re.sub(r"_(bucket|sum|count)$", "", metric)  # of a histogram
                assert f"# TYPE {family} " in exposed, f"{panel['title']}: {metric} is not a metric we expose"
    assert not [
        o
        for o in yaml.safe_load_all(helm("template", "t", str(CHART)).stdout)
        if o and "Monitor" in o["kind"]
    ]
