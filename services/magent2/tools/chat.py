"""chat_send: one agent messages another through the bus, optionally waiting for its answer.

Loop protection: every envelope carries `metadata.hops`; a reply chain stops at `max_hops`, and an
agent cannot message itself."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

from agents import RunContextWrapper, function_tool

from magent2.bus import Bus, Keys
from magent2.bus.delivery import deliver
from magent2.contracts import AGENT_NAME_PATTERN, MessageEnvelope, parse_event
from magent2.tools.output import as_json

HOPS = "hops"


class Chat:
    def __init__(
        self, bus: Bus, keys: Keys, agent_name: str, *, max_hops: int, events_ttl_s: int | None
    ) -> None:
        self.bus, self.keys, self.agent_name = bus, keys, agent_name
        self.max_hops, self.events_ttl_s = max_hops, events_ttl_s

    async def send(
        self,
        current: MessageEnvelope | None,
        recipient: str,
        content: str,
        *,
        conversation_id: str | None = None,
        wait: bool = False,
        timeout_s: float = 30.0,
    ) -> dict[str, Any]:
        name = recipient.removeprefix("agent:")
        if not re.fullmatch(AGENT_NAME_PATTERN, name):
            return {"sent": False, "error": f"invalid agent name {recipient!r}"}
        if name == self.agent_name:
            return {"sent": False, "error": "an agent cannot send a message to itself"}
        hops = int(current.metadata.get(HOPS, 0) if current else 0) + 1
        if hops > self.max_hops:
            return {"sent": False, "error": f"hop limit reached ({self.max_hops}); not forwarding"}
        conversation = conversation_id or (
            current.conversation_id if current else f"chat-{uuid.uuid4().hex[:12]}"
        )
        envelope = MessageEnvelope(
            conversation_id=conversation,
            sender=f"agent:{self.agent_name}",
            recipient=f"agent:{name}",
            content=content,
            metadata={HOPS: hops, "origin_message_id": current.id if current else None},
        )
        cursor, _ = await deliver(self.bus, self.keys, envelope, events_ttl_s=self.events_ttl_s)
        result: dict[str, Any] = {
            "sent": True,
            "message_id": envelope.id,
            "conversation_id": conversation,
            "recipient": name,
            "hops": hops,
        }
        if wait:
            result.update(await self._reply(self.keys.events(conversation), cursor, envelope.id, timeout_s))
        return result

    async def _reply(self, stream: str, cursor: str, message_id: str, timeout_s: float) -> dict[str, Any]:
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    for message in await self.bus.read(stream, cursor, block_ms=1000):
                        cursor = message.id
                        event = parse_event(message.payload)
                        if (
                            event.event in ("output", "error")
                            and getattr(event, "message_id", None) == message_id
                        ):
                            if event.event == "output":
                                return {"reply": event.text}
                            return {"error": f"{event.message}", "retryable": event.retryable}
        except TimeoutError:
            return {"timeout": True, "error": f"no reply within {timeout_s:g}s"}


def chat_tools(chat: Chat) -> list[Any]:
    @function_tool
    async def chat_send(
        ctx: RunContextWrapper[Any],
        recipient: str,
        content: str,
        conversation_id: str | None = None,
        wait: bool = False,
        timeout_s: float = 30.0,
    ) -> str:
        """Send a message to another agent.

        Args:
            recipient: the other agent's name (or agent:<name>).
            content: the message.
            conversation_id: defaults to the current conversation.
            wait: wait for the other agent's answer and return it.
            timeout_s: how long to wait, in seconds.
        """
        current = ctx.context if isinstance(ctx.context, MessageEnvelope) else None
        sent = await chat.send(
            current,
            recipient,
            content,
            conversation_id=conversation_id,
            wait=wait,
            timeout_s=min(timeout_s, 300),
        )
        return as_json(sent)

    return [chat_send]
