"""The observer API over real HTTP (uvicorn), on both buses: recent conversations, one
conversation with its events, who talked to whom, live agent status, and the SSE event cap."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from magent2.bus import Bus, Keys
from magent2.bus.api import GROUP
from magent2.gateway.app import create_app
from magent2.gateway.sse import shorten
from magent2.settings import GatewaySettings
from magent2.worker import EchoRunner, Worker
from tests.scripted_model import scripted_worker
from tests.support import eventually, serve_app, wait_for_outputs, workers_running


def settings(**env: Any) -> GatewaySettings:
    return GatewaySettings(GATEWAY_IN_MEMORY=True, **env)


@pytest.fixture
async def http(bus: Bus) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings(SSE_MAX_EVENT_BYTES=2048), bus=bus)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield client


async def send(http: httpx.AsyncClient, conversation: str, content: str, agent: str = "DevAgent") -> Any:
    body = {"conversation_id": conversation, "sender": "user:alice", "recipient": f"agent:{agent}"}
    response = await http.post("/send", json=body | {"content": content})
    assert response.status_code == 202, response.text
    return response.json()


async def test_recent_conversations_newest_first_with_counts_status_and_pages(
    bus: Bus, http: httpx.AsyncClient
) -> None:
    async with workers_running(Worker(bus, EchoRunner(), agent_name="DevAgent")):
        for conversation, content in [("c1", "one"), ("c1", "two"), ("c2", "three")]:
            await send(http, conversation, content)
            await asyncio.sleep(0.01)  # distinct milliseconds: a stable newest-first order
        await wait_for_outputs(bus, "c1", 2)
        await wait_for_outputs(bus, "c2", 1)
        page = (await http.get("/conversations")).json()
    assert [c["id"] for c in page["conversations"]] == ["c2", "c1"] and page["next_before"] is None
    c1 = page["conversations"][1]
    assert (c1["agents"], c1["messages"], c1["status"], c1["children"]) == (["DevAgent"], 2, "idle", [])
    assert c1["created_at"] <= c1["last_activity"]
    first = (await http.get("/conversations", params={"limit": 1})).json()
    assert [c["id"] for c in first["conversations"]] == ["c2"]
    rest = (await http.get("/conversations", params={"limit": 1, "before": first["next_before"]})).json()
    assert [c["id"] for c in rest["conversations"]] == ["c1"]


async def test_a_conversation_is_running_until_its_outcome(bus: Bus, http: httpx.AsyncClient) -> None:
    async with workers_running(Worker(bus, EchoRunner(token_delay_s=0.3), agent_name="DevAgent")):
        await send(http, "slow", "a b c d")

        async def status() -> str:
            return str((await http.get("/conversations/slow")).json()["status"])

        assert await status() == "running"
        await wait_for_outputs(bus, "slow", 1)
        assert await status() == "idle"


async def test_one_conversation_with_its_events_paged_by_cursor(bus: Bus, http: httpx.AsyncClient) -> None:
    async with workers_running(Worker(bus, EchoRunner(), agent_name="DevAgent")):
        await send(http, "paged", "hello there")
        await wait_for_outputs(bus, "paged", 1)
    whole = (await http.get("/conversations/paged")).json()
    names = [e["event"]["event"] for e in whole["events"]]
    assert names[0] == "user_message" and names[-1] == "output" and whole["next_cursor"] is None
    first = (await http.get("/conversations/paged", params={"limit": 2})).json()
    assert [e["cursor"] for e in first["events"]] == [e["cursor"] for e in whole["events"][:2]]
    rest = (await http.get("/conversations/paged", params={"after": first["next_cursor"]})).json()
    assert first["events"] + rest["events"] == whole["events"]
    assert (await http.get("/conversations/never")).status_code == 404
    assert (await http.get("/conversations/paged", params={"after": "x"})).status_code == 400
    assert (await http.get("/conversations", params={"limit": 0})).status_code == 422


async def test_the_graph_shows_agent_hops_and_child_conversations(bus: Bus, http: httpx.AsyncClient) -> None:
    lead = scripted_worker(bus, AGENT_NAME="Lead", AGENT_TOOLS="chat")
    async with workers_running(lead, Worker(bus, EchoRunner(), agent_name="Helper")):
        hop = '{"recipient": "Helper", "content": "hi", "wait": true}'
        await send(http, "team", f"call chat_send {hop}", agent="Lead")
        await wait_for_outputs(bus, "team", 2)  # Helper's answer, then Lead's
        side = '{"recipient": "Helper", "content": "aside", "conversation_id": "team-side", "wait": true}'
        await send(http, "team", f"call chat_send {side}", agent="Lead")
        await wait_for_outputs(bus, "team", 3)
        graph = (await http.get("/graph/team")).json()
        summary = (await http.get("/conversations/team")).json()
        child = (await http.get("/conversations/team-side")).json()
    assert graph["nodes"] == [
        {"id": "agent:Helper", "kind": "agent"},
        {"id": "agent:Lead", "kind": "agent"},
        {"id": "user:alice", "kind": "user"},
    ]
    assert graph["edges"] == [
        {"from": "agent:Lead", "to": "agent:Helper", "messages": 2},
        {"from": "user:alice", "to": "agent:Lead", "messages": 2},
    ]
    assert graph["conversations"] == ["team", "team-side"]
    assert (summary["agents"], summary["messages"], summary["children"]) == (
        ["Helper", "Lead"],
        3,
        ["team-side"],
    )
    assert child["parent"] == "team" and child["messages"] == 1
    assert (await http.get("/graph/nobody")).status_code == 404


async def test_agents_report_workers_backlog_and_runs_in_flight(bus: Bus, http: httpx.AsyncClient) -> None:
    keys = Keys()
    await bus.ensure_group(keys.inbox("Idle"), GROUP)  # an agent whose workers are all gone
    async with workers_running(Worker(bus, EchoRunner(token_delay_s=0.5), agent_name="DevAgent")):
        for n in range(3):
            await send(http, f"q{n}", "x", agent="Idle")
        await send(http, "busy", "a b c", agent="DevAgent")

        async def in_flight() -> bool:
            return (await http.get("/agents/DevAgent")).json()["in_flight"] == 1

        await eventually(in_flight, what="DevAgent running its message")
        agents = {a["name"]: a for a in (await http.get("/agents")).json()["agents"]}
    assert set(agents) == {"DevAgent", "Idle"}
    idle, dev = agents["Idle"], agents["DevAgent"]
    assert (idle["workers_alive"], idle["backlog"], idle["in_flight"], idle["dead_letters"]) == (0, 3, 0, 0)
    assert idle["last_activity"] is not None and idle["on_new_message"] == "enqueue"
    assert (dev["workers_alive"], dev["backlog"], dev["in_flight"]) == (1, 0, 1)
    assert (await http.get("/agents/Nobody")).status_code == 404


async def test_large_events_are_capped_on_the_sse_path_and_whole_in_the_store(
    bus: Bus, http: httpx.AsyncClient
) -> None:
    big = "é" * 3000  # 6000 bytes of UTF-8
    async with workers_running(Worker(bus, EchoRunner(), agent_name="DevAgent")):
        await send(http, "big", big)
        await wait_for_outputs(bus, "big", 1)
    stream = (await http.get("/stream/big", params={"max_events": 1})).text
    data = next(line.removeprefix("data: ") for line in stream.splitlines() if line.startswith("data: "))
    event = json.loads(data)  # still JSON
    assert len(data.encode()) <= 2048 and event["truncated"] is True
    assert event["content"].startswith("ééé") and event["content"].endswith("characters]")
    stored = (await http.get("/conversations/big")).json()["events"][0]["event"]
    assert stored["content"] == big and "truncated" not in stored


def test_shorten_cuts_the_longest_texts_until_the_event_fits() -> None:
    event = {"event": "tool_step", "args": {"a": "x" * 5000, "b": ["y" * 3000]}, "name": "t"}
    cut = json.loads(shorten(json.dumps(event), 1024))
    assert len(json.dumps(cut).encode()) <= 1024 and cut["name"] == "t" and cut["truncated"]
    assert "[truncated" in cut["args"]["a"] and "[truncated" in cut["args"]["b"][0]
    # nothing long enough to cut: sent as it is, flagged
    small = {"event": "x", **{f"k{i}": "v" * 40 for i in range(60)}}
    assert json.loads(shorten(json.dumps(small), 1024))["k0"] == "v" * 40


async def test_the_observer_needs_the_bearer_token_when_one_is_set(bus: Bus) -> None:
    app = create_app(settings(GATEWAY_API_TOKENS="t0ken"), bus=bus)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        for path in ("/conversations", "/conversations/c1", "/graph/c1", "/agents", "/agents/DevAgent"):
            assert (await http.get(path)).status_code == 401, path
        assert (
            await http.get("/conversations", headers={"Authorization": "Bearer t0ken"})
        ).status_code == 200
        assert (await http.get("/ui/")).status_code == 200  # the console's files hold no data
