from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.node.node import Node


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/node/" in str(item.path):
            item.add_marker(pytest.mark.node)


@pytest.fixture(scope="session")
def node() -> Iterator[Node]:
    """One real node for the session: control plane, containerd, kubelet, kube-proxy, CoreDNS."""
    running = Node()
    try:
        running.start()
        yield running
    finally:
        problems = running.stop()
        assert not problems, f"the host was not restored: {problems}"
