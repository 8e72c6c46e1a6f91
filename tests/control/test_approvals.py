"""Approvals of tool calls, end to end: worker processes on real Redis running the Agents SDK with
the scripted model (`call terminal {...}` becomes a real terminal tool call that needs approval),
decisions over real HTTP through the gateway."""

from __future__ import annotations

import asyncio
import sys
import uuid
from typing import Any

import httpx
import pytest

from magent2.bus import RedisStreamsBus
from tests.control.test_cancel import AGENT, send, until_agent_known, workers
from tests.support import conversation_events, eventually, python_env, wait_for_outputs

pytestmark = pytest.mark.e2e

APPROVE_TERMINAL = {
    "AGENT_TOOLS": "terminal",
    "TERMINAL_ALLOWED_COMMANDS": "echo",
    "AGENT_APPROVAL_TOOLS": "terminal",
}
ECHO = 'call terminal {"command": "echo the tool ran"}'


async def approval_requests(bus: RedisStreamsBus, conversation: str, count: int = 1) -> list[Any]:
    async def asked() -> list[Any] | None:
        found = [e for e in await conversation_events(bus, conversation) if e.event == "approval_required"]
        return found if len(found) >= count else None

    await eventually(asked, timeout=30, what="approval_required")
    return [e for e in await conversation_events(bus, conversation) if e.event == "approval_required"]


async def decide(
    http: httpx.AsyncClient, conversation: str, call_id: str, decision: str, reason: str = ""
) -> Any:
    return await http.post(
        f"/conversations/{conversation}/approvals/{call_id}", json={"decision": decision, "reason": reason}
    )


async def test_an_approved_call_runs_and_the_run_ends_with_one_output(
    bus: RedisStreamsBus, redis_url: str, gateway: httpx.AsyncClient
) -> None:
    conversation = f"a-{uuid.uuid4().hex[:8]}"
    with workers(redis_url, **APPROVE_TERMINAL):
        await until_agent_known(gateway)
        message_id = (await send(gateway, conversation, ECHO)).json()["id"]
        [request] = await approval_requests(bus, conversation)
        assert request.tool == "terminal" and request.arguments == {"command": "echo the tool ran"}
        assert request.message_id == message_id
        assert not any(e.event == "output" for e in await conversation_events(bus, conversation))
        assert (await gateway.get(f"/conversations/{conversation}")).json()["status"] == "awaiting_approval"
        assert (await gateway.get(f"/agents/{AGENT}")).json()["awaiting_approval"] == 1
        response = await decide(gateway, conversation, request.call_id, "approve")
        assert response.status_code == 200, response.text
        assert response.json()["resumed"] is True
        events = await wait_for_outputs(bus, conversation, 1, timeout=30)
    [output] = [e for e in events if e.event == "output"]
    assert output.message_id == message_id and "the tool ran" in output.text
    [resolved] = [e for e in events if e.event == "approval_resolved"]
    assert (resolved.decision, resolved.by, resolved.call_id) == ("approve", "user", request.call_id)
    steps = [(e.name, e.status) for e in events if e.event == "tool_step" and e.status != "start"]
    assert steps == [("terminal", "success")]


async def test_a_rejected_call_does_not_run_and_the_model_hears_why(
    bus: RedisStreamsBus, redis_url: str, gateway: httpx.AsyncClient
) -> None:
    conversation = f"a-{uuid.uuid4().hex[:8]}"
    with workers(redis_url, **APPROVE_TERMINAL):
        await until_agent_known(gateway)
        await send(gateway, conversation, ECHO)
        [request] = await approval_requests(bus, conversation)
        assert (
            await decide(gateway, conversation, request.call_id, "reject", "too risky")
        ).status_code == 200
        events = await wait_for_outputs(bus, conversation, 1, timeout=30)
    [output] = [e for e in events if e.event == "output"]
    assert "rejected by a person: too risky" in output.text
    assert "the tool ran" not in output.text


