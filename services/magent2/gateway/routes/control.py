"""Run control: stopping a conversation's running run."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field

from magent2.contracts import AGENT_NAME_PATTERN, CONVERSATION_ID_PATTERN, UserMessageEvent, parse_event
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
