"""The chart, the images and Agents as real pods on a real node (tests/node/node.py): install and
`helm test`, the example Agents Ready from real pods, a message through the gateway Service, a
scripted model driving a real tool call inside a worker pod, a worker pod deleted mid-run, an
upgrade under traffic, and an uninstall that leaves nothing behind. The tests run in file order
against one release."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis

from magent2.bus.api import Keys
from tests.k8s.controlplane import ROOT
from tests.node.keda import install_keda, keda_report
from tests.node.model_server import ScriptedModel, serving
from tests.node.node import NODE_IP, Node, images
from tests.support import free_port

NAMESPACE = "magent2"
RELEASE = "magent2"
CHART = ROOT / "charts" / "magent2"
GROUP = "workers"


def _split(reference: str) -> tuple[str, str]:
    repository, tag = reference.rsplit(":", 1)
    return repository, tag


@dataclass
class Release:
    node: Node
    gateway: str = ""
    redis_url: str = ""

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        return self.node.kubectl("-n", NAMESPACE, *args, input=input, check=check).stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def service_url(self, name: str, port: int) -> str:
        return f"{self.json('service', name)['spec']['clusterIP']}:{port}"

    def send(
        self, http: httpx.Client, agent: str, conversation: str, content: str, message_id: str = ""
    ) -> str:
        """POST /send with an id of our own; retried with that id until it is accepted (202)."""
        body = {
            "id": message_id or str(uuid.uuid4()),
            "conversation_id": conversation,
            "sender": "user:node-test",
            "recipient": f"agent:{agent}",
            "type": "message",
            "content": content,
        }
        deadline = time.monotonic() + 60
        while True:
            try:
                response = http.post(f"{self.gateway}/send", json=body, timeout=10)
                if response.status_code == 202:
                    return str(body["id"])
                failure = f"{response.status_code} {response.text}"
                assert response.status_code == 503, failure
            except httpx.TransportError as exc:
                failure = str(exc)
            assert time.monotonic() < deadline, f"send never accepted: {failure}"
            time.sleep(0.2)

    def events(self, conversation: str, *, until: Any = None, timeout: float = 60) -> list[dict[str, Any]]:
        """The conversation's events from its start, read over SSE until `until(events)` holds
        (without `until`: all there are, once nothing new arrives for two seconds)."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = []
            try:
                with httpx.stream(
                    "GET", f"{self.gateway}/stream/{conversation}", timeout=httpx.Timeout(5, read=2)
                ) as response:
                    for line in response.iter_lines():
                        if line.startswith("data: "):
                            seen.append(json.loads(line[6:]))
                            if until is not None and until(seen):
                                return seen
            except httpx.ReadTimeout:
                if until is None:
                    return seen
            except httpx.TransportError:
                time.sleep(0.5)  # the gateway is restarting: read again from the start
        raise AssertionError(f"timed out; events of {conversation}: {[e['event'] for e in seen]}")

    def outputs(self, conversation: str, count: int = 1, timeout: float = 60) -> list[dict[str, Any]]:
        """The conversation's first `count` outputs (and none of it an error)."""
        found = self.events(conversation, until=lambda seen: len(_final(seen)) >= count, timeout=timeout)
        assert not (errors := [e for e in found if e["event"] == "error"]), errors
        return _final(found)

    def condition(self, agent: str, kind: str) -> dict[str, Any]:
        conditions = self.json("agent", agent).get("status", {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == kind), {})

    def wait_agent_ready(self, name: str, replicas: int, timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.json("agent", name).get("status", {})
            ready = {c["type"]: c["status"] for c in status.get("conditions", [])}.get("Ready")
            if ready == "True" and status.get("readyReplicas") == replicas:
                return status
            time.sleep(1)
        pods = self.kubectl("get", "pods", "-o", "wide")
        raise AssertionError(f"Agent {name} not Ready with {replicas} replicas: {status}\n{pods}")


def _final(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] in ("output", "error")]


def _of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == kind]


