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
from typing import Any

from magent2.bus import Bus, BusMessage, BusUnavailable
from magent2.bus.api import parse_id
from magent2.gateway.hub import StreamHub
from magent2.gateway.metrics import GatewayMetrics

log = logging.getLogger("magent2.gateway")

# Contracts declare `event` as the first field of every event type, so the first match is the
# top-level discriminator (quotes inside JSON strings are escaped and cannot match).
_EVENT_NAME = re.compile(rb'"event":"([a-z_]+)"')
_CREATED_AT = re.compile(rb'"created_at":"([^"]+)"')


def frame(message_id: str, payload: str, max_bytes: int | None = None) -> str:
    raw = payload.encode()
    found = _EVENT_NAME.search(raw)
    name = found.group(1).decode() if found else "message"
    if max_bytes is not None and len(raw) > max_bytes:
        payload = shorten(payload, max_bytes)
    return f"id: {message_id}\nevent: {name}\ndata: {payload}\n\n"


def shorten(payload: str, max_bytes: int) -> str:
    """The event with its longest text fields cut (each ending in a marker that says how much
    was cut) until it fits in `max_bytes`, plus `"truncated": true`; always valid JSON. The full
    event stays on the bus (`GET /conversations/{id}`)."""
    event = json.loads(payload)
    event["truncated"] = True
    while True:
        text = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
        over = len(text.encode()) - max_bytes
        holder, key, longest = _longest_text(event)
        if over <= 0 or holder is None or len(longest) < 64:
            return text  # fits, or nothing long is left to cut
        cut = min(len(longest) - 32, over + 48)  # a character is at least a byte; 48 for the marker
        holder[key] = f"{longest[: len(longest) - cut]}…[truncated {cut} characters]"


def _longest_text(value: Any) -> tuple[Any, Any, str]:
    best: tuple[Any, Any, str] = (None, None, "")
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = (value, key, item) if isinstance(item, str) else _longest_text(item)
        if len(found[2]) > len(best[2]):
            best = found
    return best


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
    max_event_bytes: int | None = None,
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
            yield "".join(frame(message.id, message.payload, max_event_bytes) for message in batch)
    finally:
        hub.unfollow(follower)
        metrics.open_streams.dec()
