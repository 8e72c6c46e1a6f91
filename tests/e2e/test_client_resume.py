"""The client's stream survives a gateway restart mid-reply: it resumes from its cursor, and every
token arrives once and in order (kill -9 of the gateway process, a new one on the same port)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from magent2.client.http import Client
from tests.support import restartable_gateway

pytestmark = pytest.mark.e2e


async def test_a_reply_streams_on_across_a_gateway_restart(redis_url: str) -> None:
    words = " ".join(f"w{i}" for i in range(60))
    tokens: list[dict[str, Any]] = []
    with restartable_gateway(redis_url) as gateway:
        client = Client(gateway.url, "DevAgent", "user:t")
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None)) as http:
            await _until_known(client, http)
            sent = await client.send(http, "resume-1", words)
            async for _, event in client.events(http, "resume-1", sent["cursor"]):
                if event["event"] == "token":
                    tokens.append(event)
                    if len(tokens) == 10:
                        gateway.kill()
                        gateway.start()
                if event["event"] == "output":
                    output = event
                    break
    assert [t["index"] for t in tokens] == list(range(len(tokens)))  # none lost, doubled or reordered
    assert "".join(t["text"] for t in tokens) == output["text"] == f"echo: {words}"


async def _until_known(client: Client, http: httpx.AsyncClient) -> None:
    import asyncio

    for _ in range(300):
        if "DevAgent" in str(await client.get(http, "/agents")):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("no worker of DevAgent")