@pytest.fixture(scope="module")
def model() -> Iterator[ScriptedModel]:
    with serving(NODE_IP, free_port(), ScriptedModel(answer_s=3, deltas=12)) as running:
        yield running


@pytest.fixture(scope="module")
def release(node: Node) -> Iterator[Release]:
    found = images()
    repository, tag = _split(found["GATEWAY_IMAGE"])
    redis_repository, redis_tag = _split(found["REDIS_IMAGE"])
    node.plane.create_namespace(NAMESPACE)
    node.local_volume("magent2-redis-data")
    node.helm(
        "install", RELEASE, str(CHART), "-n", NAMESPACE, "--wait", "--timeout", "5m",
        "--set", f"image.repository={repository.rsplit('/', 1)[0]}", "--set", f"image.tag={tag}",
        "--set", f"redis.image.repository={redis_repository}", "--set", f"redis.image.tag={redis_tag}",
        "--set", "operator.resyncSeconds=5",
    )  # fmt: skip
    installed = Release(node)
    installed.gateway = f"http://{installed.service_url('magent2-gateway', 8000)}"
    password = node.kubectl(
        "-n", NAMESPACE, "get", "secret", "magent2-redis", "-o", "jsonpath={.data.password}"
    ).stdout
    import base64

    installed.redis_url = (
        f"redis://:{base64.b64decode(password).decode()}@{installed.service_url('magent2-redis', 6379)}/0"
    )
    yield installed


def test_install_runs_every_component_as_a_real_pod(release: Release) -> None:
    pods = release.json("pods")["items"]
    components = {p["metadata"]["labels"].get("app.kubernetes.io/component"): p for p in pods}
    assert {"operator", "gateway", "redis"} <= set(components)
    for pod in components.values():
        assert pod["status"]["phase"] == "Running", pod["status"]
        assert pod["spec"]["nodeName"] == "magent2-node"
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert httpx.get(f"{release.gateway}/ready", timeout=10).status_code == 200


def test_helm_test_passes(release: Release) -> None:
    result = release.node.helm("test", RELEASE, "-n", NAMESPACE, "--timeout", "2m")
    assert "Phase:          Succeeded" in result.stdout, result.stdout


def test_example_agents_become_ready_from_real_pods(release: Release) -> None:
    release.kubectl("apply", "-f", str(ROOT / "examples" / "agents.yaml"))
    for name in ("dev-agent", "reviewer"):
        release.wait_agent_ready(name, replicas=1)
        pods = release.json("pods", "-l", f"app.kubernetes.io/instance={name}")["items"]
        ready = [p for p in pods if all(c.get("ready") for c in p["status"].get("containerStatuses", [{}]))]
        assert len(ready) == 1, [p["status"] for p in pods]


def test_a_message_through_the_gateway_service_streams_back_its_output(release: Release) -> None:
    conversation = f"node-{uuid.uuid4().hex[:8]}"
    with httpx.Client() as http:
        message_id = release.send(http, "DevAgent", conversation, "hello from the node test")
    [output] = release.outputs(conversation)
    assert output["message_id"] == message_id
    assert "hello from the node test" in output["text"]


def _scripted_agent(name: str, agent_name: str, model: ScriptedModel, **spec: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "magent2.dev/v1alpha1",
            "kind": "Agent",
            "metadata": {"name": name},
            "spec": {
                "agentName": agent_name,
                "model": "scripted",
                "instructions": "Use the terminal when asked to run something.",
                "openai": {
                    "baseURL": f"http://{model.address}/v1",
                    "apiKeySecretRef": {"name": "scripted-model", "key": "api-key"},
                },
                **spec,
            },
        }
    )