async def test_an_unanswered_request_expires_as_on_timeout_says(
    bus: RedisStreamsBus, redis_url: str, gateway: httpx.AsyncClient
) -> None:
    conversation = f"a-{uuid.uuid4().hex[:8]}"
    expiring = {
        **APPROVE_TERMINAL,
        "AGENT_APPROVAL_TIMEOUT_SECONDS": "1",
        "WORKER_VISIBILITY_TIMEOUT_SECONDS": "1",
    }
    with workers(redis_url, **expiring):
        await until_agent_known(gateway)
        await send(gateway, conversation, ECHO)
        [request] = await approval_requests(bus, conversation)
        events = await wait_for_outputs(bus, conversation, 1, timeout=30)
        late = await decide(gateway, conversation, request.call_id, "approve")
    [resolved] = [e for e in events if e.event == "approval_resolved"]
    assert (resolved.decision, resolved.by) == ("reject", "timeout")
    assert "timed out" in next(e for e in events if e.event == "output").text
    assert late.status_code == 409 and "already decided by timeout" in late.text


async def test_a_decision_after_the_pausing_worker_died_is_resumed_by_another(
    bus: RedisStreamsBus, redis_url: str, gateway: httpx.AsyncClient
) -> None:
    conversation = f"a-{uuid.uuid4().hex[:8]}"
    with workers(redis_url, **APPROVE_TERMINAL) as [doomed]:
        await until_agent_known(gateway)
        message_id = (await send(gateway, conversation, ECHO)).json()["id"]
        [request] = await approval_requests(bus, conversation)
        doomed.kill()  # kill -9: the paused run must not depend on it
        doomed.wait()
    with workers(redis_url, **APPROVE_TERMINAL):
        assert (await decide(gateway, conversation, request.call_id, "approve")).status_code == 200
        events = await wait_for_outputs(bus, conversation, 1, timeout=30)
    [output] = [e for e in events if e.event == "output"]
    assert output.message_id == message_id and "the tool ran" in output.text


async def test_messages_sent_meanwhile_wait_for_the_paused_run(
    bus: RedisStreamsBus, redis_url: str, gateway: httpx.AsyncClient
) -> None:
    conversation = f"a-{uuid.uuid4().hex[:8]}"
    with workers(redis_url, **APPROVE_TERMINAL):
        await until_agent_known(gateway)
        first = (await send(gateway, conversation, ECHO)).json()["id"]
        [request] = await approval_requests(bus, conversation)
        second = (await send(gateway, conversation, "and then this")).json()["id"]
        await decide(gateway, conversation, request.call_id, "approve")
        events = await wait_for_outputs(bus, conversation, 2, timeout=30)
    assert [(e.message_id, "the tool ran" in e.text) for e in events if e.event == "output"] == [
        (first, True),
        (second, False),
    ]


async def test_bad_decisions_get_clear_errors(
    bus: RedisStreamsBus, redis_url: str, gateway: httpx.AsyncClient
) -> None:
    conversation = f"a-{uuid.uuid4().hex[:8]}"
    with workers(redis_url, **APPROVE_TERMINAL):
        await until_agent_known(gateway)
        await send(gateway, conversation, ECHO)
        [request] = await approval_requests(bus, conversation)
        unknown = await decide(gateway, conversation, "call-nope", "approve")
        assert unknown.status_code == 404 and "no tool call 'call-nope' awaiting approval" in unknown.text
        nowhere = await decide(gateway, "no-such-conversation", request.call_id, "approve")
        assert nowhere.status_code == 404
        malformed = await decide(gateway, conversation, request.call_id, "maybe")
        assert malformed.status_code == 422
        assert (await decide(gateway, conversation, request.call_id, "reject", "no")).status_code == 200
        twice = await decide(gateway, conversation, request.call_id, "approve")
        assert twice.status_code == 409 and "already decided by user: reject" in twice.text
        await wait_for_outputs(bus, conversation, 1, timeout=30)


async def test_the_interactive_client_asks_y_n_and_the_reply_goes_on(
    redis_url: str, gateway: httpx.AsyncClient
) -> None:
    with workers(redis_url, **APPROVE_TERMINAL):
        await until_agent_known(gateway)
        chat = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "magent2.cli", "client", "--agent", AGENT, "--base-url", str(gateway.base_url),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=python_env(),
        )  # fmt: skip
        out, err = await asyncio.wait_for(chat.communicate(f"{ECHO}\ny\n".encode()), 60)
    assert chat.returncode == 0, err.decode()
    assert "approve terminal" in out.decode() + err.decode()
    assert "[approval] approve by user" in err.decode()
    assert "the tool ran" in out.decode()
