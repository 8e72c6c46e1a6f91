"""Delivering an envelope: announce it in its conversation, then queue it in the recipient's
inbox; and waiting for its outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from magent2.bus.api import Bus, IndexUpdate, Keys, Publication
from magent2.contracts import (
    CancelledEvent,
    ErrorEvent,
    FinalEvent,
    MessageEnvelope,
    OutputEvent,
    UserMessageEvent,
    parse_event,
)


async def deliver(
    bus: Bus,
    keys: Keys,
    envelope: MessageEnvelope,
    *,
    events_ttl_s: int | None,
    durable_timeout_ms: int | None = None,
    only_if_idle: bool = False,
    index: Sequence[IndexUpdate] = (),
) -> tuple[str, str]:
    """Atomically publish the `user_message` event and enqueue `envelope` (ordered by its
    conversation); return the event's cursor, after which everything about the message follows,
    and the inbox entry's id. Idempotent per envelope id: delivering the same id again returns
    the first ids and publishes nothing, so a caller that does not know whether a delivery landed
    may retry it. `only_if_idle`: raise `ConversationBusy` while an earlier message of the
    conversation is unfinished. `index` (the observer's) is written in the same step."""
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
        index=index,
    )
    return cursor, inbox_id


async def outcome(
    bus: Bus, stream: str, cursor: str, message_id: str, *, timeout_s: float
) -> FinalEvent | None:
    """The final event (output, error or cancelled) of message `message_id` in the conversation
    `stream`, read after `cursor`; None if it does not come within `timeout_s`."""
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                for message in await bus.read(stream, cursor, block_ms=1000):
                    cursor = message.id
                    event = parse_event(message.payload)
                    if isinstance(event, OutputEvent | ErrorEvent | CancelledEvent) and (
                        event.message_id == message_id
                    ):
                        return event
    except TimeoutError:
        return None
