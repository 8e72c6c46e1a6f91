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
    only_if_idle: bool = False,
) -> tuple[str, str]:
    """Atomically publish the `user_message` event and enqueue `envelope` (ordered by its
    conversation); return the event's cursor, after which everything about the message follows,
    and the inbox entry's id. Idempotent per envelope id: delivering the same id again returns
    the first ids and publishes nothing, so a caller that does not know whether a delivery landed
    may retry it. `only_if_idle`: raise `ConversationBusy` while an earlier message of the
    conversation is unfinished."""
    announcement = UserMessageEvent(
        conversation_id=envelope.conversation_id,
        message_id=envelope.id,
        sender=envelope.sender,
        recipient=envelope.recipient,
        content=envelope.content,
    )
    [cursor], inbox_id = await bus.publish_after(
        Publication(keys.events(envelope.conversation_id), [announcement.to_json()], ttl_s=events_ttl_s),
        keys.inbox(envelope.agent_name),
        envelope.to_json(),
        order_key=envelope.conversation_id,
        token=envelope.id,
        durable_timeout_ms=durable_timeout_ms,
        only_if_idle=only_if_idle,
    )
    return cursor, inbox_id
