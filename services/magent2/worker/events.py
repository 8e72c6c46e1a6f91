"""Batching publisher for one run's events: bursts of tokens go out in one pipelined write."""

from __future__ import annotations

import asyncio

from magent2.bus import Bus
from magent2.contracts import FINAL_EVENTS, StreamEvent

COALESCE_S = 0.002  # what a token may wait for company before it is written


class EventSink:
    """`put` never waits on the network; a flusher task writes whatever has queued up since its
    last write in one `publish_many`. From the first final event (`output`/`error`) on, nothing
    more is flushed: `drain` stops the flusher and hands back what is unwritten, so the run's
    outcome is only ever published by the fenced completion, atomically with the ack."""

    def __init__(self, bus: Bus, stream: str, *, ttl_s: int | None) -> None:
        self.bus, self.stream, self.ttl_s = bus, stream, ttl_s
        self._buffer: list[str] = []
        self._held: list[str] = []  # the outcome and anything after it, kept for `drain`
        self._ready = asyncio.Event()
        self._draining = False
        self._flusher = asyncio.create_task(self._flush_forever(), name=f"events:{stream}")

    def put(self, event: StreamEvent) -> None:
        if self._flusher.done():
            self._flusher.result()  # surface a failed write to the run at once
        if self._held or event.event in FINAL_EVENTS:
            self._held.append(event.to_json())
            return
        self._buffer.append(event.to_json())
        self._ready.set()

    async def _flush_forever(self) -> None:
        while True:
            await self._ready.wait()
            # Coalesce for a moment: a burst of deltas becomes one write, and a run that ends
            # within the window hands everything to `drain` (one write with the completion).
            await asyncio.sleep(COALESCE_S)
            self._ready.clear()
            if self._draining:
                return
            batch, self._buffer = self._buffer, []
            if batch:
                await self.bus.publish_many(self.stream, batch, ttl_s=self.ttl_s)

    async def drain(self) -> list[str]:
        """Wait for a write in progress (re-raising its failure) and return what is left."""
        self._draining = True
        self._ready.set()
        await self._flusher
        rest, self._buffer, self._held = self._buffer + self._held, [], []
        return rest

    def abort(self) -> None:
        self._flusher.cancel()