def test_a_scripted_model_runs_a_real_tool_call_inside_the_worker_pod(
    release: Release, model: ScriptedModel
) -> None:
    release.kubectl("create", "secret", "generic", "scripted-model", "--from-literal=api-key=not-a-real-key")
    release.kubectl(
        "apply", "-f", "-",
        input=_scripted_agent(
            "tooler", "Tooler", model,
            tools=["terminal"], terminal={"allowedCommands": ["id", "touch"], "timeoutSeconds": 5},
        ),
    )  # fmt: skip
    release.wait_agent_ready("tooler", replicas=1)
    conversation = f"tool-{uuid.uuid4().hex[:8]}"
    with httpx.Client() as http:
        release.send(http, "Tooler", conversation, "run: id -u")
        release.send(http, "Tooler", conversation, "run: touch /probe")
    first, second = release.outputs(conversation, count=2)
    steps = _of(release.events(conversation), "tool_step")
    assert [(s["name"], s["status"]) for s in steps if s["status"] != "start"] == [
        ("terminal", "success"),
        ("terminal", "error"),  # a non-zero exit
    ]
    assert "10001" in first["text"]  # the pod's non-root user
    assert "Read-only file system" in second["text"]  # its root filesystem


def test_deleting_a_worker_pod_mid_run_yields_exactly_one_output(
    release: Release, model: ScriptedModel
) -> None:
    release.kubectl(
        "apply", "-f", "-",
        input=_scripted_agent(
            "steady", "Steady", model, replicas=2, tools=[],
            env=[{"name": "WORKER_VISIBILITY_TIMEOUT_SECONDS", "value": "5"}],
        ),
    )  # fmt: skip
    release.wait_agent_ready("steady", replicas=2)
    conversation = f"kill-{uuid.uuid4().hex[:8]}"
    with httpx.Client() as http:
        message_id = release.send(http, "Steady", conversation, "survive a pod deletion")
    release.events(conversation, until=lambda seen: any(e["event"] == "token" for e in seen))
    store = redis.Redis.from_url(release.redis_url, decode_responses=True)
    [pending] = store.xpending_range(Keys().inbox("Steady"), GROUP, "-", "+", 10)
    holder = next(p for p in release.json("pods", "-l", "app.kubernetes.io/instance=steady")["items"]
                  if pending["consumer"].startswith(p["metadata"]["name"]))  # fmt: skip
    release.kubectl(
        "delete", "pod", holder["metadata"]["name"], "--grace-period=0", "--force", "--wait=false"
    )
    [output] = release.outputs(conversation, timeout=90)
    assert output["message_id"] == message_id
    assert output["text"] == "echo: survive a pod deletion"
    time.sleep(6)  # past another visibility timeout: a second output would have shown by now
    assert len(_of(release.events(conversation), "output")) == 1
    assert store.xpending(Keys().inbox("Steady"), GROUP)["pending"] == 0


@dataclass
class Traffic:
    """Sends to the echo agent until stopped, each message retried with its own id until accepted."""

    release: Release
    accepted: dict[str, str] = field(default_factory=dict)  # message id -> conversation
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client() as http:
            while not self.stop.is_set():
                conversation = f"upgrade-{uuid.uuid4().hex[:8]}"
                self.accepted[self.release.send(http, "DevAgent", conversation, "during the upgrade")] = (
                    conversation
                )
                time.sleep(0.1)


def test_helm_upgrade_rolls_the_gateway_without_losing_an_accepted_message(release: Release) -> None:
    before = {
        p["metadata"]["uid"]
        for p in release.json("pods", "-l", "app.kubernetes.io/component=gateway")["items"]
    }
    traffic = Traffic(release)
    sender = threading.Thread(target=traffic.run)
    sender.start()
    try:
        time.sleep(1)
        release.node.helm(
            "upgrade", RELEASE, str(CHART), "-n", NAMESPACE, "--reuse-values", "--wait", "--timeout", "3m",
            "--set", "gateway.maxContentBytes=60000",
        )  # fmt: skip
        time.sleep(2)
    finally:
        traffic.stop.set()
        sender.join(90)
    after = release.json("pods", "-l", "app.kubernetes.io/component=gateway")["items"]
    assert before.isdisjoint(p["metadata"]["uid"] for p in after), "the gateway did not roll"
    assert len(traffic.accepted) > 10
    counts: Counter[str] = Counter()
    for message_id, conversation in traffic.accepted.items():
        for output in release.outputs(conversation):
            counts[output["message_id"]] += 1
        assert counts[message_id] == 1, (message_id, conversation)


