"""The worker's event writer: a burst of one run's deltas becomes one token event, never with its
text changed or its order against other events; deltas apart stay events of their own."""

from __future__ import annotations

import asyncio

from magent2.bus import InMemoryBus
from magent2.contracts import TokenEvent, ToolStepEvent, parse_event
from magent2.worker.events import COALESCE_S, EventWriter

STREAM = "stream:c1"


def token(text: str, index: int) -> TokenEvent:
    return TokenEvent(conversation_id="c1", text=text, index=index)


async def written(bus: InMemoryBus) -> list[tuple[str, str, int | None]]:
    events = [parse_event(m.payload) for m in await bus.read(STREAM)]
    return [(e.event, getattr(e, "text", getattr(e, "name", "")), getattr(e, "index", None)) for e in events]


async def test_deltas_within_one_window_become_one_token_event_in_order() -> None:
    bus = InMemoryBus()
    writer = EventWriter(bus)
    sink = writer.sink(STREAM, ttl_s=None)
    for i, text in enumerate(["Hel", "lo ", "there"]):
        sink.put(token(text, i))
    sink.put(ToolStepEvent(conversation_id="c1", name="terminal", status="start"))
    sink.put(token(".", 3))
    sink.put(token("..", 4))
    await asyncio.sleep(COALESCE_S * 5)
    assert await written(bus) == [
        ("token", "Hello there", 0),
        ("tool_step", "terminal", None),
        ("token", "...", 3),
    ]
    await writer.close()


async def test_deltas_a_window_apart_stay_separate_and_the_rest_goes_with_the_outcome() -> None:
    bus = InMemoryBus()
    writer = EventWriter(bus)
    sink = writer.sink(STREAM, ttl_s=None)
    sink.put(token("a", 0))
    await asyncio.sleep(COALESCE_S * 5)
    sink.put(token("b", 1))
    await asyncio.sleep(COALESCE_S * 5)
    sink.put(token("c", 2))
    sink.put(token("d", 3))
    rest = await sink.drain()  # not written by the flusher: the completion publishes it
    assert await written(bus) == [("token", "a", 0), ("token", "b", 1)]
    assert [(e.text, e.index) for e in map(parse_event, rest)] == [("cd", 2)]  # type: ignore[union-attr]
    assert sink.text == "abcd"
    await writer.close()
