"""The Deployment the operator builds really runs: its container command and env (ConfigMap via
envFrom, Secrets resolved, mounts mapped to temp dirs) start a worker that answers via a gateway."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from magent2.bus import RedisStreamsBus
from magent2.contracts import AgentSpec
from magent2.gateway import create_app
from magent2.settings import GatewaySettings
from magent2_operator import builders
from magent2_operator.settings import OperatorSettings
from tests.support import free_port, running, serve_app, wait_http

pytestmark = pytest.mark.e2e


def resolve_env(
    container: dict[str, Any], configmap: dict[str, Any], secrets: dict[tuple[str, str], str]
) -> dict[str, str]:
    env = dict(configmap["data"]) if container.get("envFrom") else {}
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = secrets[(ref["name"], ref["key"])]
    return env


async def test_the_built_pod_template_serves_messages(redis_url: str, tmp_path: Path) -> None:
    spec = AgentSpec.model_validate(
        {
            "agentName": "Built",
            "tools": ["todo"],
            "instructions": "Answer briefly.",
            "openai": {"apiKeySecretRef": {"name": "openai", "key": "api-key"}},
            "env": [{"name": "AGENT_MODEL_FACTORY", "value": "tests.scripted_model:command_model"}],
        }
    )
    settings = OperatorSettings(REDIS_URL_SECRET="redis/url")
    configmap, _, deployment = builders.children("built", "ns", "uid", spec, settings)
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env = resolve_env(
        container, configmap, {("openai", "api-key"): "sk-test-not-used", ("redis", "url"): redis_url}
    )
    assert env["OPENAI_API_KEY"] == "sk-test-not-used" and env["AGENT_NAME"] == "Built"
    health_port = free_port()
    env.update(TERMINAL_WORKDIR=str(tmp_path), WORKER_HEALTH_PORT=str(health_port))  # the pod's mounts, here
    command = [str(Path(sys.executable).parent / container["command"][0]), *container["command"][1:]]
    process = subprocess.Popen(
        command,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": os.getcwd(), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    bus = RedisStreamsBus(redis_url)
    with running(process):
        wait_http(f"http://127.0.0.1:{health_port}/readyz", timeout=30)
        async with (
            serve_app(create_app(GatewaySettings(REDIS_URL=redis_url), bus=bus)) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as http,
        ):
            sent = await http.post(
                "/send",
                json={
                    "conversation_id": "k1",
                    "sender": "user:ops",
                    "recipient": "agent:Built",
                    "content": "call todo_list {}",
                },
            )
            assert sent.status_code == 202
            reply = await http.get("/stream/k1", params={"last_id": sent.json()["cursor"], "max_events": 4})
    await bus.close()
    assert "event: tool_step" in reply.text and '"status":"start"' in reply.text
    assert '"name":"todo_list"' in reply.text