@dataclass
class ReplicaLog:
    """The worker Deployment's desired replicas, sampled every half second until stopped."""

    release: Release
    deployment: str
    seen: list[int] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def now(self) -> int:
        return int(self.release.json("deployment", self.deployment)["spec"].get("replicas", 1))

    def run(self) -> None:
        while not self.stop.wait(0.5):
            with contextlib.suppress(Exception):
                self.seen.append(self.now())

    def until(self, replicas: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while (current := self.now()) != replicas:
            if time.monotonic() > deadline:
                report = keda_report(self.release.node, NAMESPACE, "surge-scaler")
                raise AssertionError(f"{self.deployment} has {current} replicas, not {replicas}\n{report}")
            time.sleep(1)


@pytest.mark.timeout(900)
def test_keda_scales_an_autoscaled_agent_from_zero_to_n_and_back(
    release: Release, model: ScriptedModel
) -> None:
    """KEDA's own operator and metrics adapter (built from the Go module proxy) on the backlog of the
    Agent's inbox: idle at 0 workers, woken by a burst, scaled out by the HPA on the lag (each
    worker takes one 3-second message at a time), back to 0 after the cooldown; every message
    answered exactly once."""
    install_keda(release.node)
    release.kubectl(
        "apply", "-f", "-",
        input=_scripted_agent(
            "surge", "Surge", model, tools=[], concurrency=1,
            autoscaling={"minReplicas": 0, "maxReplicas": 3, "targetBacklogPerReplica": 2},
        ),
    )  # fmt: skip
    replicas = ReplicaLog(release, "surge-worker")
    deadline = time.monotonic() + 120
    while release.condition("surge", "Autoscaling").get("reason") != "KEDA":
        assert time.monotonic() < deadline, release.json("agent", "surge").get("status")
        time.sleep(1)
    replicas.until(0, timeout=180)  # idle: KEDA takes it to zero
    sampler = threading.Thread(target=replicas.run)
    sampler.start()
    try:
        conversations = [f"surge-{uuid.uuid4().hex[:8]}" for _ in range(24)]
        with httpx.Client() as http:
            sent = [release.send(http, "Surge", c, f"burst {n}") for n, c in enumerate(conversations)]
        answered = Counter(
            output["message_id"] for c in conversations for output in release.outputs(c, timeout=240)
        )
        assert answered == Counter(sent)
        replicas.until(0, timeout=180)  # the cooldown after the last backlog
    finally:
        replicas.stop.set()
        sampler.join(10)
    assert max(replicas.seen) == 3, replicas.seen  # out past one through the HPA and the adapter
    assert replicas.seen[0] <= 1 and replicas.seen[-1] == 0, replicas.seen
    assert release.json("hpa", "keda-hpa-surge-scaler")["spec"]["maxReplicas"] == 3


def test_helm_uninstall_leaves_no_orphans(release: Release) -> None:
    release.kubectl("delete", "agents", "--all", "--wait=true", "--timeout=120s")
    release.node.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "3m")
    kinds = "deployments,statefulsets,replicasets,pods,services,configmaps,secrets,serviceaccounts,roles,rolebindings"
    deadline = time.monotonic() + 120
    while True:
        left = [
            f"{item['kind']}/{item['metadata']['name']}"
            for item in release.json(kinds)["items"]
            if item["metadata"]["name"] not in ("kube-root-ca.crt", "default", "scripted-model")
        ]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert left == []
    cluster = release.node.kubectl(
        "get", "clusterroles,clusterrolebindings", "-l", f"app.kubernetes.io/instance={RELEASE}"
    )
    assert "No resources found" in cluster.stdout + cluster.stderr
