"""Worker delivery guarantees on both buses: order, concurrency, de-duplication, reclaim,
graceful shutdown, and failures turned into error events without losing the message."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import pytest

from magent2.bus import Bus, BusUnavailable, Keys
from magent2.contracts import DeadLetter, MessageEnvelope, OutputEvent, StreamEvent, TokenEvent
from magent2.worker import GROUP, EchoRunner, RunFailed, Worker
from tests.support import conversation_events, eventually, send_envelope, wait_for_outputs, workers_running


class SlowRunner:
    """Records which messages run at the same time."""

    def __init__(self, delay: float = 0.05) -> None:
        self.delay = delay
        self.active: dict[str, int] = defaultdict(int)
        self.max_per_conversation = 0
        self.max_total = 0
        self.order: dict[str, list[str]] = defaultdict(list)
        self.started = asyncio.Event()

    async def run(self, envelope: MessageEnvelope) -> AsyncIterator[StreamEvent]:
        conv = envelope.conversation_id
        self.active[conv] += 1
        self.order[conv].append(envelope.content)
        self.max_per_conversation = max(self.max_per_conversation, self.active[conv])
        self.max_total = max(self.max_total, sum(self.active.values()))
        self.started.set()
        try:
            yield TokenEvent(conversation_id=conv, text="…", index=0)
            await asyncio.sleep(self.delay)
            yield OutputEvent(conversation_id=conv, text=f"done {envelope.content}", message_id=envelope.id)
        finally:
            self.active[conv] -= 1

    async def aclose(self) -> None:
        return None


def outputs(events: list[Any]) -> list[str]:
    return [e.text for e in events if e.event == "output"]


async def test_echo_round_trip_events(bus: Bus) -> None:
    worker = Worker(bus, EchoRunner(), agent_name="DevAgent")
    async with workers_running(worker):
        sent = await send_envelope(bus, "hello there")
        events = await wait_for_outputs(bus, "c1", 1)
    kinds = [e.event for e in events]
    assert kinds[0] == "run_started" and kinds[-1] == "output"
    assert "".join(e.text for e in events if e.event == "token") == "echo: hello there"
    assert events[-1].message_id == sent.id
    indexes = [e.index for e in events if e.event == "token"]  # each event's first delta
    assert indexes[0] == 0 and indexes == sorted(set(indexes))


async def test_one_conversation_runs_serially_in_order_across_replicas(bus: Bus) -> None:
    runner = SlowRunner(delay=0.03)
    replicas = [Worker(bus, runner, agent_name="DevAgent", concurrency=4) for _ in range(2)]
    async with workers_running(*replicas):
        for i in range(6):
            for conv in ("a", "b", "c"):
                await send_envelope(bus, f"{conv}{i}", conversation=conv)
        for conv in ("a", "b", "c"):
            await wait_for_outputs(bus, conv, 6)
    assert runner.max_per_conversation == 1
    assert runner.max_total > 1  # different conversations did run concurrently
    for conv in ("a", "b", "c"):
        assert runner.order[conv] == [f"{conv}{i}" for i in range(6)]
        assert outputs(await conversation_events(bus, conv)) == [f"done {conv}{i}" for i in range(6)]


async def test_concurrency_bounds_parallel_runs(bus: Bus) -> None:
    runner = SlowRunner(delay=0.05)
    worker = Worker(bus, runner, agent_name="DevAgent", concurrency=3)
    async with workers_running(worker):
        for i in range(9):
            await send_envelope(bus, str(i), conversation=f"conv{i}")
        for i in range(9):
            await wait_for_outputs(bus, f"conv{i}", 1)
    assert runner.max_total == 3


async def test_duplicate_envelope_runs_once(bus: Bus) -> None:
    worker = Worker(bus, EchoRunner(), agent_name="DevAgent")
    async with workers_running(worker):
        await send_envelope(bus, "once", envelope_id="fixed-id")
        await wait_for_outputs(bus, "c1", 1)
        await send_envelope(bus, "once", envelope_id="fixed-id")
        await send_envelope(bus, "marker")
        events = await wait_for_outputs(bus, "c1", 2)
    assert outputs(events) == ["echo: once", "echo: marker"]


async def test_message_of_a_dead_consumer_is_reclaimed(bus: Bus) -> None:
    inbox = Keys().inbox("DevAgent")
    await bus.ensure_group(inbox, GROUP)
    await send_envelope(bus, "orphan")
    taken = await bus.consume(inbox, GROUP, "dead-consumer", count=1, block_ms=100)
    assert len(taken) == 1
    worker = Worker(bus, EchoRunner(), agent_name="DevAgent", visibility_timeout_s=0.2)
    async with workers_running(worker):
        events = await wait_for_outputs(bus, "c1", 1)
    assert outputs(events) == ["echo: orphan"]


async def test_long_run_keeps_its_lease(bus: Bus) -> None:
    runner = SlowRunner(delay=0.6)
    first = Worker(bus, runner, agent_name="DevAgent", visibility_timeout_s=0.15)
    second = Worker(bus, runner, agent_name="DevAgent", visibility_timeout_s=0.15)
    async with workers_running(first, second):
        await send_envelope(bus, "long")
        await wait_for_outputs(bus, "c1", 1)
        await asyncio.sleep(0.3)
    assert outputs(await conversation_events(bus, "c1")) == ["done long"]
    assert runner.order["c1"] == ["long"]


async def test_graceful_stop_finishes_in_flight_run(bus: Bus) -> None:
    runner = SlowRunner(delay=0.3)
    worker = Worker(bus, runner, agent_name="DevAgent", shutdown_grace_s=5)
    task = asyncio.create_task(worker.run())
    await send_envelope(bus, "finish me")
    await asyncio.wait_for(runner.started.wait(), 5)
    worker.stop()
    await asyncio.wait_for(task, 10)
    assert outputs(await conversation_events(bus, "c1")) == ["done finish me"]


async def test_stop_past_grace_hands_messages_back(bus: Bus) -> None:
    slow = SlowRunner(delay=30)
    leaving = Worker(bus, slow, agent_name="DevAgent", shutdown_grace_s=0.1, visibility_timeout_s=60)
    task = asyncio.create_task(leaving.run())
    await send_envelope(bus, "handed back")
    await asyncio.wait_for(slow.started.wait(), 5)
    leaving.stop()
    await asyncio.wait_for(task, 10)
    taker = Worker(bus, EchoRunner(), agent_name="DevAgent", visibility_timeout_s=60)
    async with workers_running(taker):  # reclaims at once although the visibility timeout is long
        events = await wait_for_outputs(bus, "c1", 1, timeout=5)
    assert outputs(events) == ["echo: handed back"]


class FlakyRunner:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.calls = 0

    async def run(self, envelope: MessageEnvelope) -> AsyncIterator[StreamEvent]:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        yield OutputEvent(conversation_id=envelope.conversation_id, text="recovered")

    async def aclose(self) -> None:
        return None


@pytest.mark.parametrize(
    ("failures", "expected_kind", "calls"),
    [
        ([RunFailed("rate limited", retryable=True)], "output", 2),
        ([RunFailed("bad request", retryable=False)], "error", 1),
        ([RunFailed("down", retryable=True)] * 3, "error", 3),
        ([ValueError("boom")], "error", 1),
    ],
)
async def test_model_failures_become_error_events(
    bus: Bus, failures: list[Exception], expected_kind: str, calls: int, caplog: pytest.LogCaptureFixture
) -> None:
    runner = FlakyRunner(list(failures))
    worker = Worker(bus, runner, agent_name="DevAgent", max_attempts=3, retry_backoff_s=0.01)
    async with workers_running(worker):
        sent = await send_envelope(bus, "try")
        events = await wait_for_outputs(bus, "c1", 1)
    if expected_kind == "error":  # a failed run leaves a trace in the worker's log, with its id
        assert any(r.levelno >= logging.WARNING and sent.id in r.getMessage() for r in caplog.records)
        # acknowledged: not redelivered to anyone
        assert await bus.reclaim(Keys().inbox("DevAgent"), GROUP, "x", min_idle_ms=0, count=10) == []
    final = events[-1]
    assert final.event == expected_kind
    assert runner.calls == calls
    if final.event == "error":
        assert final.message and final.message_id


async def test_malformed_inbox_entry_goes_to_the_dead_letters_not_fatal(bus: Bus) -> None:
    inbox = Keys().inbox("DevAgent")
    garbage = await bus.publish(inbox, "{not json")
    worker = Worker(bus, EchoRunner(), agent_name="DevAgent")
    async with workers_running(worker):
        await send_envelope(bus, "after garbage")
        events = await wait_for_outputs(bus, "c1", 1)
        await eventually(lambda: worker.metrics.dead_lettered._value.get() == 1, what="dead letter")
    assert outputs(events) == ["echo: after garbage"]
    [letter] = [
        DeadLetter.model_validate_json(m.payload) for m in await bus.read(Keys().dead_letters("DevAgent"))
    ]
    assert (letter.message_id, letter.payload, letter.agent) == (garbage, "{not json", "DevAgent")
    assert letter.reason.startswith("malformed envelope") and letter.envelope() is None


async def test_a_message_delivered_too_often_goes_to_the_dead_letters(bus: Bus) -> None:
    """A poison message (it kills every worker that runs it) is redelivered at most
    max_deliveries times; then it is dead-lettered and its conversation told, and the
    conversation's next message runs."""
    inbox = Keys().inbox("DevAgent")
    await bus.ensure_group(inbox, GROUP)
    poison = await send_envelope(bus, "poison")
    await bus.consume(inbox, GROUP, "crashed-0", count=1, block_ms=100)
    for n in range(1, 3):  # two more workers took it and died
        await asyncio.sleep(0.03)
        assert len(await bus.reclaim(inbox, GROUP, f"crashed-{n}", min_idle_ms=20, count=1)) == 1
    await send_envelope(bus, "next")
    worker = Worker(bus, EchoRunner(), agent_name="DevAgent", visibility_timeout_s=0.05, max_deliveries=3)
    async with workers_running(worker):
        events = await wait_for_outputs(bus, "c1", 2)  # delivery 4 > 3: dead
    final = [e for e in events if e.event in ("output", "error")]
    assert [e.event for e in final] == ["error", "output"]
    assert final[0].message_id == poison.id and "dead-letter" in final[0].message
    assert outputs(events) == ["echo: next"]
    [letter] = [
        DeadLetter.model_validate_json(m.payload) for m in await bus.read(Keys().dead_letters("DevAgent"))
    ]
    assert letter.envelope() == poison and "more than 3 times" in letter.reason


