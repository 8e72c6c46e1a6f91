"""Delivering an envelope: announce it in its conversation, then queue it in the recipient's inbox."""

from __future__ import annotations

from magent2.bus.api import Bus, Keys, Publication
from magent2.contracts import MessageEnvelope, UserMessageEvent


async def deliver(
    bus: Bus,
    keys: Keys,
    envelope: MessageEnvelope,
    *,
    events_ttl_s: int | None,
    durable_timeout_ms: int | None = None,
) -> str:
    """Atomically publish the `user_message` event and enqueue `envelope` (ordered by its
    conversation); return the event's cursor, after which everything about the message follows.
    Idempotent per envelope id: delivering the same id again returns the first cursor and
    publishes nothing, so a caller that does not know whether a delivery landed may retry it."""
    announcement = UserMessageEvent(
        conversation_id=envelope.conversation_id,
        message_id=envelope.id,
        sender=envelope.sender,
        recipient=envelope.recipient,
        content=envelope.content,
    )
    [cursor], _ = await bus.publish_after(
        Publication(keys.events(envelope.conversation_id), [announcement.to_json()], ttl_s=events_ttl_s),
        keys.inbox(envelope.agent_name),
        envelope.to_json(),
        order_key=envelope.conversation_id,
        token=envelope.id,
        durable_timeout_ms=durable_timeout_ms,
    )
    return cursor
