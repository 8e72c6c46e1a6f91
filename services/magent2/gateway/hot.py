"""The two routes every message takes, POST /send and GET /stream/{id}, answered as plain ASGI
by `GatewayApp` ahead of FastAPI: its middleware, routing and dependency solving cost more CPU
than the rest of a send together. They keep FastAPI's behaviour (the same status codes, error
bodies and bearer check) and are declared for the docs in `routes/messages.py`."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.types import Receive, Scope, Send

from magent2 import telemetry
from magent2.bus import LATEST, START, BusUnavailable, ConversationBusy
from magent2.bus.delivery import deliver
from magent2.contracts import CONVERSATION_ID_PATTERN, MessageEnvelope, new_id, utc_now
from magent2.control.cancel import request_cancel
from magent2.gateway import problems
from magent2.gateway.deps import UNAUTHORIZED, Gateway
from magent2.gateway.routes.messages import SendRequest
from magent2.gateway.sse import event_stream

Headers = list[tuple[bytes, bytes]]
JSON_HEADERS: Headers = [(b"content-type", b"application/json")]
SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_CONVERSATION_ID = re.compile(CONVERSATION_ID_PATTERN)
STREAM_PREFIX = "/stream/"


class Problem(Exception):
    """A request answered with an error status and a JSON body."""

    def __init__(self, status: int, body: Any, headers: Headers | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or []


class StreamQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    last_id: str | None = None
    max_events: int | None = Field(default=None, ge=1)


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class Route(NamedTuple):
    path: str  # as the metrics name it
    conversation_id: str | None = None  # of a stream


SEND = Route("/send")


def route(scope: Scope) -> Route | None:
    """The hot route the request is for, or None for FastAPI. Matched as FastAPI would: the path
    within any mount, a stream id without "/"."""
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    method = scope["method"]
    if path == "/send" and method == "POST":
        return SEND
    if path.startswith(STREAM_PREFIX) and method == "GET" and "/" not in path[len(STREAM_PREFIX) :]:
        return Route("/stream/{conversation_id}", path[len(STREAM_PREFIX) :])
    return None


async def serve(gateway: Gateway, found: Route, scope: Scope, receive: Receive, send: Send) -> None:
    if found.conversation_id is None:
        status = await send_message(gateway, scope, receive, send)
    else:
        status = await stream_conversation(gateway, scope, receive, send, found.conversation_id)
    gateway.metrics.requests.labels(scope["method"], found.path, str(status)).inc()


async def reply(send: Send, status: int, body: Any, headers: Headers | None = None) -> None:
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    length = [(b"content-length", str(len(data)).encode())]
    await send(
        {"type": "http.response.start", "status": status, "headers": JSON_HEADERS + length + (headers or [])}
    )
    await send({"type": "http.response.body", "body": data})


def _authorize(gateway: Gateway, scope: Scope) -> None:
    if not gateway.admits(header(scope, b"authorization")):
        raise Problem(401, {"detail": UNAUTHORIZED}, [(b"www-authenticate", b"Bearer")])


async def _body(receive: Receive, limit: int) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Problem(400, {"detail": "the client went away before sending the whole body"})
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Problem(413, {"detail": f"request body exceeds {limit} bytes"})
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _send_request(body: bytes) -> SendRequest:
    try:
        return SendRequest.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    if any(error["type"] == "json_invalid" for error in errors):
        # Stricter than FastAPI's parser (lone surrogates are "invalid JSON" there): parse the
        # way FastAPI does, so the answer names the field, as it always did.
        try:
            parsed = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise Problem(*problems.invalid(errors)) from None
        try:
            return SendRequest.model_validate(parsed)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
    raise Problem(*problems.invalid(errors))


async def send_message(gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> int:
    """POST /send. Returns the status it answered."""
    settings, keys = gateway.settings, gateway.keys
    message_id: str | None = None
    try:
        _authorize(gateway, scope)
        # JSON escapes make a body at most ~6x its text; anything larger is refused unread.
        body = _send_request(await _body(receive, settings.max_content_bytes * 6 + 65_536))
        agent = body.recipient.removeprefix("agent:")
        if settings.check_recipients and not await gateway.directory.knows(agent):
            known = ", ".join(await gateway.directory.known()) or "none yet (no worker has started)"
            raise Problem(404, {"detail": f"unknown agent {agent!r}; known agents: {known}"})
        size = len(body.content.encode())
        if size > settings.max_content_bytes:
            raise Problem(
                413, {"detail": f"content is {size} bytes; the limit is {settings.max_content_bytes}"}
            )
        # SendRequest enforced the envelope's own constraints; build it without validating twice
        # (and with every field given: model_construct inspects each default factory per call).
        envelope = MessageEnvelope.model_construct(
            **body.model_dump(exclude={"id"}), id=body.id or new_id(), created_at=utc_now()
        )
        message_id = envelope.id
        policy = (await gateway.cards.get(agent)).on_new_message
        with telemetry.send_span(envelope):
            try:
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
                detail = (
                    f"a message of conversation {envelope.conversation_id!r} is still running and {agent} "
                    "rejects new ones meanwhile (onNewMessage: reject); wait for its outcome, or cancel it"
                )
                raise Problem(409, {"detail": detail}) from None
        if policy == "interrupt":
            reason = f"interrupted by message {envelope.id}"
            await request_cancel(
                gateway.bus, keys, agent, envelope.conversation_id, reason=reason, until_id=inbox_id
            )
    except Problem as problem:
        await reply(send, problem.status, problem.body, problem.headers)
        return problem.status
    except BusUnavailable as exc:
        if message_id is not None:
            gateway.metrics.publish_errors.inc()
        await reply(send, 503, problems.unavailable(exc, message_id), [(b"retry-after", b"1")])
        return 503
    gateway.metrics.published.inc()
    accepted = {
        "id": envelope.id,
        "conversation_id": envelope.conversation_id,
        "inbox": keys.inbox(envelope.agent_name),
        "stream_url": f"/stream/{envelope.conversation_id}",
        "cursor": cursor,
    }
    await reply(send, 202, accepted)
    return 202


def _stream_cursor(scope: Scope, conversation_id: str) -> tuple[str, int | None]:
    if not _CONVERSATION_ID.fullmatch(conversation_id):
        message = f"String should match pattern '{CONVERSATION_ID_PATTERN}'"
        raise Problem(422, {"detail": [{"field": "path.conversation_id", "message": message}]})
    try:
        query = StreamQuery.model_validate(dict(parse_qsl(scope["query_string"].decode("latin-1"))))
    except ValidationError as exc:
        _, body = problems.invalid(
            [{**e, "loc": ("query", *e["loc"])} for e in exc.errors(include_url=False)]
        )
        raise Problem(422, body) from None
    cursor = header(scope, b"last-event-id") or query.last_id or START
    if (problem := problems.invalid_cursor(cursor)) is not None:
        raise Problem(400, {"detail": problem})
    return cursor, query.max_events


async def stream_conversation(
    gateway: Gateway, scope: Scope, receive: Receive, send: Send, conversation_id: str
) -> int:
    """GET /stream/{conversation_id}: server-sent events until the client goes (or max_events)."""
    events = gateway.keys.events(conversation_id)
    try:
        _authorize(gateway, scope)
        cursor, max_events = _stream_cursor(scope, conversation_id)
        if cursor == LATEST:
            cursor = await gateway.bus.last_id(events)
    except Problem as problem:
        await reply(send, problem.status, problem.body, problem.headers)
        return problem.status
    except BusUnavailable as exc:
        await reply(send, 503, problems.unavailable(exc, None), [(b"retry-after", b"1")])
        return 503
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
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
    await _until_disconnected(receive, _write(frames, send))
    return 200


async def _write(frames: AsyncIterator[str], send: Send) -> None:
    try:
        async for frame in frames:
            await send({"type": "http.response.body", "body": frame.encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        await frames.aclose()  # type: ignore[attr-defined]  # an async generator


async def _until_disconnected(receive: Receive, writing: Any) -> None:
    """Run `writing` until it ends or the client disconnects, whichever is first: uvicorn drops
    what is sent to a gone client silently, so only `receive` tells."""
    task = asyncio.ensure_future(writing)

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        task.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # the server stops this request; else the client went and the watcher stopped it
    finally:
        watcher.cancel()
        task.cancel()
