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