class FrozenLeases:
    """Failure injection: a worker whose lease renewals and reclaims stall (a frozen process)
    while its run goes on, until `thawed`."""

    def __init__(self, inner: Bus) -> None:
        self.inner = inner
        self.thawed = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def touch(self, *args: Any, **kwargs: Any) -> list[str]:
        await self.thawed.wait()
        lost: list[str] = await self.inner.touch(*args, **kwargs)
        return lost

    async def reclaim(self, *args: Any, **kwargs: Any) -> list[Any]:
        await self.thawed.wait()
        claimed: list[Any] = await self.inner.reclaim(*args, **kwargs)
        return claimed


async def test_a_stale_worker_never_publishes_a_second_outcome(bus: Bus) -> None:
    gate = asyncio.Event()

    class GatedRunner(SlowRunner):
        async def run(self, envelope: MessageEnvelope) -> AsyncIterator[StreamEvent]:
            self.started.set()
            await gate.wait()
            yield OutputEvent(conversation_id=envelope.conversation_id, text="stale", message_id=envelope.id)

    stale_bus: Any = FrozenLeases(bus)
    stale_runner = GatedRunner()
    stale = Worker(stale_bus, stale_runner, agent_name="DevAgent", visibility_timeout_s=0.1)
    rescuer = Worker(bus, EchoRunner(), agent_name="DevAgent", visibility_timeout_s=0.1)
    async with workers_running(stale):
        await send_envelope(bus, "once")
        await asyncio.wait_for(stale_runner.started.wait(), 5)
        async with workers_running(rescuer):  # the stale lease lapses; the rescuer re-runs it
            await wait_for_outputs(bus, "c1", 1)
        gate.set()  # the stale run finishes after all: its completion is fenced out
        await eventually(
            lambda: stale.metrics.completions.labels("duplicate")._value.get() == 1, what="fenced"
        )
        stale_bus.thawed.set()
        await asyncio.sleep(0.2)
    assert outputs(await conversation_events(bus, "c1")) == ["echo: once"]


