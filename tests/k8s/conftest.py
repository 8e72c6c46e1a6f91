from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.k8s.controlplane import ControlPlane


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/k8s/" in str(item.path):
            item.add_marker(pytest.mark.k8s)


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver + kube-controller-manager for the whole test session."""
    plane = ControlPlane(tmp_path_factory.mktemp("k8s"))
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def kube_api(kube: ControlPlane) -> Iterator[object]:
    """A Python API client for `kube`."""
    from kubernetes import client, config

    api_client = config.new_client_from_config(str(kube.kubeconfig))
    yield api_client
    api_client.close()
    del client


def make_pods_ready(kube_api: object, label_selector: str, namespace: str = "default") -> int:
    """Play kubelet for pods that exist now: there are no nodes here (no kubelet, no kwok), so pods
    stay Pending. Writing Running + Ready through the pods' status subresource lets the real
    ReplicaSet and Deployment controllers count them, so Deployments roll out as in a cluster."""
    from kubernetes import client

    core = client.CoreV1Api(kube_api)
    pods = core.list_namespaced_pod(namespace, label_selector=label_selector).items
    ready = {"type": "Ready", "status": "True"}
    for pod in pods:
        core.patch_namespaced_pod_status(
            pod.metadata.name,
            namespace,
            {"status": {"phase": "Running", "conditions": [ready, {**ready, "type": "ContainersReady"}]}},
        )
    return len(pods)
