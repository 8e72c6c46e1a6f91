"""Approvals of tool calls. A run whose tool call needs a person's decision is parked: its
inbox entry is acked, its SDK RunState is stored under `approval:{conversation_id}` and the
conversation keeps its turn, so no worker waits and nothing else of the conversation runs. Each
decision (`POST /conversations/{id}/approvals/{call_id}`, or `onTimeout` once it expires) is
recorded atomically; the last one enqueues a `resume` entry that any worker picks up."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import ValidationError

from magent2.bus import Bus, Keys, Publication
from magent2.bus.api import Parking, Verdict
from magent2.contracts import (
    ApprovalCall,
    ApprovalRequiredEvent,
    ApprovalResolvedEvent,
    Decision,
    DecisionRecord,
    MessageEnvelope,
    PendingApproval,
)

log = logging.getLogger("magent2.control")

RESUME = "resume"  # the content of a resume envelope (type `control`)
KEEP_RECORD_S = 86_400  # after expiry, for late readers


def is_resume(envelope: MessageEnvelope) -> bool:
    return envelope.type == "control" and envelope.content == RESUME


async def pending(bus: Bus, keys: Keys, conversation_id: str) -> PendingApproval | None:
    raw = await bus.get_value(keys.approval(conversation_id))
    if raw is None:
        return None
    try:
        return PendingApproval.model_validate_json(raw)
    except ValidationError:
        log.error("unreadable approval record of %s", conversation_id)
        return None


async def decide(
    bus: Bus,
    keys: Keys,
    record: PendingApproval,
    call_id: str,
    decision: Decision,
    *,
    reason: str = "",
    by: Literal["user", "timeout"] = "user",
    events_ttl_s: int | None = None,
) -> tuple[Verdict, DecisionRecord | None]:
    """Record one decision (publishing `approval_resolved`); the earlier decision for "decided"."""
    made = DecisionRecord(decision=decision, reason=reason, by=by)
    resolved = ApprovalResolvedEvent(
        conversation_id=record.conversation_id,
        message_id=record.message_id,
        call_id=call_id,
        decision=decision,
        reason=reason,
        by=made.by,
    )
    verdict, extra = await bus.decide(
        keys.approval(record.conversation_id),
        call_id,
        made.to_json(),
        event=Publication(keys.events(record.conversation_id), [resolved.to_json()], events_ttl_s),
        order_key=record.conversation_id,
        inbox=keys.inbox(record.agent),
        due_key=keys.approvals_due(record.agent),
        due_member=record.conversation_id,
    )
    earlier = DecisionRecord.model_validate_json(extra) if verdict == "decided" and extra else None
    return verdict, earlier


class Approvals:
    """A worker's side: parking a paused run, and applying `onTimeout` to expired ones."""

    def __init__(
        self,
        bus: Bus,
        keys: Keys,
        agent: str,
        *,
        timeout_s: int,
        on_timeout: Decision,
        events_ttl_s: int | None,
    ) -> None:
        self.bus, self.keys, self.agent = bus, keys, agent
        self.timeout_s, self.on_timeout, self.events_ttl_s = timeout_s, on_timeout, events_ttl_s

    def park(
        self, envelope: MessageEnvelope, inbox_id: str, state: str, calls: list[ApprovalCall]
    ) -> tuple[Parking, list[ApprovalRequiredEvent]]:
        """The record to store with the entry's completion, and the events to publish with it."""
        expires = datetime.now(UTC) + timedelta(seconds=self.timeout_s)
        metadata = {**envelope.metadata, "resumes": inbox_id}
        resume = envelope.model_copy(update={"type": "control", "content": RESUME, "metadata": metadata})
        record = PendingApproval(
            agent=self.agent,
            conversation_id=envelope.conversation_id,
            message_id=envelope.id,
            inbox_id=inbox_id,
            calls=calls,
            state=state,
            expires_at=expires,
            on_timeout=self.on_timeout,
            resume=resume.to_json(),
        )
        parking = Parking(
            record_key=self.keys.approval(envelope.conversation_id),
            record=record.to_json(),
            ttl_s=self.timeout_s + KEEP_RECORD_S,
            due_key=self.keys.approvals_due(self.agent),
            due_member=envelope.conversation_id,
            due_at=expires.timestamp(),
        )
        events = [
            ApprovalRequiredEvent(
                conversation_id=envelope.conversation_id,
                message_id=envelope.id,
                call_id=call.call_id,
                tool=call.tool,
                arguments=call.arguments,
                expires_at=expires,
            )
            for call in calls
        ]
        return parking, events

    async def expire_due(self) -> int:
        """Decide every call of expired approvals as `onTimeout` says; how many were decided."""
        decided = 0
        for conversation_id in await self.bus.due(self.keys.approvals_due(self.agent), time.time()):
            record = await pending(self.bus, self.keys, conversation_id)
            if record is None:
                continue
            for call in record.calls:
                if call.call_id in record.decisions:
                    continue
                reason = f"no decision within {self.timeout_s}s"
                verdict, _ = await decide(
                    self.bus,
                    self.keys,
                    record,
                    call.call_id,
                    record.on_timeout,
                    reason=reason,
                    by="timeout",
                    events_ttl_s=self.events_ttl_s,
                )
                decided += verdict in ("pending", "resumed")
        return decided
