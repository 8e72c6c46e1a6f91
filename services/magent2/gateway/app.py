"""The HTTP face of magent2: POST /send into an agent's inbox, GET /stream/{id} over SSE."""

import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from magent2 import __version__
from magent2.bus import LATEST, START, Bus, BusUnavailable, Keys
from magent2.bus.delivery import deliver
from magent2.contracts import (
    CONVERSATION_ID_PATTERN,
    RECIPIENT_PATTERN,
    SENDER_PATTERN,
    MessageEnvelope,
)
from magent2.gateway.metrics import GatewayMetrics, RequestCounter
from magent2.gateway.sse import event_stream
from magent2.settings import GatewaySettings

_CURSOR = re.compile(r"^(\d+(-\d+)?|\$)$")


class SendRequest(BaseModel):
    """Body of POST /send. `id` is optional: send the same id again to retry without duplicates."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, min_length=1, max_length=64)
    conversation_id: str = Field(pattern=CONVERSATION_ID_PATTERN, examples=["conv-1"])
    sender: str = Field(pattern=SENDER_PATTERN, examples=["user:alice"])
    recipient: str = Field(pattern=RECIPIENT_PATTERN, examples=["agent:DevAgent"])
    type: Literal["message", "control"] = "message"
    content: str = Field(min_length=1, examples=["hello"])
    metadata: dict[str, Any] = Field(default_factory=dict)


class SendResponse(BaseModel):
    id: str
    conversation_id: str
    inbox: str
    stream_url: str
    cursor: str = Field(description="Stream cursor of the user_message event; stream with ?last_id=<cursor>")


def create_app(settings: GatewaySettings | None = None, *, bus: Bus | None = None) -> FastAPI:
    """The gateway app. Without `bus`, it owns one built from `settings` (Redis or in-memory)."""
    settings = settings or GatewaySettings()
    if bus is None:
        from magent2.worker.build import build_bus

        bus, owns_bus = build_bus(settings), True
    else:
        owns_bus = False
    keys = Keys(settings.bus_prefix)
    metrics = GatewayMetrics()
    tokens = [token.encode() for token in settings.api_tokens]

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if owns_bus:
            await bus.close()

    app = FastAPI(
        title="magent2 gateway",
        version=__version__,
        description="Send messages to agents and stream their conversations over server-sent events.",
        lifespan=lifespan,
    )
    app.add_middleware(RequestCounter, metrics=metrics)
    app.state.bus, app.state.keys, app.state.settings = bus, keys, settings
    bearer = HTTPBearer(auto_error=False)

    async def authorize(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if not tokens:
            return
        given = credentials.credentials.encode() if credentials else b""
        if not any(secrets.compare_digest(given, token) for token in tokens):
            raise HTTPException(
                401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
            )

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(error.get("type") == "json_invalid" for error in errors):
            return JSONResponse({"detail": "request body is not valid JSON"}, status_code=400)
        detail = [
            {"field": ".".join(str(p) for p in error["loc"] if p != "body"), "message": error["msg"]}
            for error in errors
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.post("/send", status_code=202, response_model=SendResponse, dependencies=[Depends(authorize)])
    async def send(body: SendRequest) -> JSONResponse:
        size = len(body.content.encode())
        if size > settings.max_content_bytes:
            raise HTTPException(413, f"content is {size} bytes; the limit is {settings.max_content_bytes}")
        # SendRequest enforced the envelope's own constraints; build it without validating twice.
        envelope = MessageEnvelope.model_construct(**body.model_dump(exclude_none=True))
        try:
            cursor = await deliver(bus, keys, envelope, events_ttl_s=settings.events_ttl_seconds)
        except BusUnavailable as exc:
            metrics.publish_errors.inc()
            raise HTTPException(503, f"message bus unavailable, nothing was sent: {exc}") from exc
        metrics.published.inc()
        # A plain JSONResponse: FastAPI would otherwise validate SendResponse a second time.
        reply = {
            "id": envelope.id,
            "conversation_id": envelope.conversation_id,
            "inbox": keys.inbox(envelope.agent_name),
            "stream_url": f"/stream/{envelope.conversation_id}",
            "cursor": cursor,
        }
        return JSONResponse(reply, status_code=202)

    @app.get(
        "/stream/{conversation_id}",
        dependencies=[Depends(authorize)],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}, "description": "SSE frames"}},
    )
    async def stream(
        conversation_id: Annotated[str, Path(pattern=CONVERSATION_ID_PATTERN)],
        last_id: Annotated[
            str | None, Query(description="Resume after this cursor; `$` for new only")
        ] = None,
        max_events: Annotated[int | None, Query(ge=1, description="Close after this many events")] = None,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> StreamingResponse:
        cursor = last_event_id or last_id or START
        if not _CURSOR.match(cursor):
            raise HTTPException(400, f"invalid cursor {cursor!r}: expected <ms>-<seq>, <ms> or $")
        events = keys.events(conversation_id)
        if cursor == LATEST:
            try:
                cursor = await bus.last_id(events)
            except BusUnavailable as exc:
                raise HTTPException(503, f"message bus unavailable: {exc}") from exc
        frames = event_stream(
            bus,
            events,
            cursor,
            max_events=max_events,
            heartbeat_s=settings.heartbeat_seconds,
            metrics=metrics,
        )
        return StreamingResponse(
            frames,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.get("/agents", dependencies=[Depends(authorize)])
    async def agents() -> dict[str, list[dict[str, str]]]:
        try:
            inboxes = await bus.streams(keys.inbox_prefix)
        except BusUnavailable as exc:
            raise HTTPException(503, f"message bus unavailable: {exc}") from exc
        return {"agents": [{"name": i.removeprefix(keys.inbox_prefix), "inbox": i} for i in inboxes]}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        try:
            await bus.ping()
        except BusUnavailable as exc:
            return JSONResponse({"status": "unavailable", "detail": str(exc)}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
