"""Reads `control:{agent}` for a worker: every command published after the worker started."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from pydantic import ValidationError

from magent2.bus import Bus, BusUnavailable, Keys
from magent2.contracts import ControlCommand

log = logging.getLogger("magent2.worker")


async def listen(bus: Bus, keys: Keys, agent: str, handle: Callable[[ControlCommand], object]) -> None:
    stream = keys.control(agent)
    cursor: str | None = None
    while True:
        try:
            if cursor is None:
                cursor = await bus.last_id(stream)
            messages = await bus.read(stream, cursor, count=100, block_ms=1000)
        except BusUnavailable as exc:
            log.warning("control %s: %s; retrying", stream, exc)
            await asyncio.sleep(1.0)
            continue
        for message in messages:
            cursor = message.id
            try:
                command = ControlCommand.model_validate_json(message.payload)
            except ValidationError as exc:
                log.error("ignoring malformed control entry %s: %s", message.id, exc)
                continue
            handle(command)
