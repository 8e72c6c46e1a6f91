"""Server-sent events from a conversation stream: `id:` is the bus cursor, so clients resume
with `Last-Event-ID`; comment lines are heartbeats; a bus outage is ridden out, not fatal.

A stream first reads what is already stored after its cursor straight from the bus, then
follows the process's `StreamHub`; whenever its buffer overflowed, it reads from the bus again."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from magent2.bus import Bus, BusMessage, BusUnavailable
from magent2.bus.api import parse_id
from magent2.gateway.hub import StreamHub
from magent2.gateway.metrics import GatewayMetrics

log = logging.getLogger("magent2.gateway")

# Contracts declare `event` as the first field of every event type, so the first match is the
# top-level discriminator (quotes inside JSON strings are escaped and cannot match).
_EVENT_NAME = re.compile(rb'"event":"([a-z_]+)"')
_CREATED_AT = re.compile(rb'"created_at":"([^"]+)"')


def frame(message_id: str, payload: str) -> str:
    raw = payload.encode()
    found = _EVENT_NAME.search(raw)
    name = found.group(1).decode() if found else "message"
    return f"id: {message_id}\nevent: {name}\ndata: {payload}\n\n"


def _lag_seconds(payload: str) -> float | None:
    found = _CREATED_AT.search(payload.encode())
    if not found:
        return None
    created = datetime.fromisoformat(found.group(1).decode().replace("Z", "+00:00"))
    return (datetime.now(UTC) - created).total_seconds()


async def event_stream(
    bus: Bus,
    hub: StreamHub,
    stream: str,
    cursor: str,
    *,
    max_events: int | None,
    heartbeat_s: float,
    metrics: GatewayMetrics,
) -> AsyncIterator[str]:
    sent = 0
    backoff = 0.1
    catching_up = True
    metrics.open_streams.inc()
    follower = hub.follow(stream, cursor)  # before the first read, so nothing falls in between
    try:
        yield f"retry: 1000\n: stream {json.dumps(stream)} from {cursor}\n\n"
        while max_events is None or sent < max_events:
            room = 500 if max_events is None else min(500, max_events - sent)
            batch: list[BusMessage]
            if catching_up:
                try:
                    batch = await bus.read(stream, cursor, count=room)
                except BusUnavailable as exc:
                    log.warning("stream %s: %s; retrying in %.1fs", stream, exc, backoff)
                    yield ": bus unavailable, retrying\n\n"
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                backoff = 0.1
                catching_up = len(batch) == room
            else:
                if not follower.arrived.is_set():
                    try:
                        async with asyncio.timeout(heartbeat_s):
                            await follower.arrived.wait()
                    except TimeoutError:
                        yield ": bus unavailable, retrying\n\n" if hub.unavailable else ": ping\n\n"
                        continue
                pushed, catching_up = follower.take()
                after = parse_id(cursor)
                batch = [message for message in pushed if parse_id(message.id) > after][:room]
            if not batch:
                continue
            cursor = batch[-1].id
            sent += len(batch)
            metrics.events_sent.inc(len(batch))
            if (lag := _lag_seconds(batch[-1].payload)) is not None:
                metrics.event_lag.observe(max(lag, 0.0))
            yield "".join(frame(message.id, message.payload) for message in batch)
    finally:
        hub.unfollow(follower)
        metrics.open_streams.dec()