async def test_a_worker_that_lost_its_lease_stops_the_run(bus: Bus) -> None:
    never = SlowRunner(delay=30)
    stale_bus: Any = FrozenLeases(bus)
    stale = Worker(stale_bus, never, agent_name="DevAgent", visibility_timeout_s=0.1)
    rescuer = Worker(bus, EchoRunner(), agent_name="DevAgent", visibility_timeout_s=0.1)
    async with workers_running(stale):
        await send_envelope(bus, "taken over")
        await asyncio.wait_for(never.started.wait(), 5)
        async with workers_running(rescuer):
            await wait_for_outputs(bus, "c1", 1)
        stale_bus.thawed.set()  # renewal finds the lease gone and cancels the run
        await eventually(lambda: never.active["c1"] == 0, what="stale run cancelled")
    assert outputs(await conversation_events(bus, "c1")) == ["echo: taken over"]


async def test_stopping_hands_back_messages_it_never_started_at_once(bus: Bus) -> None:
    slow = SlowRunner(delay=0.8)
    first = Worker(bus, slow, agent_name="DevAgent", visibility_timeout_s=30, concurrency=1)
    leaving = Worker(bus, slow, agent_name="DevAgent", visibility_timeout_s=30, shutdown_grace_s=60)
    async with workers_running(first):
        await send_envelope(bus, "m1")
        await asyncio.wait_for(slow.started.wait(), 5)
        task = asyncio.create_task(leaving.run())
        await send_envelope(bus, "m2")  # `leaving` takes it and waits for m1 (runs on `first`)
        await eventually(lambda: leaving._held, what="m2 held by the leaving worker")
        leaving.stop()
        await asyncio.wait_for(task, 2)  # did not sit out the 60 s grace holding m2
        events = await wait_for_outputs(bus, "c1", 2)
    assert outputs(events) == ["done m1", "done m2"]


