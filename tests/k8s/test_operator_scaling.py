"""Queue health in the Agent's status and autoscaling, against the real control plane and a real
Redis: backlog/in-flight/dead letters read by the operator, `kubectl get mag` columns, Events, the
scale subresource, and spec.autoscaling before and after KEDA's CRDs exist."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kubernetes import client

from magent2.bus import Keys
from magent2.bus.api import GROUP
from tests.k8s.controlplane import ControlPlane
from tests.k8s.keda import keda_crds
from tests.k8s.test_operator import CRD, apply_agent, condition, eventually, get_agent, stop

pytestmark = pytest.mark.k8s


@pytest.fixture(scope="module")
def queue_operator(kube: ControlPlane, redis_server: Any) -> Iterator[subprocess.Popen[bytes]]:
    kube.kubectl("apply", "--server-side", "-f", str(CRD))
    kube.kubectl("wait", "--for=condition=Established", "crd/agents.magent2.dev", "--timeout=30s")
    process = kube.start_operator(
        OPERATOR_RESYNC_SECONDS="1",
        OPERATOR_QUEUE_SECONDS="1",
        QUEUE_REDIS_URL=redis_server.url,
        KEDA_REDIS_ADDRESS="redis.magent2:6379",
        KEDA_REDIS_PASSWORD_SECRET="redis/password",
        WORKER_IMAGE="magent2-worker:test",
    )
    yield process
    stop(process)


@pytest.fixture
def ns(kube: ControlPlane, queue_operator: Any) -> str:
    name = f"q-{uuid.uuid4().hex[:8]}"
    kube.create_namespace(name)
    return name


def deployment(kube_api: Any, ns: str, name: str) -> Any:
    return client.AppsV1Api(kube_api).read_namespaced_deployment(f"{name}-worker", ns)


def events(kube: ControlPlane, ns: str) -> str:
    return kube.kubectl("get", "events", "-n", ns, "-o", "json").stdout


def test_queue_health_reaches_the_status_the_columns_and_events(
    kube: ControlPlane, kube_api: Any, ns: str, redis_server: Any
) -> None:
    agent_name = f"Queued{uuid.uuid4().hex[:6]}"
    store = redis.Redis.from_url(redis_server.url, decode_responses=True)
    inbox = Keys().inbox(agent_name)
    store.xgroup_create(inbox, GROUP, id="0", mkstream=True)
    for n in range(4):
        store.xadd(inbox, {"data": f"m{n}"})
    store.xreadgroup(GROUP, "gone-worker", {inbox: ">"}, count=1)  # one in flight, three waiting
    apply_agent(kube, ns, "queued", agentName=agent_name, replicas=0)

    def measured() -> dict[str, Any] | None:
        status = get_agent(kube_api, ns, "queued").get("status") or {}
        return status if status.get("backlog") == 3 and status.get("inFlight") == 1 else None

    status = eventually(measured, what="backlog 3 and 1 in flight in the status")
    assert status["deadLetters"] == 0 and status["oldestPendingSeconds"] >= 0
    table = kube.kubectl("get", "mag", "queued", "-n", ns).stdout
    assert "BACKLOG" in table.splitlines()[0] and table.splitlines()[1].split()[-2] == "3"
    eventually(lambda: "BacklogWithoutWorkers" in events(kube, ns), what="a BacklogWithoutWorkers event")
    store.xadd(Keys().dead_letters(agent_name), {"data": "{}"})
    eventually(
        lambda: get_agent(kube_api, ns, "queued")["status"].get("deadLetters") == 1, what="1 dead letter"
    )
    eventually(lambda: "DeadLetters" in events(kube, ns), what="a DeadLetters event")


def test_the_operator_makes_the_inbox_of_an_agent_no_worker_ever_started(
    kube: ControlPlane, ns: str, redis_server: Any
) -> None:
    """An Agent at zero workers (autoscaled) must take messages at once: the gateway knows agents by
    their inbox, and KEDA measures the inbox's consumer group."""
    agent_name = f"Dormant{uuid.uuid4().hex[:6]}"
    apply_agent(kube, ns, "dormant", agentName=agent_name, replicas=0)
    store = redis.Redis.from_url(redis_server.url, decode_responses=True)
    inbox = Keys().inbox(agent_name)

    def has_group() -> bool:
        return bool(store.exists(inbox)) and any(g["name"] == GROUP for g in store.xinfo_groups(inbox))

    eventually(has_group, what=f"{inbox} with its consumer group")


