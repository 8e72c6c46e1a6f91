"""`Bus` in process memory with the semantics of `RedisStreamsBus` (local mode, tests)."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from magent2.bus.api import (
    LATEST,
    START,
    Admission,
    Bus,
    BusMessage,
    Completion,
    ConsumerState,
    ConversationBusy,
    IndexUpdate,
    Parking,
    Publication,
    QueueHealth,
    Verdict,
    parse_id,
)
from magent2.bus.tallies import Tallies

_Id = tuple[int, int]


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


@dataclass
class _Pending:
    consumer: str
    delivered_ms: int
    deliveries: int = 1


@dataclass
class _Group:
    last_delivered: _Id = (0, 0)
    pending: dict[str, _Pending] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)  # consumer -> last activity (ms)


@dataclass
class _Stream:
    ids: list[_Id] = field(default_factory=list)
    entries: list[BusMessage] = field(default_factory=list)
    last: _Id = (0, 0)
    groups: dict[str, _Group] = field(default_factory=dict)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def exists(self) -> bool:
        """As in Redis: written to once, or given a group (a blocking reader's wait creates none)."""
        return self.last != (0, 0) or bool(self.groups)

    def after(self, cursor: _Id, count: int) -> list[BusMessage]:
        start = bisect.bisect_right(self.ids, cursor)
        return self.entries[start : start + count]

    def get(self, message_id: str) -> BusMessage | None:
        at = bisect.bisect_left(self.ids, parse_id(message_id))
        if at < len(self.ids) and self.entries[at].id == message_id:
            return self.entries[at]
        return None


def _forget_expired(markers: dict[tuple[str, str], Any], now: float) -> None:
    """Drop expired de-duplication markers once there are many, as Redis expires its keys."""
    if len(markers) >= 10_000:
        for key in [key for key, value in markers.items() if _expiry(value) <= now]:
            del markers[key]


def _expiry(value: float | tuple[float, list[str]]) -> float:
    return value if isinstance(value, float) else value[0]


class InMemoryBus(Bus):
    def __init__(self, *, maxlen: int = 100_000) -> None:
        self.maxlen = maxlen
        self._streams: dict[str, _Stream] = {}
        self._order: dict[tuple[str, str], list[str]] = {}
        self._values: dict[str, tuple[float | None, str]] = {}
        self._done: dict[tuple[str, str], float] = {}
        self._accepted: dict[tuple[str, str], tuple[float, list[str]]] = {}
        self._any_change = asyncio.Condition()  # for read_many over many streams
        self._tallies = Tallies()

    def _stream(self, name: str) -> _Stream:
        stream = self._streams.get(name)
        if stream is None:
            stream = self._streams[name] = _Stream()
        return stream

    def _append(self, stream: _Stream, payload: str, *, first_in_order: bool = False) -> str:
        ms = int(time.time() * 1000)
        new_id = (ms, 0) if ms > stream.last[0] else (stream.last[0], stream.last[1] + 1)
        stream.last = new_id
        message = BusMessage(f"{new_id[0]}-{new_id[1]}", payload, first_in_order)
        stream.ids.append(new_id)
        stream.entries.append(message)
        if len(stream.entries) > self.maxlen:
            del stream.ids[: -self.maxlen], stream.entries[: -self.maxlen]
        return message.id

    async def _notify(self, stream: _Stream) -> None:
        async with stream.changed:
            stream.changed.notify_all()
        async with self._any_change:
            self._any_change.notify_all()

    # -- streams --
    async def publish(
        self, stream: str, payload: str, *, order_key: str | None = None, ttl_s: int | None = None
    ) -> str:
        return await self._publish(stream, payload, order_key)

    async def _publish(
        self, stream: str, payload: str, order_key: str | None, *, first_in_order: bool = False
    ) -> str:
        target = self._stream(stream)
        message_id = self._append(target, payload, first_in_order=first_in_order)
        if order_key is not None:
            self._order.setdefault((stream, order_key), []).append(message_id)
        await self._notify(target)
        return message_id

    async def publish_after(
        self,
        first: Publication,
        stream: str,
        payload: str,
        *,
        order_key: str,
        token: str | None = None,
        token_ttl_s: int = 86_400,
        durable_timeout_ms: int | None = None,
        only_if_idle: bool = False,
        index: Sequence[IndexUpdate] = (),
    ) -> tuple[list[str], str]:
        now = time.monotonic()
        if token is not None:
            seen = self._accepted.get((stream, token))
            if seen is not None and seen[0] > now:
                return seen[1][:-1], seen[1][-1]
        idle = not await self.unfinished(stream, order_key)
        if only_if_idle and not idle:
            raise ConversationBusy(f"an earlier message under {order_key!r} is unfinished")
        first_ids = await self.publish_many(first.stream, first.payloads)
        done = token is not None and self._done.get((stream, token), 0.0) > now
        message_id = await self._publish(stream, payload, order_key, first_in_order=idle and not done)
        self._tallies.apply(index)
        if token is not None:
            _forget_expired(self._accepted, now)
            self._accepted[(stream, token)] = (now + token_ttl_s, [*first_ids, message_id])
        return first_ids, message_id

    async def tally(self, key: str) -> dict[str, str]:
        return self._tallies.hash(key)

    async def ranked(
        self, key: str, *, below: float | None = None, limit: int = 50
    ) -> list[tuple[str, float]]:
        return self._tallies.ranked(key, below, limit)

    async def ranked_count(self, key: str) -> int:
        return self._tallies.count(key)

    async def publish_many(
        self, stream: str, payloads: Sequence[str], *, ttl_s: int | None = None
    ) -> list[str]:
        target = self._stream(stream)
        ids = [self._append(target, payload) for payload in payloads]
        await self._notify(target)
        return ids

    async def unfinished(self, stream: str, order_key: str) -> int:
        return len(self._order.get((stream, order_key), []))

    async def put_value(self, key: str, value: str, *, ttl_s: int | None = None) -> None:
        self._values[key] = (None if ttl_s is None else time.monotonic() + ttl_s, value)

    async def get_value(self, key: str) -> str | None:
        expires, value = self._values.get(key, (None, None))
        return None if expires is not None and expires < time.monotonic() else value

    async def publish_batch(self, publications: Sequence[Publication]) -> None:
        for publication in publications:
            await self.publish_many(publication.stream, publication.payloads, ttl_s=publication.ttl_s)

    async def read(
        self, stream: str, after: str = START, *, count: int = 500, block_ms: int | None = None
    ) -> list[BusMessage]:
        target = self._stream(stream)
        cursor = target.last if after == LATEST else parse_id(after)
        found = target.after(cursor, count)
        if found or not block_ms:
            return found
        async with target.changed:
            try:
                await asyncio.wait_for(
                    target.changed.wait_for(lambda: bool(target.after(cursor, 1))), block_ms / 1000
                )
            except TimeoutError:
                return []
        return target.after(cursor, count)

    async def read_many(
        self, cursors: Mapping[str, str], *, count: int = 500, block_ms: int | None = None
    ) -> dict[str, list[BusMessage]]:
        def found() -> dict[str, list[BusMessage]]:
            return {
                name: entries
                for name, after in cursors.items()
                if name in self._streams
                and (entries := self._streams[name].after(self._cursor(name, after), count))
            }

        if (ready := found()) or not block_ms:
            return ready
        async with self._any_change:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._any_change.wait_for(lambda: bool(found())), block_ms / 1000)
        return found()

    def _cursor(self, stream: str, after: str) -> _Id:
        return self._streams[stream].last if after == LATEST else parse_id(after)

    async def last_id(self, stream: str) -> str:
        last = self._streams[stream].last if stream in self._streams else (0, 0)
        return f"{last[0]}-{last[1]}"

    async def exists(self, stream: str) -> bool:
        return stream in self._streams and self._streams[stream].exists

    async def length(self, stream: str) -> int:
        return len(self._streams[stream].entries) if stream in self._streams else 0

    async def delete(self, stream: str, ids: Sequence[str]) -> int:
        target = self._streams.get(stream)
        if target is None:
            return 0
        doomed = set(ids)
        kept = [(i, m) for i, m in zip(target.ids, target.entries, strict=True) if m.id not in doomed]
        removed = len(target.entries) - len(kept)
        target.ids = [i for i, _ in kept]
        target.entries = [m for _, m in kept]
        return removed

    async def streams(self, prefix: str) -> list[str]:
        return sorted(name for name, s in self._streams.items() if name.startswith(prefix) and s.exists)

    # -- consumer groups --
    async def ensure_group(self, stream: str, group: str) -> None:
        self._stream(stream).groups.setdefault(group, _Group())

    async def consume(
        self, stream: str, group: str, consumer: str, *, count: int, block_ms: int
    ) -> list[BusMessage]:
        target = self._stream(stream)
        state = target.groups[group]
        state.seen[consumer] = _now_ms()

        def take() -> list[BusMessage]:
            found = target.after(state.last_delivered, count)
            if found:
                state.last_delivered = parse_id(found[-1].id)
                for message in found:
                    state.pending[message.id] = _Pending(consumer, _now_ms())
            return found

        if (found := take()) or not block_ms:
            return found
        async with target.changed:
            try:
                await asyncio.wait_for(
                    target.changed.wait_for(lambda: bool(target.after(state.last_delivered, 1))),
                    block_ms / 1000,
                )
            except TimeoutError:
                return []
        return take()

    async def reclaim(
        self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int
    ) -> list[BusMessage]:
        target = self._stream(stream)
        target.groups[group].seen[consumer] = _now_ms()
        pending = target.groups[group].pending
        now, claimed = _now_ms(), list[BusMessage]()
        for message_id in sorted(pending, key=parse_id):
            if len(claimed) == count:
                break
            if now - pending[message_id].delivered_ms < min_idle_ms:
                continue
            message = target.get(message_id)
            if message is None:  # trimmed meanwhile, as XAUTOCLAIM does
                del pending[message_id]
                continue
            pending[message_id] = _Pending(consumer, now, pending[message_id].deliveries + 1)
            claimed.append(message)
        return claimed

    async def touch(self, stream: str, group: str, consumer: str, ids: Sequence[str]) -> list[str]:
        return self._renew(stream, group, consumer, ids, idle_ms=0)

    async def release(
        self, stream: str, group: str, consumer: str, ids: Sequence[str], *, idle_ms: int
    ) -> None:
        self._renew(stream, group, consumer, ids, idle_ms=idle_ms)

    def _holds(self, stream: str, group: str, consumer: str, message_id: str) -> _Pending | None:
        held = self._stream(stream).groups[group].pending.get(message_id)
        return held if held is not None and held.consumer == consumer else None

    def _renew(
        self, stream: str, group: str, consumer: str, ids: Sequence[str], *, idle_ms: int
    ) -> list[str]:
        lost = []
        for message_id in ids:
            held = self._holds(stream, group, consumer, message_id)
            if held is None:
                lost.append(message_id)
            else:
                held.delivered_ms = _now_ms() - idle_ms
        return lost

    async def prune_consumers(self, stream: str, group: str, *, idle_ms: int) -> list[str]:
        state = self._stream(stream).groups.get(group)
        if state is None:
            return []
        holding = {p.consumer for p in state.pending.values()}
        now = _now_ms()
        gone = [name for name, seen in state.seen.items() if name not in holding and now - seen >= idle_ms]
        for name in gone:
            del state.seen[name]
        return gone

    async def queue_health(self, stream: str, group: str) -> QueueHealth:
        target = self._streams.get(stream)
        state = target.groups.get(group) if target else None
        if target is None or state is None:
            return QueueHealth(0, 0, 0.0, 0, [])
        now = _now_ms()
        held = [p.consumer for p in state.pending.values()]
        oldest = min(state.pending, key=parse_id, default=None)
        return QueueHealth(
            backlog=len(target.ids) - bisect.bisect_right(target.ids, state.last_delivered),
            in_flight=len(state.pending),
            oldest_pending_s=max(0.0, time.time() - parse_id(oldest)[0] / 1000) if oldest else 0.0,
            last_entry_ms=target.ids[-1][0] if target.ids else 0,
            consumers=[ConsumerState(c, now - seen, held.count(c)) for c, seen in state.seen.items()],
        )

    async def admit(
        self,
        stream: str,
        group: str,
        consumer: str,
        message_id: str,
        *,
        order_key: str,
        token: str,
        max_deliveries: int,
    ) -> Admission:
        held = self._holds(stream, group, consumer, message_id)
        if held is None:
            return "lost"
        expires = self._done.get((stream, token))
        if expires is not None and expires > time.monotonic():
            return "done"
        if held.deliveries > max_deliveries:
            return "dead"
        queue = self._order.get((stream, order_key), [])
        target = self._stream(stream)
        while queue and queue[0] != message_id and target.get(queue[0]) is None:
            queue.pop(0)  # trimmed away before anyone ran it
        if not queue or queue[0] == message_id:
            return "run"
        # A resumed run holds the head with a newer id than messages queued behind it.
        return "wait" if message_id in queue or parse_id(queue[0]) < parse_id(message_id) else "run"

    async def complete(
        self,
        stream: str,
        group: str,
        consumer: str,
        message_id: str,
        *,
        order_key: str | None = None,
        done_token: str | None = None,
        done_ttl_s: int = 86_400,
        publish: Sequence[Publication] = (),
        park: Parking | None = None,
    ) -> Completion:
        now = time.monotonic()
        done_before = done_token is not None and self._done.get((stream, done_token), 0.0) > now
        if self._holds(stream, group, consumer, message_id) is None:
            return "duplicate" if done_before else "lost"
        if not done_before:
            for publication in publish:
                if publication.payloads:
                    await self.publish_many(publication.stream, publication.payloads)
            if done_token is not None:
                _forget_expired(self._done, now)
                self._done[(stream, done_token)] = now + done_ttl_s
            if park is not None:
                await self.put_value(park.record_key, park.record, ttl_s=park.ttl_s)
                self._tallies.scores(park.due_key)[park.due_member] = park.due_at
        self._stream(stream).groups[group].pending.pop(message_id, None)
        queue = self._order.get((stream, order_key)) if order_key is not None else None
        if queue and message_id in queue and park is None:
            queue.remove(message_id)
        return "duplicate" if done_before else "ok"

    async def decide(
        self,
        record_key: str,
        call_id: str,
        decision: str,
        *,
        event: Publication,
        order_key: str,
        inbox: str,
        due_key: str,
        due_member: str,
    ) -> tuple[Verdict, str | None]:
        raw = await self.get_value(record_key)
        if raw is None:
            return "unknown", None
        record = json.loads(raw)
        if call_id not in {call["call_id"] for call in record["calls"]}:
            return "unknown", None
        if call_id in record["decisions"]:
            return "decided", json.dumps(record["decisions"][call_id])
        record["decisions"][call_id] = json.loads(decision)
        await self.publish_many(event.stream, event.payloads)
        expires = self._values[record_key][0]
        if any(call["call_id"] not in record["decisions"] for call in record["calls"]):
            self._values[record_key] = (expires, json.dumps(record))
            return "pending", None
        resumed = self._append(self._stream(inbox), record["resume"])
        await self._notify(self._stream(inbox))
        queue = self._order.setdefault((inbox, order_key), [])
        if record["inbox_id"] in queue:
            queue[queue.index(record["inbox_id"])] = resumed
        else:
            queue.insert(0, resumed)
        self._tallies.scores(due_key).pop(due_member, None)
        record["resumed"] = resumed
        self._values[record_key] = (expires, json.dumps(record))
        return "resumed", resumed

    async def due(self, due_key: str, now: float, *, count: int = 100) -> list[str]:
        members = self._tallies.scores(due_key)
        return sorted((m for m, at in members.items() if at <= now), key=members.__getitem__)[:count]

    async def ping(self) -> None:
        return None
