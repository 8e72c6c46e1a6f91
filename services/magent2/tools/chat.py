"""chat_send: one agent messages another through the bus, optionally waiting for its answer.

Loop protection: every envelope carries `metadata.hops`; a reply chain stops at `max_hops`, and an
agent cannot message itself."""

from __future__ import annotations

import re
import uuid
from typing import Any

from agents import RunContextWrapper, function_tool

from magent2.bus import Bus, Keys
from magent2.bus.delivery import deliver, outcome
from magent2.contracts import AGENT_NAME_PATTERN, CONVERSATION_ID_PATTERN, FinalEvent, MessageEnvelope
from magent2.observer.index import PARENT, ObserverIndex
from magent2.tools.output import as_json

HOPS = "hops"


def next_hop(current: MessageEnvelope | None) -> int:
    """The hop count of a message sent while handling `current` (1 when not inside a run)."""
    return int(current.metadata.get(HOPS, 0) if current else 0) + 1


class Chat:
    def __init__(
        self,
        bus: Bus,
        keys: Keys,
        agent_name: str,
        *,
        max_hops: int,
        events_ttl_s: int | None,
        index: ObserverIndex,
    ) -> None:
        self.bus, self.keys, self.agent_name, self.index = bus, keys, agent_name, index
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
        hops = next_hop(current)
        if hops > self.max_hops:
            return {"sent": False, "error": f"hop limit reached ({self.max_hops}); not forwarding"}
        conversation = conversation_id or (
            current.conversation_id if current else f"chat-{uuid.uuid4().hex[:12]}"
        )
        if not re.fullmatch(CONVERSATION_ID_PATTERN, conversation):
            return {"sent": False, "error": f"invalid conversation id {conversation!r}"}
        metadata: dict[str, Any] = {HOPS: hops, "origin_message_id": current.id if current else None}
        if current and conversation != current.conversation_id:
            metadata[PARENT] = current.conversation_id
        envelope = MessageEnvelope(
            conversation_id=conversation,
            sender=f"agent:{self.agent_name}",
            recipient=f"agent:{name}",
            content=content,
            metadata=metadata,
        )
        cursor, _ = await deliver(
            self.bus, self.keys, envelope, events_ttl_s=self.events_ttl_s, index=self.index.updates(envelope)
        )
        result: dict[str, Any] = {
            "sent": True,
            "message_id": envelope.id,
            "conversation_id": conversation,
            "recipient": name,
            "hops": hops,
        }
        if wait:
            final = await outcome(
                self.bus, self.keys.events(conversation), cursor, envelope.id, timeout_s=timeout_s
            )
            result.update(reply_of(final, timeout_s))
        return result


def reply_of(final: FinalEvent | None, timeout_s: float) -> dict[str, Any]:
    """What a waiting tool reports of another agent's outcome."""
    if final is None:
        return {"timeout": True, "error": f"no reply within {timeout_s:g}s"}
    if final.event == "output":
        return {"reply": final.text}
    if final.event == "cancelled":
        return {"error": f"cancelled: {final.reason}", "partial_reply": final.partial_text}
    return {"error": final.message, "retryable": final.retryable}


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
