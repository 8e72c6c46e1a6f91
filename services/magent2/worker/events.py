"""Batching publisher for one run's events: bursts of tokens go out in one pipelined write."""

from __future__ import annotations

import asyncio

from magent2.bus import Bus
from magent2.contracts import StreamEvent


class EventSink:
    """`put` never waits on the network; a flusher task writes whatever has queued up since its
    last write in one `publish_many`. `close` flushes the rest and re-raises a write failure."""

    def __init__(self, bus: Bus, stream: str, *, ttl_s: int | None) -> None:
        self._bus, self._stream, self._ttl_s = bus, stream, ttl_s
        self._buffer: list[str] = []
        self._ready = asyncio.Event()
        self._closing = False
        self._flusher = asyncio.create_task(self._flush_forever(), name=f"events:{stream}")

    def put(self, event: StreamEvent) -> None:
        if self._flusher.done():
            self._flusher.result()  # surface a failed write to the run at once
        self._buffer.append(event.to_json())
        self._ready.set()

    async def _flush_forever(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            batch, self._buffer = self._buffer, []
            if batch:
                await self._bus.publish_many(self._stream, batch, ttl_s=self._ttl_s)
            if self._closing and not self._buffer:
                return

    async def close(self) -> None:
        self._closing = True
        self._ready.set()
        await self._flusher

    def abort(self) -> None:
        self._flusher.cancel()
