"""signal_send / signal_wait: agents coordinate through named topics (`signal:{topic}` streams).

A wait returns the first signal after a cursor, the topic's start by default, so a signal sent
before anyone waits is not missed; pass the returned `cursor` to wait for the next one."""

from __future__ import annotations

import re
from typing import Any

from agents import function_tool

from magent2.bus import START, Bus, Keys
from magent2.bus.api import is_cursor
from magent2.contracts import SIGNAL_TOPIC_PATTERN, Signal
from magent2.tools.output import as_json

MAX_WAIT_S = 300.0


class Signals:
    def __init__(
        self,
        bus: Bus,
        keys: Keys,
        agent_name: str,
        *,
        topic_prefix: str = "",
        payload_max_bytes: int = 64 * 1024,
        ttl_s: int | None = None,
    ) -> None:
        self.bus, self.keys, self.agent_name = bus, keys, agent_name
        self.topic_prefix, self.payload_max_bytes, self.ttl_s = topic_prefix, payload_max_bytes, ttl_s

    def _topic_problem(self, topic: str) -> str | None:
        if not re.fullmatch(SIGNAL_TOPIC_PATTERN, topic):
            return f"invalid topic {topic!r}: letters, digits and . _ : / - (up to 128)"
        if not topic.startswith(self.topic_prefix):
            return f"topic {topic!r} is not allowed: topics must start with {self.topic_prefix!r}"
        return None

    async def send(self, topic: str, payload: str) -> dict[str, Any]:
        if problem := self._topic_problem(topic):
            return {"sent": False, "error": problem}
        size = len(payload.encode())
        if size > self.payload_max_bytes:
            return {"sent": False, "error": f"payload is {size} bytes; the limit is {self.payload_max_bytes}"}
        signal = Signal(topic=topic, sender=f"agent:{self.agent_name}", payload=payload)
        cursor = await self.bus.publish(self.keys.signal(topic), signal.to_json(), ttl_s=self.ttl_s)
        return {"sent": True, "topic": topic, "cursor": cursor}

    async def wait(self, topic: str, after: str | None = None, timeout_s: float = 30.0) -> dict[str, Any]:
        if problem := self._topic_problem(topic):
            return {"received": False, "error": problem}
        if after is not None and not is_cursor(after):
            return {"received": False, "error": f"invalid cursor {after!r}: pass one a wait returned"}
        deadline_ms = int(min(max(timeout_s, 0.0), MAX_WAIT_S) * 1000)
        found = await self.bus.read(
            self.keys.signal(topic), after or START, count=1, block_ms=deadline_ms or None
        )
        if not found:
            return {
                "received": False,
                "timeout": True,
                "error": f"no signal on {topic!r} within {timeout_s:g}s",
            }
        signal = Signal.model_validate_json(found[0].payload)
        return {
            "received": True,
            "topic": topic,
            "cursor": found[0].id,
            "sender": signal.sender,
            "payload": signal.payload,
        }


def signal_tools(signals: Signals) -> list[Any]:
    @function_tool
    async def signal_send(topic: str, payload: str) -> str:
        """Publish a signal on a topic, for any agent waiting on it.

        Args:
            topic: the topic's name (letters, digits and . _ : / -).
            payload: the text to send (JSON is fine).
        """
        return as_json(await signals.send(topic, payload))

    @function_tool
    async def signal_wait(topic: str, after: str | None = None, timeout_s: float = 30.0) -> str:
        """Wait for the next signal on a topic and return it with its cursor.

        Args:
            topic: the topic's name.
            after: a cursor returned by an earlier wait; without it, the topic's first signal.
            timeout_s: how long to wait, in seconds (at most 300).
        """
        return as_json(await signals.wait(topic, after, timeout_s))

    return [signal_send, signal_wait]
