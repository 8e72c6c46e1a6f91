"""chat_send between agents on one bus: replies, refusals, and ping-pong stopped at the hop limit."""

from __future__ import annotations

from typing import Any

from magent2.bus import InMemoryBus, Keys
from magent2.contracts import MessageEnvelope
from magent2.observer.index import ObserverIndex
from magent2.tools.chat import Chat
from magent2.worker import EchoRunner, Worker
from tests.scripted_model import scripted_worker
from tests.support import conversation_events, eventually, send_envelope, wait_for_outputs, workers_running

INDEX = ObserverIndex(Keys(), keep=100, ttl_s=None)


def agent(bus: InMemoryBus, name: str, **env: Any) -> Worker:
    return scripted_worker(bus, AGENT_NAME=name, **env)


def steps(events: list[Any], status: str) -> list[Any]:
    return [e for e in events if e.event == "tool_step" and e.status == status]


async def test_send_and_wait_for_the_reply() -> None:
    bus = InMemoryBus()
    async with workers_running(agent(bus, "A"), Worker(bus, EchoRunner(), agent_name="B")):
        await send_envelope(
            bus, 'call chat_send {"recipient": "B", "content": "hi B", "wait": true}', agent="A"
        )
        events = await wait_for_outputs(bus, "c1", 2)
    [done] = steps(events, "success")
    assert '"reply": "echo: hi B"' in (done.result_summary or "")
    b_message = next(e for e in events if e.event == "user_message" and e.recipient == "agent:B")
    assert b_message.sender == "agent:A"


async def test_wait_times_out_when_nobody_answers() -> None:
    bus = InMemoryBus()
    async with workers_running(agent(bus, "A")):
        await send_envelope(
            bus,
            'call chat_send {"recipient": "Nobody", "content": "x", "wait": true, "timeout_s": 0.3}',
            agent="A",
        )
        events = await wait_for_outputs(bus, "c1", 1)
    [failed] = steps(events, "error")
    assert "no reply within 0.3s" in (failed.error or "")


async def test_messages_to_oneself_and_bad_names_are_refused() -> None:
    chat = Chat(InMemoryBus(), Keys(), "A", max_hops=3, events_ttl_s=None, index=INDEX)
    assert (await chat.send(None, "A", "me?"))["error"] == "an agent cannot send a message to itself"
    assert "invalid agent name" in (await chat.send(None, "agent:bad name", "x"))["error"]


async def test_new_conversation_when_none_is_current() -> None:
    bus = InMemoryBus()
    result = await Chat(bus, Keys(), "A", max_hops=3, events_ttl_s=None, index=INDEX).send(None, "B", "hello")
    assert result["sent"] and result["conversation_id"].startswith("chat-") and result["hops"] == 1
    [queued] = await bus.read(Keys().inbox("B"))
    assert MessageEnvelope.model_validate_json(queued.payload).metadata["hops"] == 1


async def test_ping_pong_stops_at_the_hop_limit() -> None:
    bus = InMemoryBus()
    ping = agent(bus, "A", AGENT_INSTRUCTIONS="peer=B", CHAT_MAX_HOPS="3")
    pong = agent(bus, "B", AGENT_INSTRUCTIONS="peer=A", CHAT_MAX_HOPS="3")
    async with workers_running(ping, pong):
        await send_envelope(bus, "pingpong", agent="A")

        async def refused() -> bool:
            return bool(steps(await conversation_events(bus, "c1"), "error"))

        await eventually(refused, what="the hop limit")
        events = await wait_for_outputs(bus, "c1", 4)
    forwarded = [e for e in events if e.event == "user_message" and e.sender.startswith("agent:")]
    assert [f.recipient for f in forwarded] == ["agent:B", "agent:A", "agent:B"]  # hops 1..3
    [stopped] = steps(events, "error")
    assert "hop limit reached (3)" in (stopped.error or "")
