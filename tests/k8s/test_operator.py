"""The operator against the real control plane: kubectl apply an Agent, watch what it builds."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kubernetes import client

from tests.k8s.conftest import make_pods_ready
from tests.k8s.controlplane import ROOT, ControlPlane
from tests.support import free_port

CRD = ROOT / "crds" / "agents.magent2.dev.yaml"


def eventually(check: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except client.exceptions.ApiException as exc:
            if exc.status != 404:
                raise
            last = None
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


PORTS = {"OPERATOR_HEALTH_PORT": str(free_port()), "OPERATOR_METRICS_PORT": str(free_port())}


def start_operator(kube: ControlPlane) -> subprocess.Popen[bytes]:
    return kube.start_operator(
        **PORTS,
        OPERATOR_RESYNC_SECONDS="1",
        REDIS_URL="redis://redis.magent2:6379/0",
        WORKER_IMAGE="magent2-worker:test",
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Operator:
    """`magent2 operator` as a process of its own, restartable."""

    def __init__(self, kube: ControlPlane) -> None:
        self.kube = kube
        self.process = start_operator(kube)

    def restart(self) -> None:
        stop(self.process)
        self.process = start_operator(self.kube)


@pytest.fixture(scope="module")
def operator(kube: ControlPlane) -> Iterator[Operator]:
    kube.kubectl("apply", "--server-side", "-f", str(CRD))
    kube.kubectl("wait", "--for=condition=Established", "crd/agents.magent2.dev", "--timeout=30s")
    running = Operator(kube)
    yield running
    stop(running.process)


@pytest.fixture
def ns(kube: ControlPlane, operator: Any) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    kube.create_namespace(name)
    return name


def agent(name: str, **spec: Any) -> str:
    return json.dumps(
        {"apiVersion": "magent2.dev/v1alpha1", "kind": "Agent", "metadata": {"name": name}, "spec": spec}
    )


def apply_agent(kube: ControlPlane, ns: str, name: str, **spec: Any) -> None:
    kube.kubectl("apply", "-n", ns, "-f", "-", input=agent(name, **spec))


def get_agent(kube_api: Any, ns: str, name: str) -> dict[str, Any]:
    return dict(
        client.CustomObjectsApi(kube_api).get_namespaced_custom_object(
            "magent2.dev", "v1alpha1", ns, "agents", name
        )
    )


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == kind), {})


def env_of(deployment: Any) -> dict[str, Any]:
    return {e.name: e.value or e.value_from for e in deployment.spec.template.spec.containers[0].env}


def test_agent_becomes_a_worker_deployment(kube: ControlPlane, kube_api: Any, ns: str) -> None:
    kube.kubectl("create", "secret", "generic", "openai", "-n", ns, "--from-literal=api-key=sk-test")
    apply_agent(
        kube,
        ns,
        "dev",
        agentName="OperatorTestAgent",
        model="gpt-4o-mini",
        instructions="Be brief.",
        tools=["todo"],
        openai={"apiKeySecretRef": {"name": "openai", "key": "api-key"}},
    )
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    deployment = eventually(lambda: apps.read_namespaced_deployment("dev-worker", ns), what="the Deployment")
    env = env_of(deployment)
    assert (
        env["OPENAI_API_KEY"].secret_key_ref.name == "openai"
        and env["REDIS_URL"] == "redis://redis.magent2:6379/0"
    )
    config = core.read_namespaced_config_map("dev-config", ns).data
    assert config["AGENT_NAME"] == "OperatorTestAgent" and config["AGENT_TOOLS"] == "todo"
    assert config["AGENT_INSTRUCTIONS"] == "Be brief."
    assert core.read_namespaced_service_account("dev-worker", ns).automount_service_account_token is False
    container = deployment.spec.template.spec.containers[0]
    assert container.image == "magent2-worker:test" and container.command == ["magent2", "worker"]
    assert container.security_context.read_only_root_filesystem is True

    status = eventually(
        lambda: (get_agent(kube_api, ns, "dev").get("status") or {}).get("inbox"), what="status"
    )
    assert status == "chat:OperatorTestAgent"
    obj = get_agent(kube_api, ns, "dev")
    assert obj["status"]["observedGeneration"] == 1 and condition(obj, "Degraded")["status"] == "False"
    assert condition(obj, "Ready")["status"] == "False"  # no pod is ready yet

    eventually(lambda: make_pods_ready(kube_api, "app.kubernetes.io/instance=dev", ns), what="a pod")
    eventually(
        lambda: condition(get_agent(kube_api, ns, "dev"), "Ready").get("status") == "True", what="Ready"
    )
    assert get_agent(kube_api, ns, "dev")["status"]["readyReplicas"] == 1
    printed = kube.kubectl("get", "mag", "-n", ns).stdout
    assert "OperatorTestAgent" in printed and "gpt-4o-mini" in printed and "True" in printed


def test_spec_changes_roll_the_pods(kube: ControlPlane, kube_api: Any, ns: str) -> None:
    apply_agent(kube, ns, "roll", model="gpt-4o-mini")
    apps = client.AppsV1Api(kube_api)
    before = eventually(lambda: apps.read_namespaced_deployment("roll-worker", ns), what="the Deployment")
    checksum = before.spec.template.metadata.annotations["magent2.dev/config-checksum"]
    apply_agent(kube, ns, "roll", model="gpt-4.1")
    after = eventually(
        lambda: (
            (d := apps.read_namespaced_deployment("roll-worker", ns)).spec.template.metadata.annotations[
                "magent2.dev/config-checksum"
            ]
            != checksum
            and d
        ),
        what="a new pod template",
    )
    assert after.metadata.generation > before.metadata.generation
    assert (
        client.CoreV1Api(kube_api).read_namespaced_config_map("roll-config", ns).data["AGENT_MODEL"]
        == "gpt-4.1"
    )
    eventually(
        lambda: get_agent(kube_api, ns, "roll")["status"]["observedGeneration"] == 2,
        what="observedGeneration",
    )


def test_drift_is_repaired(kube: ControlPlane, kube_api: Any, ns: str) -> None:
    apply_agent(kube, ns, "drift")
    apps = client.AppsV1Api(kube_api)
    eventually(lambda: apps.read_namespaced_deployment("drift-worker", ns), what="the Deployment")
    kube.kubectl("scale", "deployment/drift-worker", "-n", ns, "--replicas=5")
    eventually(
        lambda: apps.read_namespaced_deployment("drift-worker", ns).spec.replicas == 1,
        what="replicas restored",
    )
    kube.kubectl("delete", "deployment/drift-worker", "-n", ns)
    eventually(lambda: apps.read_namespaced_deployment("drift-worker", ns), what="the Deployment recreated")
    kube.kubectl("delete", "configmap/drift-config", "-n", ns)
    eventually(
        lambda: client.CoreV1Api(kube_api).read_namespaced_config_map("drift-config", ns),
        what="ConfigMap back",
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"replicas": -1},
            "spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0",
        ),
        ({"agentName": "no spaces"}, "spec.agentName in body should match"),
        ({"model": ""}, "spec.model in body should be at least 1 chars long"),
        (
            {"instructions": "x", "instructionsFrom": {"configMapKeyRef": {"name": "a", "key": "b"}}},
            "set either instructions or instructionsFrom, not both",
        ),
        (
            {"modelSettings": {"temperature": 3}},
            "spec.modelSettings.temperature in body should be less than or equal to 2",
        ),
    ],
)
def test_schema_violations_are_rejected_by_kubectl(
    kube: ControlPlane, ns: str, spec: dict[str, Any], message: str
) -> None:
    result = kube.kubectl("apply", "-n", ns, "-f", "-", input=agent("bad", **spec), check=False)
    assert result.returncode != 0 and message in result.stderr


def test_missing_secret_degrades_then_recovers(kube: ControlPlane, kube_api: Any, ns: str) -> None:
    apply_agent(kube, ns, "keyless", openai={"apiKeySecretRef": {"name": "later", "key": "api-key"}})
    degraded = eventually(
        lambda: (
            condition(get_agent(kube_api, ns, "keyless"), "Degraded").get("status") == "True"
            and get_agent(kube_api, ns, "keyless")
        ),
        what="Degraded",
    )
    assert condition(degraded, "Degraded")["reason"] == "SecretNotFound"
    assert f"Secret {ns}/later does not exist" in condition(degraded, "Degraded")["message"]
    events = client.CoreV1Api(kube_api).list_namespaced_event(ns).items
    assert any(e.reason == "SecretNotFound" and e.type == "Warning" for e in events)
    assert not client.AppsV1Api(kube_api).list_namespaced_deployment(ns).items
    kube.kubectl("create", "secret", "generic", "later", "-n", ns, "--from-literal=api-key=sk-test")
    eventually(
        lambda: condition(get_agent(kube_api, ns, "keyless"), "Degraded").get("status") == "False",
        timeout=60,
        what="recovery once the Secret exists",
    )


def test_unknown_tool_and_agent_name_conflict_are_degraded(
    kube: ControlPlane, kube_api: Any, ns: str
) -> None:
    apply_agent(kube, ns, "tooly", tools=["terminal", "teleport"])
    eventually(
        lambda: condition(get_agent(kube_api, ns, "tooly"), "Degraded").get("reason") == "UnknownTool",
        what="UnknownTool",
    )
    apply_agent(kube, ns, "first", agentName="Shared")
    eventually(
        lambda: condition(get_agent(kube_api, ns, "first"), "Degraded").get("status") == "False", what="first"
    )
    apply_agent(kube, ns, "second", agentName="Shared")
    second = eventually(
        lambda: (
            condition(get_agent(kube_api, ns, "second"), "Degraded").get("reason") == "AgentNameConflict"
            and get_agent(kube_api, ns, "second")
        ),
        what="conflict",
    )
    assert f"{ns}/first" in condition(second, "Degraded")["message"]
    assert condition(get_agent(kube_api, ns, "first"), "Degraded")["status"] == "False"


def test_operator_restart_makes_no_writes(
    kube: ControlPlane, kube_api: Any, ns: str, operator: Operator
) -> None:
    apply_agent(kube, ns, "calm")
    apps = client.AppsV1Api(kube_api)
    eventually(lambda: get_agent(kube_api, ns, "calm").get("status", {}).get("inbox"), what="status")
    time.sleep(2.5)  # let the first rounds settle

    def versions() -> dict[str, str]:
        return {
            "agent": get_agent(kube_api, ns, "calm")["metadata"]["resourceVersion"],
            "deployment": apps.read_namespaced_deployment("calm-worker", ns).metadata.resource_version,
            "config": client.CoreV1Api(kube_api)
            .read_namespaced_config_map("calm-config", ns)
            .metadata.resource_version,
        }

    before = versions()
    operator.restart()
    time.sleep(6)  # start-up, resume handlers and several resync rounds
    assert versions() == before
    assert len(apps.list_namespaced_deployment(ns).items) == 1


def test_deleting_the_agent_collects_its_children(kube: ControlPlane, kube_api: Any, ns: str) -> None:
    apply_agent(kube, ns, "gone")
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    eventually(lambda: apps.read_namespaced_deployment("gone-worker", ns), what="the Deployment")
    kube.kubectl("delete", "agent/gone", "-n", ns)
    eventually(
        lambda: (
            not apps.list_namespaced_deployment(ns).items
            and not [c for c in core.list_namespaced_config_map(ns).items if c.metadata.name == "gone-config"]
            and not [
                s for s in core.list_namespaced_service_account(ns).items if s.metadata.name == "gone-worker"
            ]
        ),
        timeout=60,
        what="garbage collection",
    )


def test_liveness_and_metrics_endpoints(kube: ControlPlane, ns: str) -> None:
    apply_agent(kube, ns, "observed")
    health = f"http://127.0.0.1:{PORTS['OPERATOR_HEALTH_PORT']}/healthz"
    eventually(lambda: httpx.get(health, timeout=2).status_code == 200, what="liveness")
    metrics = f"http://127.0.0.1:{PORTS['OPERATOR_METRICS_PORT']}/metrics"
    text = eventually(
        lambda: (t := httpx.get(metrics, timeout=2).text) and 'result="ok"' in t and t, what="metrics"
    )
    assert "magent2_operator_reconciles_total" in text and "magent2_operator_reconcile_seconds_count" in text


def test_an_optional_secret_that_is_missing_does_not_block_the_agent(
    kube: ControlPlane, kube_api: Any, ns: str
) -> None:
    ref = {"name": "absent", "key": "api-key", "optional": True}
    apply_agent(kube, ns, "keyoptional", openai={"apiKeySecretRef": ref})
    deployment = eventually(
        lambda: next(iter(client.AppsV1Api(kube_api).list_namespaced_deployment(ns).items), None),
        what="the worker Deployment",
    )
    env = {e.name: e for e in deployment.spec.template.spec.containers[0].env}
    assert env["OPENAI_API_KEY"].value_from.secret_key_ref.optional is True
    assert condition(get_agent(kube_api, ns, "keyoptional"), "Degraded").get("status") != "True"
