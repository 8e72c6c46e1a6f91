"""Fan-out of conversation streams inside one gateway process: a few reader tasks multiplex one
blocking XREAD over every stream some SSE client follows, and push what they read to each
follower's bounded buffer. So thousands of idle streams hold no Redis connection each, and a slow
client only ever loses its buffer (it then reads from its own cursor), never anyone's events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
import zlib
from collections import deque
from dataclasses import dataclass, field

from magent2.bus import Bus, BusMessage, BusUnavailable, Keys

log = logging.getLogger("magent2.gateway")


@dataclass(eq=False)
class Follower:
    """One SSE client's view of a stream: what the hub pushed since it subscribed."""

    stream: str
    limit: int
    buffer: deque[BusMessage] = field(default_factory=deque)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    overflowed: bool = False

    def push(self, messages: list[BusMessage]) -> None:
        if self.overflowed:
            return
        if len(self.buffer) + len(messages) > self.limit:
            self.overflowed = True  # too slow: it catches up from its own cursor instead
            self.buffer.clear()
        else:
            self.buffer.extend(messages)
        self.arrived.set()

    def take(self) -> tuple[list[BusMessage], bool]:
        """What arrived, and whether some was dropped (then re-read from the cursor)."""
        messages, overflowed = list(self.buffer), self.overflowed
        self.buffer.clear()
        self.overflowed = False
        self.arrived.clear()
        return messages, overflowed


@dataclass(eq=False)
class _Topic:
    cursor: str
    followers: set[Follower] = field(default_factory=set)


class _Reader:
    """One blocking XREAD over a shard of the followed streams, plus a wake stream of its own
    so a newly followed stream joins the read at once."""

    def __init__(self, hub: StreamHub, name: str) -> None:
        self.hub, self.wake = hub, hub.keys.wake(name)
        self.wake_cursor = "0-0"
        self.topics: dict[str, _Topic] = {}
        self.woken = False
        self.task: asyncio.Task[None] | None = None

    def follow(self, follower: Follower, cursor: str) -> None:
        topic = self.topics.get(follower.stream)
        new = topic is None
        if topic is None:
            topic = self.topics[follower.stream] = _Topic(cursor)
        topic.followers.add(follower)
        if self.task is None or self.task.done():  # its first read includes the new stream
            self.task = asyncio.create_task(self._read_forever(), name=f"hub:{self.wake}")
        elif new:
            self.nudge()

    def unfollow(self, follower: Follower) -> None:
        topic = self.topics.get(follower.stream)
        if topic is not None:
            topic.followers.discard(follower)
            if not topic.followers:
                del self.topics[follower.stream]

    def nudge(self) -> None:
        """End the running read early, so it is reissued with the new stream in it."""
        if not self.woken:
            self.woken = True
            chore = asyncio.create_task(self._publish_wake())
            self.hub.chores.add(chore)
            chore.add_done_callback(self.hub.chores.discard)

    async def _publish_wake(self) -> None:
        with contextlib.suppress(BusUnavailable):
            await self.hub.bus.publish(self.wake, "", ttl_s=60)

    async def _read_forever(self) -> None:
        backoff = 0.1
        while self.topics:
            cursors = {name: topic.cursor for name, topic in self.topics.items()}
            cursors[self.wake] = self.wake_cursor
            self.woken = False
            try:
                batch = await self.hub.bus.read_many(cursors, count=500, block_ms=self.hub.block_ms)
            except BusUnavailable as exc:
                log.warning("stream reader: %s; retrying in %.1fs", exc, backoff)
                self.hub.unavailable = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff, self.hub.unavailable = 0.1, False
            for name, messages in batch.items():
                if name == self.wake:
                    self.wake_cursor = messages[-1].id
                    with contextlib.suppress(BusUnavailable):
                        await self.hub.bus.delete(self.wake, [m.id for m in messages])
                    continue
                topic = self.topics.get(name)
                if topic is None:
                    continue
                topic.cursor = messages[-1].id
                for follower in topic.followers:
                    follower.push(messages)


class StreamHub:
    def __init__(
        self, bus: Bus, keys: Keys, *, readers: int = 2, block_ms: int = 5000, buffer: int = 2000
    ) -> None:
        self.bus, self.keys, self.block_ms, self.buffer = bus, keys, block_ms, buffer
        process = uuid.uuid4().hex[:12]
        self._readers = [_Reader(self, f"{process}-{i}") for i in range(readers)]
        self.chores: set[asyncio.Task[None]] = set()
        self.unavailable = False  # a reader cannot reach the bus right now

    def _reader(self, stream: str) -> _Reader:
        return self._readers[zlib.crc32(stream.encode()) % len(self._readers)]

    def follow(self, stream: str, cursor: str) -> Follower:
        """Start pushing entries of `stream` newer than the hub's cursor for it (at least as new
        as `cursor` when the stream was not followed yet); the follower reads older ones itself."""
        follower = Follower(stream, self.buffer)
        self._reader(stream).follow(follower, cursor)
        return follower

    def unfollow(self, follower: Follower) -> None:
        self._reader(follower.stream).unfollow(follower)

    @property
    def followed(self) -> int:
        return sum(len(reader.topics) for reader in self._readers)

    async def close(self) -> None:
        tasks = [r.task for r in self._readers if r.task is not None] + list(self.chores)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
