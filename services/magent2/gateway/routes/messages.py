"""Messages: POST /send into an agent's inbox, GET /stream/{id} over server-sent events."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from magent2 import telemetry
from magent2.bus import LATEST, START, ConversationBusy
from magent2.bus.api import is_cursor
from magent2.bus.delivery import deliver
from magent2.contracts import (
    CONVERSATION_ID_PATTERN,
    RECIPIENT_PATTERN,
    SENDER_PATTERN,
    MessageEnvelope,
    new_id,
    utc_now,
)
from magent2.control.cancel import request_cancel
from magent2.gateway.deps import Authorized, GatewayDep
from magent2.gateway.sse import event_stream

router = APIRouter(tags=["messages"], dependencies=Authorized)


class SendRequest(BaseModel):
    """Body of POST /send. Send the same `id` again to retry: it is accepted and run only once."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, min_length=1, max_length=64)
    conversation_id: str = Field(pattern=CONVERSATION_ID_PATTERN, examples=["conv-1"])
    sender: str = Field(pattern=SENDER_PATTERN, examples=["user:alice"])
    recipient: str = Field(pattern=RECIPIENT_PATTERN, examples=["agent:DevAgent"])
    type: Literal["message", "control"] = "message"
    content: str = Field(min_length=1, examples=["hello"])
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("metadata")
    @classmethod
    def _encodable(cls, value: dict[str, Any]) -> dict[str, Any]:
        # str fields reject lone surrogates while parsing; values under `Any` get through.
        try:
            json.dumps(value, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise ValueError("contains a lone UTF-16 surrogate (\\ud800-\\udfff): not valid text") from None
        return value


class SendResponse(BaseModel):
    id: str
    conversation_id: str
    inbox: str
    stream_url: str
    cursor: str = Field(description="Stream cursor of the user_message event; stream with ?last_id=<cursor>")


def parse_cursor(cursor: str) -> str:
    if cursor != LATEST and not is_cursor(cursor):
        raise HTTPException(400, f"invalid cursor {cursor!r}: expected <ms>-<seq>, <ms> or $")
    return cursor


@router.post("/send", status_code=202, response_model=SendResponse)
async def send(body: SendRequest, request: Request, gateway: GatewayDep) -> JSONResponse:
    settings, keys = gateway.settings, gateway.keys
    agent = body.recipient.removeprefix("agent:")
    if settings.check_recipients and not await gateway.directory.knows(agent):
        known = ", ".join(await gateway.directory.known()) or "none yet (no worker has started)"
        raise HTTPException(404, f"unknown agent {agent!r}; known agents: {known}")
    size = len(body.content.encode())
    if size > settings.max_content_bytes:
        raise HTTPException(413, f"content is {size} bytes; the limit is {settings.max_content_bytes}")
    # SendRequest enforced the envelope's own constraints; build it without validating twice (and
    # with every field given: model_construct inspects each default factory's signature per call).
    envelope = MessageEnvelope.model_construct(
        **body.model_dump(exclude={"id"}), id=body.id or new_id(), created_at=utc_now()
    )
    request.state.message_id = envelope.id  # named in a 503, so the client can retry safely
    policy = (await gateway.cards.get(agent)).on_new_message
    try:
        with telemetry.send_span(envelope):
            cursor, inbox_id = await deliver(
                gateway.bus,
                keys,
                envelope,
                events_ttl_s=settings.events_ttl_seconds,
                durable_timeout_ms=settings.durable_ack_timeout_ms if settings.durable_ack else None,
                only_if_idle=policy == "reject",
                index=gateway.index.updates(envelope),
            )
    except ConversationBusy:
        raise HTTPException(
            409,
            f"a message of conversation {envelope.conversation_id!r} is still running and {agent} "
            "rejects new ones meanwhile (onNewMessage: reject); wait for its outcome, or cancel it",
        ) from None
    if policy == "interrupt":
        await request_cancel(
            gateway.bus,
            keys,
            agent,
            envelope.conversation_id,
            reason=f"interrupted by message {envelope.id}",
            until_id=inbox_id,
        )
    gateway.metrics.published.inc()
    # A plain JSONResponse: FastAPI would otherwise validate SendResponse a second time.
    reply = {
        "id": envelope.id,
        "conversation_id": envelope.conversation_id,
        "inbox": keys.inbox(envelope.agent_name),
        "stream_url": f"/stream/{envelope.conversation_id}",
        "cursor": cursor,
    }
    return JSONResponse(reply, status_code=202)


@router.get(
    "/stream/{conversation_id}",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "SSE frames"}},
)
async def stream(
    conversation_id: Annotated[str, Path(pattern=CONVERSATION_ID_PATTERN)],
    gateway: GatewayDep,
    last_id: Annotated[str | None, Query(description="Resume after this cursor; `$` for new only")] = None,
    max_events: Annotated[int | None, Query(ge=1, description="Close after this many events")] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    cursor = parse_cursor(last_event_id or last_id or START)
    events = gateway.keys.events(conversation_id)
    if cursor == LATEST:
        cursor = await gateway.bus.last_id(events)
    frames = event_stream(
        gateway.bus,
        gateway.hub,
        events,
        cursor,
        max_events=max_events,
        heartbeat_s=gateway.settings.heartbeat_seconds,
        max_event_bytes=gateway.settings.sse_max_event_bytes,
        metrics=gateway.metrics,
    )
    return StreamingResponse(
        frames,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
