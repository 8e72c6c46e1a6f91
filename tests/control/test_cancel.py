"""Cancel and `onNewMessage`, end to end: a gateway over real HTTP, worker processes on real Redis,
runs streamed by the Agents SDK from the scripted model (`slow N`: N words, 50 ms apart)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from magent2.bus import RedisStreamsBus
from tests.support import SCRIPTED, conversation_events, eventually, running, spawn, wait_for_outputs

pytestmark = pytest.mark.e2e

AGENT = "Steady"


@contextmanager
def workers(redis_url: str, count: int = 1, **env: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    scripted = {
        "REDIS_URL": redis_url,
        "AGENT_NAME": AGENT,
        **SCRIPTED,
        "AGENT_TOOLS": "",
        **env,
    }
    processes = [spawn(["magent2.worker"], **scripted) for _ in range(count)]
    try:
        with running(processes[0]):
            yield processes
    finally:
        for process in processes[1:]:
            process.terminate()
            process.wait(20)


async def send(http: httpx.AsyncClient, conversation: str, content: str) -> httpx.Response:
    body = {
        "conversation_id": conversation,
        "sender": "user:t",
        "recipient": f"agent:{AGENT}",
        "content": content,
    }
    return await http.post("/send", json=body)


async def until_agent_known(http: httpx.AsyncClient) -> None:
    async def known() -> bool:
        return AGENT in (await http.get("/agents")).text

    await eventually(known, timeout=30, what=f"a worker of {AGENT}")


async def until_streaming(bus: RedisStreamsBus, conversation: str) -> None:
    async def streaming() -> bool:
        return any(e.event == "token" for e in await conversation_events(bus, conversation))

    await eventually(streaming, timeout=30, what="the run to stream")


def outcomes(events: list[Any]) -> list[tuple[str, str]]:
    return [(e.event, e.message_id) for e in events if e.event in ("output", "error", "cancelled")]


async def test_cancel_stops_the_streaming_run_wherever_it_runs_and_the_next_message_runs(
    bus: RedisStreamsBus, redis_url: str, gateway: httpx.AsyncClient
) -> None:
    conversation = f"c-{uuid.uuid4().hex[:8]}"
    with workers(redis_url, count=2):
        await until_agent_known(gateway)
        first = (await send(gateway, conversation, "slow 200")).json()["id"]
        second = (await send(gateway, conversation, "after the cancel")).json()["id"]
        await until_streaming(bus, conversation)
        response = await gateway.post(
            f"/conversations/{conversation}/cancel", json={"reason": "changed my mind"}
        )
        assert response.status_code == 202, response.text
        assert response.json() == {
            "conversation_id": conversation,
            "agent": AGENT,
            "status": "cancel requested",
        }
        events = await wait_for_outputs(bus, conversation, 2, timeout=30)
    [cancelled] = [e for e in events if e.event == "cancelled"]
    assert cancelled.message_id == first and cancelled.reason == "changed my mind"
    assert cancelled.partial_text.startswith("w0") and len(cancelled.partial_text.split()) < 200
    assert outcomes(events) == [("cancelled", first), ("output", second)]
    assert [e.text for e in events if e.event == "output"] == ["you said: after the cancel"]


async def test_cancel_needs_a_running_run_and_a_known_conversation(
    redis_url: str, gateway: httpx.AsyncClient
) -> None:
    with workers(redis_url):
        await until_agent_known(gateway)
        unknown = await gateway.post("/conversations/never-seen/cancel")
        assert unknown.status_code == 404 and "no message to an agent" in unknown.text
        conversation = f"c-{uuid.uuid4().hex[:8]}"
        await send(gateway, conversation, "quick")

        async def idle() -> bool:
            response = await gateway.post(f"/conversations/{conversation}/cancel")
            return response.status_code == 409 and "nothing of conversation" in response.text

        await eventually(idle, timeout=20, what="409 once the run is over")
        malformed = await gateway.post(
            f"/conversations/{conversation}/cancel", json={"agent": "no spaces allowed"}
        )
        assert malformed.status_code == 422


async def test_on_new_message_reject_refuses_a_second_message_while_one_runs(
    bus: RedisStreamsBus, redis_url: str, gateway: httpx.AsyncClient
) -> None:
    conversation = f"c-{uuid.uuid4().hex[:8]}"
    with workers(redis_url, AGENT_ON_NEW_MESSAGE="reject"):
        await until_agent_known(gateway)
        assert (await send(gateway, conversation, "slow 20")).status_code == 202
        refused = await send(gateway, conversation, "too early")
        assert refused.status_code == 409
        assert "onNewMessage: reject" in refused.json()["detail"]
        await wait_for_outputs(bus, conversation, 1, timeout=30)
        assert (await send(gateway, conversation, "in time")).status_code == 202
        events = await wait_for_outputs(bus, conversation, 2, timeout=30)
    assert [e.text for e in events if e.event == "output"][-1] == "you said: in time"
    assert not any(e.event == "user_message" and e.content == "too early" for e in events)


async def test_on_new_message_interrupt_stops_the_running_one_and_runs_the_new_one(
    bus: RedisStreamsBus, redis_url: str, gateway: httpx.AsyncClient
) -> None:
    conversation = f"c-{uuid.uuid4().hex[:8]}"
    with workers(redis_url, AGENT_ON_NEW_MESSAGE="interrupt"):
        await until_agent_known(gateway)
        first = (await send(gateway, conversation, "slow 200")).json()["id"]
        await until_streaming(bus, conversation)
        second = (await send(gateway, conversation, "instead")).json()["id"]
        events = await wait_for_outputs(bus, conversation, 2, timeout=30)
    assert outcomes(events) == [("cancelled", first), ("output", second)]
    [cancelled] = [e for e in events if e.event == "cancelled"]
    assert cancelled.reason == f"interrupted by message {second}"
    assert [e.text for e in events if e.event == "output"] == ["you said: instead"]


async def test_on_new_message_enqueue_runs_both_in_order(
    bus: RedisStreamsBus, redis_url: str, gateway: httpx.AsyncClient
) -> None:
    conversation = f"c-{uuid.uuid4().hex[:8]}"
    with workers(redis_url):
        await until_agent_known(gateway)
        first = (await send(gateway, conversation, "slow 5")).json()["id"]
        second = (await send(gateway, conversation, "queued")).json()["id"]
        events = await wait_for_outputs(bus, conversation, 2, timeout=30)
    assert outcomes(events) == [("output", first), ("output", second)]
