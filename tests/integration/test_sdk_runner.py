"""The Agents SDK path offline: a scripted model drives real tool calls and token deltas
through the SDK's own runner, inside a real worker."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import openai
import pytest
import redis.asyncio as aioredis
from agents import Agent, function_tool
from agents.extensions.memory import RedisSession

from magent2.bus import Bus, InMemoryBus, RedisStreamsBus
from magent2.worker import Worker
from magent2.worker.sdk_runner import AgentsSdkRunner
from magent2.worker.sessions import redis_sessions, sqlite_sessions
from tests.scripted_model import TokenStreamingModel, assistant_message, function_call
from tests.support import send_envelope, wait_for_outputs, workers_running


@function_tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@function_tool
def explode(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(reason)


def sdk_worker(bus: Bus, model: TokenStreamingModel, *, sessions: Any = None, max_turns: int = 5) -> Worker:
    agent: Agent[Any] = Agent(name="DevAgent", instructions="Be brief.", model=model, tools=[add, explode])
    runner = AgentsSdkRunner(agent, sessions or sqlite_sessions(":memory:"), max_turns=max_turns)
    return Worker(bus, runner, agent_name="DevAgent", retry_backoff_s=0.01)


async def test_tool_call_and_token_stream_through_the_sdk_runner() -> None:
    bus = InMemoryBus()
    model = TokenStreamingModel(
        [[function_call("add", {"a": 2, "b": 3}, call_id="call-1")], [assistant_message("The sum is 5.")]]
    )
    async with workers_running(sdk_worker(bus, model)):
        await send_envelope(bus, "what is 2+3?")
        events = await wait_for_outputs(bus, "c1", 1)
    kinds = [e.event for e in events]
    assert kinds[0] == "run_started"
    start, done = [e for e in events if e.event == "tool_step"]
    assert (start.name, start.status, start.args, start.tool_call_id) == (
        "add",
        "start",
        {"a": 2, "b": 3},
        "call-1",
    )
    assert (done.status, done.result_summary, done.tool_call_id) == ("success", "5", "call-1")
    assert done.duration_ms is not None and done.duration_ms >= 0
    tokens = [e.text for e in events if e.event == "token"]
    assert "".join(tokens) == "The sum is 5."  # deltas in one write window share one event
    output = events[-1]
    assert output.event == "output" and output.text == "The sum is 5."
    assert output.usage["requests"] == 2
    assert kinds.index("tool_step") < kinds.index("token")
    model.assert_complete()


async def test_failing_tool_is_a_tool_step_error_and_the_run_goes_on() -> None:
    bus = InMemoryBus()
    model = TokenStreamingModel(
        [[function_call("explode", {"reason": "disk full"}, call_id="c-9")], [assistant_message("Sorry.")]]
    )
    async with workers_running(sdk_worker(bus, model)):
        await send_envelope(bus, "break it")
        events = await wait_for_outputs(bus, "c1", 1)
    failed = [e for e in events if e.event == "tool_step" and e.status == "error"]
    assert len(failed) == 1 and failed[0].error
    assert events[-1].text == "Sorry."


async def test_history_carries_over_between_messages() -> None:
    bus = InMemoryBus()
    model = TokenStreamingModel([[assistant_message("Hi Ada.")], [assistant_message("You are Ada.")]])
    async with workers_running(sdk_worker(bus, model)):
        await send_envelope(bus, "I am Ada")
        await wait_for_outputs(bus, "c1", 1)
        await send_envelope(bus, "who am I?")
        await wait_for_outputs(bus, "c1", 2)
    second_input = str(model.last_call.input)  # type: ignore[union-attr]
    assert "I am Ada" in second_input and "Hi Ada." in second_input


async def test_replicas_share_history_through_redis(redis_url: str) -> None:
    bus = RedisStreamsBus(redis_url)
    first = TokenStreamingModel([[assistant_message("Noted: blue.")]])
    second = TokenStreamingModel([[assistant_message("Blue.")]])
    async with workers_running(sdk_worker(bus, first, sessions=redis_sessions(bus.wire))):
        await send_envelope(bus, "my colour is blue")
        await wait_for_outputs(bus, "c1", 1)
    async with workers_running(sdk_worker(bus, second, sessions=redis_sessions(bus.wire))):
        await send_envelope(bus, "what is my colour?")
        await wait_for_outputs(bus, "c1", 2)
    assert "my colour is blue" in str(second.last_call.input)  # type: ignore[union-attr]
    await bus.close()


async def test_history_written_by_the_sdks_own_redis_session_reads_on(redis_url: str) -> None:
    """Histories kept by earlier versions (the SDK's RedisSession) continue, and ours reads the same."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    old = RedisSession("c1", redis_client=client, key_prefix="session")
    await old.add_items([{"role": "user", "content": "my colour is blue"}])
    bus = RedisStreamsBus(redis_url)
    ours = redis_sessions(bus.wire)("c1")
    assert await ours.get_items() == [{"role": "user", "content": "my colour is blue"}]
    await ours.add_items([{"role": "assistant", "content": "Blue."}, {"role": "user", "content": "again"}])
    assert await old.get_items() == await ours.get_items()
    assert await ours.get_items(limit=1) == [{"role": "user", "content": "again"}]
    assert await ours.pop_item() == {"role": "user", "content": "again"}
    await client.rpush("session:c1:messages", "{not json")
    assert await ours.get_items(limit=1) == [{"role": "assistant", "content": "Blue."}]  # corrupt skipped
    await ours.clear_session()
    assert await old.get_items() == [] and await client.exists("session:c1") == 0
    await client.aclose()
    await bus.close()


def _connection_error() -> Exception:
    return openai.APIConnectionError(request=httpx.Request("POST", "http://model.invalid/v1/responses"))


async def test_model_outage_is_retried_then_answers() -> None:
    bus = InMemoryBus()
    model = TokenStreamingModel([_connection_error(), [assistant_message("Back.")]])
    async with workers_running(sdk_worker(bus, model)):
        await send_envelope(bus, "hello")
        events = await wait_for_outputs(bus, "c1", 1)
    assert [e.event for e in events][-1] == "output"
    assert events[-1].text == "Back."


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([_connection_error()] * 3, "model unavailable"),
        (
            [[function_call("add", {"a": 1, "b": 1}, call_id=f"x{i}")] for i in range(3)],
            "max turns (2) exceeded",
        ),
    ],
)
async def test_model_failure_becomes_an_error_event(steps: list[Any], message: str) -> None:
    bus = InMemoryBus()
    model = TokenStreamingModel(steps)
    async with workers_running(sdk_worker(bus, model, max_turns=2)):
        await send_envelope(bus, "hello")
        events = await wait_for_outputs(bus, "c1", 1)
    assert events[-1].event == "error"
    assert message in events[-1].message
    await asyncio.sleep(0)