class OutageBus:
    """Failure injection: the first `failures` writes of run events raise BusUnavailable."""

    def __init__(self, inner: Bus, failures: int) -> None:
        self.inner, self.failures = inner, failures

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def publish_batch(self, *args: Any, **kwargs: Any) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise BusUnavailable("injected outage")
        await self.inner.publish_batch(*args, **kwargs)


async def test_events_lost_to_an_outage_are_retried_not_dropped(bus: Bus) -> None:
    flaky: Any = OutageBus(bus, failures=1)
    worker = Worker(flaky, EchoRunner(), agent_name="DevAgent", visibility_timeout_s=0.2)
    async with workers_running(worker):
        await send_envelope(bus, "survive")
        events = await wait_for_outputs(bus, "c1", 1)
    assert outputs(events) == ["echo: survive"]


async def test_prefix_is_applied_to_every_key(bus: Bus) -> None:
    worker = Worker(bus, EchoRunner(), agent_name="DevAgent", keys=Keys("tenant1:"))
    async with workers_running(worker):
        await send_envelope(bus, "prefixed", prefix="tenant1:")
        events = await wait_for_outputs(bus, "c1", 1, prefix="tenant1:")
    assert outputs(events) == ["echo: prefixed"]
    assert await bus.streams("chat:") == []
    assert await bus.streams("tenant1:chat:") == ["tenant1:chat:DevAgent"]


async def test_consumers_of_gone_workers_are_forgotten(bus: Bus) -> None:
    inbox = Keys().inbox("DevAgent")
    await bus.ensure_group(inbox, GROUP)
    await send_envelope(bus, "handled by a worker that then went away")
    [message] = await bus.consume(inbox, GROUP, "gone-worker", count=1, block_ms=100)
    await bus.complete(inbox, GROUP, "gone-worker", message.id)
    worker = Worker(
        bus, EchoRunner(), agent_name="DevAgent", visibility_timeout_s=0.2, forget_consumers_after_s=0.2
    )
    async with workers_running(worker):
        await asyncio.sleep(0.6)
        still_there = await bus.prune_consumers(inbox, GROUP, idle_ms=0)  # lists whoever was left
    assert "gone-worker" not in still_there
