"""The Agents SDK's traces (prompts, tool calls) leave the machine only when the user opts in:
OPENAI_TRACING=1. Checked with a trace processor of our own in place of the SDK's OpenAI upload."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from agents.tracing import TracingProcessor, get_trace_provider, set_trace_processors

from magent2.bus import InMemoryBus
from tests.scripted_model import scripted_worker
from tests.support import send_envelope, wait_for_outputs, workers_running


class Collected(TracingProcessor):
    def __init__(self) -> None:
        self.traces: list[Any] = []

    def on_trace_start(self, trace: Any) -> None:
        self.traces.append(trace)

    def on_trace_end(self, trace: Any) -> None: ...
    def on_span_start(self, span: Any) -> None: ...
    def on_span_end(self, span: Any) -> None: ...
    def shutdown(self) -> None: ...
    def force_flush(self) -> None: ...


@pytest.fixture
def collected() -> Iterator[Collected]:
    """Tracing switched on for the SDK as a whole (the suite turns it off), exporting to us only."""
    processor, provider = Collected(), get_trace_provider()
    set_trace_processors([processor])
    provider.set_disabled(False)
    try:
        yield processor
    finally:
        provider.set_disabled(True)
        set_trace_processors([])


@pytest.mark.parametrize(("env", "traced"), [({}, False), ({"OPENAI_TRACING": "1"}, True)])
async def test_runs_are_traced_only_when_opted_in(
    collected: Collected, env: dict[str, str], traced: bool
) -> None:
    bus = InMemoryBus()
    async with workers_running(scripted_worker(bus, **env)):
        await send_envelope(bus, "hello")
        await wait_for_outputs(bus, "c1", 1)
    assert bool(collected.traces) is traced
