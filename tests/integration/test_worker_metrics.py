"""A worker's Prometheus metrics after real runs through the Agents SDK (scripted model), on both
buses: runs by outcome, timings, tokens, tool calls, and the agent's queue."""

from __future__ import annotations

from typing import Any

from prometheus_client import generate_latest

from magent2.bus import Bus, Keys
from magent2.bus.api import GROUP
from tests.scripted_model import scripted_worker
from tests.support import eventually, send_envelope, wait_for_outputs, workers_running


def sample(worker: Any, name: str, **labels: str) -> float:
    value = worker.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else float(value)


async def test_runs_timings_tokens_tool_calls_and_queue_are_measured(bus: Bus) -> None:
    worker = scripted_worker(
        bus,
        AGENT_NAME="Metered",
        AGENT_MODEL="scripted-1",
        AGENT_TOOLS="terminal",
        TERMINAL_ALLOWED_COMMANDS="echo",
    )
    keys = Keys()
    await bus.ensure_group(keys.dead_letters("Metered"), GROUP)
    async with workers_running(worker):
        await send_envelope(bus, "hello", agent="Metered", conversation="m1")
        await send_envelope(bus, 'call terminal {"command": "echo hi"}', agent="Metered", conversation="m2")
        await send_envelope(bus, 'call terminal {"command": "rm -rf /"}', agent="Metered", conversation="m3")
        for conversation in ("m1", "m2", "m3"):
            await wait_for_outputs(bus, conversation, 1)

        async def measured() -> bool:
            await worker._measure_queue()  # the reclaim loop does this every few seconds
            return sample(worker, "magent2_worker_runs_total", outcome="output") == 3

        await eventually(measured, what="three runs counted")
    assert sample(worker, "magent2_worker_run_duration_seconds_count", outcome="output") == 3
    assert sample(worker, "magent2_worker_time_to_first_token_seconds_count") == 3
    assert sample(worker, "magent2_worker_queue_wait_seconds_count") == 3
    # one model turn for "hello", two for each tool call (the call, then the answer to its result)
    assert sample(worker, "magent2_worker_tokens_total", model="scripted-1", kind="input") == 7 * 5
    assert sample(worker, "magent2_worker_tokens_total", model="scripted-1", kind="output") == 3 * 5
    assert sample(worker, "magent2_worker_tool_calls_total", tool="terminal", outcome="success") == 1
    assert sample(worker, "magent2_worker_tool_calls_total", tool="terminal", outcome="error") == 1  # denied
    assert sample(worker, "magent2_worker_inbox_in_flight") == 0
    assert sample(worker, "magent2_worker_inbox_backlog") == 0
    assert sample(worker, "magent2_worker_approvals_pending") == 0
    text = generate_latest(worker.metrics.registry).decode()
    assert "magent2_worker_dead_letters 0.0" in text and "magent2_worker_completions_total" in text
