"""Any provider through LiteLLM: `litellm/<provider>/<model>` runs through the Agents SDK's LiteLLM
model, here LiteLLM's OpenAI-compatible route to the scripted model server (offline)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bench.openai_server import ScriptedServer
from magent2.bus import InMemoryBus
from magent2.settings import WorkerSettings
from magent2.worker.build import build_runner, build_worker
from tests.support import free_port, send_envelope, wait_for_outputs, workers_running


@pytest.fixture
async def model_server() -> AsyncIterator[tuple[str, ScriptedServer]]:
    scripted = ScriptedServer(ttft_s=0.01, rate=500, deltas=5)
    port = free_port()
    server = await asyncio.start_server(scripted.handle, "127.0.0.1", port)
    async with server:
        yield f"http://127.0.0.1:{port}/v1", scripted


async def test_a_litellm_model_streams_through_the_sdk(model_server: tuple[str, ScriptedServer]) -> None:
    base_url, scripted = model_server
    settings = WorkerSettings(
        AGENT_NAME="Lite",
        AGENT_MODEL="litellm/openai/scripted",
        LITELLM_BASE_URL=base_url,
        LITELLM_API_KEY="sk-test",
        AGENT_TOOLS="",
        AGENT_SESSION_PATH=":memory:",
    )
    bus = InMemoryBus()
    runner = build_runner(settings, bus)
    assert type(runner).__name__ == "AgentsSdkRunner"
    async with workers_running(build_worker(settings, bus, runner)):
        await send_envelope(bus, "hello", agent="Lite", conversation="lite")
        events = await wait_for_outputs(bus, "lite", 1, timeout=30)
    tokens = [e.text for e in events if e.event == "token"]
    [output] = [e for e in events if e.event == "output"]
    assert output.text == "tok0 tok1 tok2 tok3 tok4 " and "".join(tokens) == output.text
    assert scripted.served == 1


def test_provider_keys_and_endpoints_reach_the_worker() -> None:
    from magent2.contracts import AgentSpec
    from magent2_operator.builders import _env, worker_config
    from magent2_operator.settings import OperatorSettings

    spec = AgentSpec.model_validate(
        {
            "model": "litellm/anthropic/claude-sonnet-4",
            "provider": {
                "apiKeySecretRef": {"name": "anthropic", "key": "api-key"},
                "baseURL": "http://proxy:4000",
            },
        }
    )
    env = {e["name"]: e for e in _env(spec, OperatorSettings())}
    assert env["LITELLM_API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "anthropic", "key": "api-key"}}
    assert worker_config("a", spec)["LITELLM_BASE_URL"] == "http://proxy:4000"
    with pytest.raises(ValueError, match="provider is for litellm/"):
        AgentSpec.model_validate({"model": "gpt-4o", "provider": {"baseURL": "http://x"}})
