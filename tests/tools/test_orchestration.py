"""Signals and fan-out / fan-in: the tool classes on both buses, and the tools driven through the
Agents SDK by the scripted model across separate worker processes on real Redis."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
import pytest

from magent2.bus import Bus, InMemoryBus, Keys, Publication, RedisStreamsBus
from magent2.contracts import CancelledEvent, ErrorEvent, MessageEnvelope, OutputEvent
from magent2.gateway.app import create_app
from magent2.observer.index import ObserverIndex
from magent2.settings import GatewaySettings
from magent2.tools.fanout import DONE_TOPIC, FanOut, child_done
from magent2.tools.signals import Signals
from tests.support import (
    SCRIPTED,
    conversation_events,
    eventually,
    running,
    serve_app,
    spawn,
    wait_for_outputs,
)

KEYS = Keys()


def fanout(bus: Bus, **limits: Any) -> FanOut:
    options = {"max_hops": 3, "max_children": 4, "events_ttl_s": None} | limits
    return FanOut(bus, KEYS, "Lead", index=ObserverIndex(KEYS, keep=100, ttl_s=None), **options)


# -- the classes, on both buses ------------------------------------------------------------------


async def test_a_signal_sent_before_the_wait_is_received_and_cursors_walk_the_topic(bus: Bus) -> None:
    signals = Signals(bus, KEYS, "A")
    first = await signals.send("deploy/done", '{"ok": true}')
    second = await signals.send("deploy/done", "again")
    got = await signals.wait("deploy/done", timeout_s=1)
    assert (got["received"], got["payload"], got["sender"], got["cursor"]) == (
        True,
        '{"ok": true}',
        "agent:A",
        first["cursor"],
    )
    assert (await signals.wait("deploy/done", after=got["cursor"], timeout_s=1))["cursor"] == second["cursor"]
    timed_out = await signals.wait("deploy/done", after=second["cursor"], timeout_s=0.2)
    assert timed_out["timeout"] and not timed_out["received"]


async def test_signal_topics_prefix_and_payload_size_are_enforced(bus: Bus) -> None:
    signals = Signals(bus, KEYS, "A", topic_prefix="team-a/", payload_max_bytes=10)
    assert "must start with 'team-a/'" in (await signals.send("team-b/x", "hi"))["error"]
    assert "invalid topic" in (await signals.send("bad topic", "hi"))["error"]
    assert "the limit is 10" in (await signals.send("team-a/x", "é" * 6))["error"]
    assert "invalid cursor" in (await signals.wait("team-a/x", after="nope", timeout_s=0))["error"]
    assert (await signals.send("team-a/x", "fits"))["sent"]
    assert await bus.length(KEYS.signal("team-b/x")) == 0


async def test_fan_out_refuses_bad_requests_and_respects_the_hop_limit() -> None:
    tool = fanout(InMemoryBus(), max_children=2)
    assert "at most 2" in (await tool.fan_out(None, "Helper", ["a", "b", "c"]))["error"]
    assert "at least one task" in (await tool.fan_out(None, "Helper", []))["error"]
    assert "one responsibility per task" in (await tool.fan_out(None, "Helper", ["a"], ["x", "y"]))["error"]
    assert "invalid agent name" in (await tool.fan_out(None, "no such", ["a"]))["error"]
    deep = MessageEnvelope(conversation_id="c", sender="agent:X", recipient="agent:Lead", content="x")
    deep.metadata["hops"] = 3
    assert "hop limit reached (3)" in (await tool.fan_out(deep, "Helper", ["a"]))["error"]


async def test_fan_in_reports_the_children_not_done_in_time(bus: Bus) -> None:
    tool = fanout(bus)
    started = await tool.fan_out(None, "Nobody", ["a", "b"])
    topics = [child["done_topic"] for child in started["children"]]
    result = await tool.fan_in(topics, timeout_s=0.3)
    assert not result["complete"] and result["missing"] == topics and "2 child(ren)" in result["error"]
    assert "invalid" in (await tool.fan_in(["bad topic"], 1))["error"]


def test_a_child_signals_its_outcome_whatever_it_is() -> None:
    child = MessageEnvelope(conversation_id="kid", sender="agent:Lead", recipient="agent:Helper", content="x")
    child.metadata[DONE_TOPIC] = "fanout/g/0"
    events = KEYS.events("kid")
    for final, status, output in [
        (OutputEvent(conversation_id="kid", text="all good", message_id=child.id), "done", "all good"),
        (ErrorEvent(conversation_id="kid", message="boom", message_id=child.id), "error", "boom"),
        (
            CancelledEvent(conversation_id="kid", message_id=child.id, partial_text="half"),
            "cancelled",
            "half",
        ),
    ]:
        [signal] = child_done(KEYS, child, [Publication(events, [final.to_json()])], None)
        assert signal.stream == KEYS.signal("fanout/g/0")
        payload = json.loads(json.loads(signal.payloads[0])["payload"])
        assert (payload["status"], payload["output"], payload["message_id"]) == (status, output, child.id)
    plain = MessageEnvelope(conversation_id="c", sender="user:a", recipient="agent:Helper", content="x")
    assert child_done(KEYS, plain, [Publication(KEYS.events("c"), ["{}"])], None) == []


# -- through the SDK, across worker processes ------------------------------------------------------


@contextmanager
def agent_processes(
    redis_url: str, agents: dict[str, tuple[int, str]]
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """{name: (worker processes, AGENT_TOOLS)}, each driven by the scripted model."""
    with ExitStack() as stack:
        processes = []
        for name, (count, tools) in agents.items():
            for _ in range(count):
                env = {
                    "REDIS_URL": redis_url,
                    "AGENT_NAME": name,
                    **SCRIPTED,
                    "AGENT_TOOLS": tools,
                }
                processes.append(stack.enter_context(running(spawn(["magent2.worker"], **env))))
        yield processes


@pytest.fixture
async def gateway(redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(GatewaySettings(REDIS_URL=redis_url))
    async with serve_app(app) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        yield http


async def ask(http: httpx.AsyncClient, conversation: str, agent: str, content: str) -> None:
    async def known() -> bool:
        return agent in (await http.get("/agents")).text

    await eventually(known, timeout=30, what=f"a worker of {agent}")
    body = {
        "conversation_id": conversation,
        "sender": "user:t",
        "recipient": f"agent:{agent}",
        "content": content,
    }
    assert (await http.post("/send", json=body)).status_code == 202


def tool_result(events: list[Any]) -> dict[str, Any]:
    """The whole result of the run's tool call, as the scripted model repeats it in its output."""
    [output] = [e for e in events if e.event == "output"][-1:]
    return dict(json.loads(output.text.removeprefix("tool said: ")))


