"""Run control: stopping a conversation's running run, and deciding on tool calls that wait for
a person's approval."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field

from magent2.contracts import (
    AGENT_NAME_PATTERN,
    CONVERSATION_ID_PATTERN,
    Decision,
    UserMessageEvent,
    parse_event,
)
from magent2.control import approvals
from magent2.control.cancel import request_cancel
from magent2.gateway.deps import Authorized, Gateway, GatewayDep

router = APIRouter(prefix="/conversations", tags=["control"], dependencies=Authorized)

ConversationId = Annotated[str, Path(pattern=CONVERSATION_ID_PATTERN)]


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent: str | None = Field(
        default=None, pattern=AGENT_NAME_PATTERN, description="Default: the conversation's recipient"
    )
    reason: str = Field(default="", max_length=500)


class CancelResponse(BaseModel):
    conversation_id: str
    agent: str
    status: str = "cancel requested"


async def _recipient(gateway: Gateway, conversation_id: str) -> str | None:
    """The agent the conversation's first message went to."""
    for message in await gateway.bus.read(gateway.keys.events(conversation_id), count=100):
        event = parse_event(message.payload)
        if isinstance(event, UserMessageEvent) and event.recipient.startswith("agent:"):
            return event.recipient.removeprefix("agent:")
    return None


@router.post("/{conversation_id}/cancel", status_code=202, response_model=CancelResponse)
async def cancel(
    conversation_id: ConversationId,
    gateway: GatewayDep,
    body: Annotated[CancelRequest | None, Body()] = None,
) -> CancelResponse:
    """Stop the conversation's running run wherever it runs; it ends with a `cancelled` event
    and the conversation's next message starts."""
    request = body or CancelRequest()
    agent = request.agent or await _recipient(gateway, conversation_id)
    if agent is None:
        raise HTTPException(404, f"conversation {conversation_id!r} has no message to an agent")
    if not await gateway.bus.unfinished(gateway.keys.inbox(agent), conversation_id):
        raise HTTPException(409, f"nothing of conversation {conversation_id!r} is running on {agent}")
    await request_cancel(
        gateway.bus, gateway.keys, agent, conversation_id, reason=request.reason or "cancelled by request"
    )
    return CancelResponse(conversation_id=conversation_id, agent=agent)


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Decision
    reason: str = Field(default="", max_length=1000)


class DecisionResponse(BaseModel):
    conversation_id: str
    call_id: str
    decision: Decision
    resumed: bool = Field(description="True when this was the last decision: the run continues now")


@router.post("/{conversation_id}/approvals/{call_id}", response_model=DecisionResponse)
async def decide(
    conversation_id: ConversationId,
    call_id: Annotated[str, Path(min_length=1, max_length=200)],
    body: DecisionRequest,
    gateway: GatewayDep,
) -> DecisionResponse:
    """Approve or reject a tool call the conversation's run waits on. The last decision resumes
    the run on whichever worker picks it up."""
    unknown = f"conversation {conversation_id!r} has no tool call {call_id!r} awaiting approval"
    record = await approvals.pending(gateway.bus, gateway.keys, conversation_id)
    if record is None or call_id not in {call.call_id for call in record.calls}:
        raise HTTPException(404, unknown)
    verdict, earlier = await approvals.decide(
        gateway.bus,
        gateway.keys,
        record,
        call_id,
        body.decision,
        reason=body.reason,
        events_ttl_s=gateway.settings.events_ttl_seconds,
    )
    if verdict == "unknown":
        raise HTTPException(404, unknown)
    if verdict == "decided":
        assert earlier is not None
        already = f"tool call {call_id!r} was already decided by {earlier.by}: {earlier.decision}"
        raise HTTPException(409, already)
    return DecisionResponse(
        conversation_id=conversation_id, call_id=call_id, decision=body.decision, resumed=verdict == "resumed"
    )
