"""Fan-out of conversation streams inside one gateway process: a few reader tasks multiplex one
blocking XREAD over every stream some SSE client follows, and push what they read to each
follower's bounded buffer. So thousands of idle streams hold no Redis connection each, and a slow
client only ever loses its buffer (it then reads from its own cursor), never anyone's events.

Streams with recent events share one read (the active reader): a burst across many
conversations comes back in one reply instead of one wake-up per stream. Streams quiet for a
while move to the idle readers, shards that are re-sent to Redis only when one of their streams
wakes up (and moves back), so 10,000 idle streams do not ride along on every busy read."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
import zlib
from collections import deque
from dataclasses import dataclass, field

from magent2.bus import Bus, BusMessage, BusUnavailable, Keys
from magent2.bus.api import parse_id

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
    active_at: float = field(default_factory=time.monotonic)  # when its last event was read


class _Reader:
    """One blocking XREAD over the streams it holds, plus a wake stream of its own so a stream
    it takes on joins the read at once."""

    def __init__(self, hub: StreamHub, name: str) -> None:
        self.hub, self.wake = hub, hub.keys.wake(name)
        self.wake_cursor = "0-0"
        self.topics: dict[str, _Topic] = {}
        self.woken = False
        self.task: asyncio.Task[None] | None = None

    def take(self, stream: str, topic: _Topic) -> None:
        self.topics[stream] = topic
        if self.task is None or self.task.done():  # its first read includes the new stream
            self.task = asyncio.create_task(self._read_forever(), name=f"hub:{self.wake}")
        else:
            self.nudge()

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
                # a stream moved to another reader meanwhile is read there, from its cursor
                topic = self.topics.get(name)
                if topic is not None and (messages := _after(messages, topic.cursor)):
                    topic.cursor = messages[-1].id
                    for follower in topic.followers:
                        follower.push(messages)
                    self.hub.arrived(self, name, topic)
            if self is self.hub.active:
                self.hub.retire_quiet()


def _after(messages: list[BusMessage], cursor: str) -> list[BusMessage]:
    """`messages` newer than `cursor`: a read issued before a stream moved away and back may
    return what the other reader pushed already."""
    if parse_id(messages[0].id) > parse_id(cursor):
        return messages
    return [m for m in messages if parse_id(m.id) > parse_id(cursor)]


class StreamHub:
    """`readers` idle readers (streams sharded by name) and one active reader: a stream moves to
    the active reader with its first event and back after `idle_after_s` without one."""

    def __init__(
        self,
        bus: Bus,
        keys: Keys,
        *,
        readers: int = 2,
        block_ms: int = 5000,
        buffer: int = 2000,
        idle_after_s: float = 10.0,
    ) -> None:
        self.bus, self.keys, self.block_ms, self.buffer = bus, keys, block_ms, buffer
        self.idle_after_s = idle_after_s
        process = uuid.uuid4().hex[:12]
        self.active = _Reader(self, f"{process}-active")
        self._idle = [_Reader(self, f"{process}-{i}") for i in range(readers)]
        self._holder: dict[str, _Reader] = {}  # stream -> the reader that reads it
        self._retired_at = time.monotonic()
        self.chores: set[asyncio.Task[None]] = set()
        self.unavailable = False  # a reader cannot reach the bus right now

    def follow(self, stream: str, cursor: str) -> Follower:
        """Start pushing entries of `stream` newer than the hub's cursor for it (at least as new
        as `cursor` when the stream was not followed yet); the follower reads older ones itself."""
        follower = Follower(stream, self.buffer)
        reader = self._holder.get(stream)
        if reader is None:  # idle until its first event: thousands may be opened at once
            reader = self._holder[stream] = self._shard(stream)
            reader.take(stream, _Topic(cursor))
        reader.topics[stream].followers.add(follower)
        return follower

    def unfollow(self, follower: Follower) -> None:
        reader = self._holder.get(follower.stream)
        topic = reader.topics.get(follower.stream) if reader else None
        if reader is not None and topic is not None:
            topic.followers.discard(follower)
            if not topic.followers:
                del reader.topics[follower.stream]
                del self._holder[follower.stream]

    def arrived(self, reader: _Reader, stream: str, topic: _Topic) -> None:
        """`reader` just pushed events of `stream`: it is active now."""
        topic.active_at = time.monotonic()
        if reader is not self.active:
            self._move(stream, reader, self.active)

    def retire_quiet(self) -> None:
        """Move the active reader's streams that were quiet for `idle_after_s` to idle readers
        (looked at once a second)."""
        now = time.monotonic()
        if now - self._retired_at < 1.0:
            return
        self._retired_at = now
        quiet = [s for s, t in self.active.topics.items() if now - t.active_at >= self.idle_after_s]
        for stream in quiet:
            self._move(stream, self.active, self._shard(stream))

    def _shard(self, stream: str) -> _Reader:
        return self._idle[zlib.crc32(stream.encode()) % len(self._idle)]

    def _move(self, stream: str, source: _Reader, target: _Reader) -> None:
        target.take(stream, source.topics.pop(stream))
        self._holder[stream] = target

    @property
    def followed(self) -> int:
        return len(self._holder)

    async def close(self) -> None:
        readers = [self.active, *self._idle]
        tasks = [r.task for r in readers if r.task is not None] + list(self.chores)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