@pytest.mark.e2e
async def test_fan_out_to_other_workers_and_fan_in_gathers_every_child_once(
    redis_url: str, gateway: httpx.AsyncClient
) -> None:
    bus = RedisStreamsBus(redis_url)
    parent = f"p-{uuid.uuid4().hex[:8]}"
    tasks = {"agent": "Helper", "tasks": ["add 1", "add 2", "add 3"], "responsibilities": ["r0", "r1", "r2"]}
    with agent_processes(redis_url, {"Lead": (1, "fanout"), "Helper": (2, "")}):
        await ask(gateway, parent, "Lead", f"call fan_out {json.dumps(tasks)}")
        started = tool_result(await wait_for_outputs(bus, parent, 1, timeout=30))
        topics = [child["done_topic"] for child in started["children"]]
        await ask(
            gateway, parent, "Lead", f"call fan_in {json.dumps({'done_topics': topics, 'timeout_s': 30})}"
        )
        gathered = tool_result(await wait_for_outputs(bus, parent, 2, timeout=60))
        graph = (await gateway.get(f"/graph/{parent}")).json()
    assert gathered["complete"] and [r["done_topic"] for r in gathered["results"]] == topics
    assert [r["status"] for r in gathered["results"]] == ["done"] * 3
    assert [r["output"] for r in gathered["results"]] == [
        f"you said: Your responsibility: r{n}\n\nadd {n + 1}" for n in range(3)
    ]
    children = [child["conversation_id"] for child in started["children"]]
    for child, topic in zip(children, topics, strict=True):
        [child_message] = [e for e in await conversation_events(bus, child) if e.event == "user_message"]
        assert child_message.sender == "agent:Lead"
        assert await bus.length(KEYS.signal(topic)) == 1  # exactly one done signal
    assert graph["conversations"] == [parent, *children]
    assert {"from": "agent:Lead", "to": "agent:Helper", "messages": 3} in graph["edges"]
    await bus.close()


@pytest.mark.e2e
async def test_one_agent_waits_for_a_signal_another_agent_sends(
    redis_url: str, gateway: httpx.AsyncClient
) -> None:
    bus = RedisStreamsBus(redis_url)
    topic = f"ready-{uuid.uuid4().hex[:6]}"
    with agent_processes(redis_url, {"Waiter": (1, "signals"), "Sender": (1, "signals")}):
        await ask(gateway, "w", "Waiter", f'call signal_wait {{"topic": "{topic}", "timeout_s": 30}}')

        async def waiting() -> bool:
            return any(e.event == "tool_step" for e in await conversation_events(bus, "w"))

        await eventually(waiting, timeout=30, what="the wait to start")
        await ask(gateway, "s", "Sender", f'call signal_send {{"topic": "{topic}", "payload": "go"}}')
        got = tool_result(await wait_for_outputs(bus, "w", 1, timeout=30))
    assert (got["received"], got["payload"], got["sender"]) == (True, "go", "agent:Sender")
    await bus.close()
