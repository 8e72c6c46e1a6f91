"""Messages: POST /send into an agent's inbox, GET /stream/{id} over server-sent events — their
request and response models and their OpenAPI declarations (`gateway/hot.py` serves them)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from magent2.contracts import CONVERSATION_ID_PATTERN, RECIPIENT_PATTERN, SENDER_PATTERN
from magent2.gateway.deps import Authorized

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


# Declared for the OpenAPI schema only: `GatewayApp` answers both before FastAPI routes anything
# (gateway/hot.py says why), so these functions are never called.
@router.post(
    "/send",
    status_code=202,
    response_model=SendResponse,
    responses={
        400: {"description": "The body is not JSON"},
        401: {"description": "Missing or invalid bearer token"},
        404: {"description": "No such agent"},
        409: {"description": "The agent rejects messages while one of this conversation runs"},
        413: {"description": "Content over GATEWAY_MAX_CONTENT_BYTES"},
        422: {"description": "A field is invalid (each is named)"},
        503: {"description": "The bus is unavailable; the body says whether the message may be accepted"},
    },
)
async def send(body: SendRequest) -> SendResponse:
    """Queue a message for its recipient agent and announce it in its conversation's stream."""
    raise NotImplementedError("served by GatewayApp (gateway/hot.py)")


@router.get(
    "/stream/{conversation_id}",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "SSE frames"},
        400: {"description": "Invalid cursor"},
        401: {"description": "Missing or invalid bearer token"},
    },
)
async def stream(
    conversation_id: Annotated[str, Path(pattern=CONVERSATION_ID_PATTERN)],
    last_id: Annotated[str | None, Query(description="Resume after this cursor; `$` for new only")] = None,
    max_events: Annotated[int | None, Query(ge=1, description="Close after this many events")] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """The conversation's events as server-sent events: `id:` is the cursor to resume after."""
    raise NotImplementedError("served by GatewayApp (gateway/hot.py)")
