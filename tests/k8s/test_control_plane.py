"""Smoke test of the test control plane: the API machinery the operator and chart rely on."""

from __future__ import annotations

import time
import uuid
from typing import Any

from kubernetes import client, watch

from tests.k8s.conftest import make_pods_ready
from tests.k8s.controlplane import ControlPlane

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.smoke.magent2.dev}
spec:
  group: smoke.magent2.dev
  names: {kind: Widget, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1, maximum: 10}
          status:
            type: object
            properties:
              phase: {type: string}
"""


def widget(name: str, size: int) -> str:
    return f"apiVersion: smoke.magent2.dev/v1\nkind: Widget\nmetadata: {{name: {name}}}\nspec: {{size: {size}}}\n"


def eventually(check: Any, timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_server_version_and_rbac(kube: ControlPlane) -> None:
    version = kube.kubectl("version", "-o", "json").stdout
    assert '"gitVersion": "v1.36.3"' in version
    assert kube.kubectl("auth", "can-i", "create", "deployments").stdout.strip() == "yes"
    nobody = kube.kubectl(
        "auth", "can-i", "list", "secrets", "--as", "system:serviceaccount:default:nobody", check=False
    )
    assert nobody.stdout.strip() == "no"


def test_crd_schema_watch_status_and_server_side_apply(kube: ControlPlane, kube_api: Any) -> None:
    kube.kubectl("apply", "-f", "-", input=CRD)
    kube.kubectl("wait", "--for=condition=Established", "crd/widgets.smoke.magent2.dev", "--timeout=30s")

    custom = client.CustomObjectsApi(kube_api)
    args = ("smoke.magent2.dev", "v1", "default", "widgets")
    # Watch from the list's resourceVersion: the ADDED event arrives even though the apply comes first.
    since = custom.list_namespaced_custom_object(*args)["metadata"]["resourceVersion"]
    kube.kubectl("apply", "--server-side", "--field-manager", "smoke", "-f", "-", input=widget("w1", 3))
    stream = watch.Watch()
    seen = []
    for event in stream.stream(
        custom.list_namespaced_custom_object, *args, resource_version=since, timeout_seconds=20
    ):
        seen.append((event["type"], event["object"]["metadata"]["name"]))
        stream.stop()
    assert seen == [("ADDED", "w1")]

    rejected = kube.kubectl("apply", "-f", "-", input=widget("w2", 99), check=False)
    assert rejected.returncode != 0
    assert "spec.size" in rejected.stderr and "should be less than or equal to 10" in rejected.stderr

    custom.patch_namespaced_custom_object_status(
        "smoke.magent2.dev", "v1", "default", "widgets", "w1", {"status": {"phase": "Ready"}}
    )
    obj = custom.get_namespaced_custom_object("smoke.magent2.dev", "v1", "default", "widgets", "w1")
    assert obj["status"] == {"phase": "Ready"} and obj["spec"] == {"size": 3}
    managers = {entry["manager"] for entry in obj["metadata"]["managedFields"]}
    assert "smoke" in managers


def test_controller_manager_makes_replicasets_and_pods_and_collects_garbage(
    kube: ControlPlane, kube_api: Any
) -> None:
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    name = f"web-{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "deployment", name, "--image=registry.invalid/web:1", "--replicas=2")
    selector = f"app={name}"
    eventually(
        lambda: apps.list_namespaced_replica_set("default", label_selector=selector).items, what="ReplicaSet"
    )
    pods = eventually(
        lambda: (lambda items: items if len(items) == 2 else None)(
            core.list_namespaced_pod("default", label_selector=selector).items
        ),
        what="two Pods",
    )
    assert all(p.metadata.owner_references[0].kind == "ReplicaSet" for p in pods)
    assert all(p.status.phase == "Pending" for p in pods)  # no nodes: nothing schedules them

    assert make_pods_ready(kube_api, selector) == 2
    eventually(
        lambda: apps.read_namespaced_deployment_status(name, "default").status.ready_replicas == 2,
        what="the Deployment to count its ready pods",
    )

    apps.delete_namespaced_deployment(name, "default", propagation_policy="Background")
    eventually(
        lambda: (
            not apps.list_namespaced_replica_set("default", label_selector=selector).items
            and not core.list_namespaced_pod("default", label_selector=selector).items
        ),
        what="garbage collection of the ReplicaSet and Pods",
    )
