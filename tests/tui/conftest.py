"""A real local gateway for the TUI tests: `magent2 up` with two agents on the scripted model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import free_port, running, spawn, wait_http

AGENTS = """
apiVersion: magent2.dev/v1alpha1
kind: Agent
metadata: {name: dev}
spec: {agentName: DevAgent, tools: []}
---
apiVersion: magent2.dev/v1alpha1
kind: Agent
metadata: {name: operator}
spec:
  agentName: Operator
  tools: [terminal]
  terminal: {allowedCommands: [echo]}
  approval: {tools: [terminal]}
"""


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    manifest = Path(tmp_path_factory.mktemp("tui")) / "agents.yaml"
    manifest.write_text(AGENTS)
    port = free_port()
    env = {"AGENT_MODEL_FACTORY": "tests.scripted_model:command_model", "AGENT_SESSION_PATH": ":memory:"}
    with running(spawn(["magent2.cli", "up", "--port", str(port), "-f", str(manifest)], **env)):
        wait_http(f"http://127.0.0.1:{port}/health", timeout=30)
        yield f"http://127.0.0.1:{port}"