def test_kubectl_scale_sets_the_workers(kube: ControlPlane, kube_api: Any, ns: str) -> None:
    apply_agent(kube, ns, "scaled", replicas=1)
    eventually(lambda: deployment(kube_api, ns, "scaled").spec.replicas == 1, what="a Deployment")
    kube.kubectl("scale", "mag/scaled", "-n", ns, "--replicas=3")
    eventually(lambda: deployment(kube_api, ns, "scaled").spec.replicas == 3, what="3 replicas")
    scale = json.loads(
        kube.kubectl("get", "--raw", f"/apis/magent2.dev/v1alpha1/namespaces/{ns}/agents/scaled/scale").stdout
    )
    assert scale["spec"]["replicas"] == 3
    assert (
        scale["status"]["selector"] == "app.kubernetes.io/instance=scaled,app.kubernetes.io/component=worker"
    )


def test_autoscaling_says_when_keda_is_missing_then_hands_replicas_to_keda(
    kube: ControlPlane, kube_api: Any, ns: str
) -> None:
    if "scaledobjects.keda.sh" in kube.kubectl("get", "crd", "-o", "name").stdout:
        pytest.fail("KEDA's CRDs must not be installed before this test")
    scaling = {"minReplicas": 0, "maxReplicas": 5, "targetBacklogPerReplica": 10}
    apply_agent(kube, ns, "bursty", agentName="Bursty", autoscaling=scaling)

    def keda_missing() -> dict[str, Any]:
        return condition(get_agent(kube_api, ns, "bursty"), "Autoscaling").get("reason") == "KEDANotInstalled"

    eventually(keda_missing, what="Autoscaling False/KEDANotInstalled")
    assert condition(get_agent(kube_api, ns, "bursty"), "Autoscaling")["status"] == "False"
    assert deployment(kube_api, ns, "bursty")  # the workers exist all the same

    for crd in keda_crds():
        kube.kubectl("apply", "--server-side", "-f", str(crd))
    kube.kubectl("wait", "--for=condition=Established", "crd/scaledobjects.keda.sh", "--timeout=30s")
    eventually(
        lambda: condition(get_agent(kube_api, ns, "bursty"), "Autoscaling").get("status") == "True",
        timeout=60,
        what="Autoscaling True once KEDA's CRDs exist",
    )
    objects = client.CustomObjectsApi(kube_api)
    scaled = objects.get_namespaced_custom_object("keda.sh", "v1alpha1", ns, "scaledobjects", "bursty-scaler")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "bursty-worker"
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (0, 5)
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis-streams" and trigger["metadata"]["stream"] == "chat:Bursty"
    assert trigger["metadata"]["lagCount"] == "10" and trigger["metadata"]["consumerGroup"] == "workers"
    auth = objects.get_namespaced_custom_object(
        "keda.sh", "v1alpha1", ns, "triggerauthentications", "bursty-redis"
    )
    assert auth["spec"]["secretTargetRef"] == [{"parameter": "password", "name": "redis", "key": "password"}]
    owned = [
        f
        for f in deployment(kube_api, ns, "bursty").metadata.managed_fields
        if f.manager == "magent2-operator"
    ]
    assert owned and all("f:replicas" not in json.dumps(f.fields_v1).split("f:template")[0] for f in owned)

    apply_agent(kube, ns, "bursty", agentName="Bursty", replicas=2)  # autoscaling removed
    eventually(
        lambda: deployment(kube_api, ns, "bursty").spec.replicas == 2, what="the operator owns replicas again"
    )

    def scaler_gone() -> bool:
        try:
            objects.get_namespaced_custom_object("keda.sh", "v1alpha1", ns, "scaledobjects", "bursty-scaler")
        except client.exceptions.ApiException as exc:
            return exc.status == 404
        return False

    eventually(scaler_gone, what="the ScaledObject deleted")
    assert condition(get_agent(kube_api, ns, "bursty"), "Autoscaling") == {}


def test_an_invalid_autoscaling_range_is_rejected_by_the_api_server(kube: ControlPlane, ns: str) -> None:
    bad = {
        "apiVersion": "magent2.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "bad"},
        "spec": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}},
    }
    result = kube.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(bad), check=False)
    assert result.returncode != 0 and "maxReplicas must be at least minReplicas" in result.stderr
