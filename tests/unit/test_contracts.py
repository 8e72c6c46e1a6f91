from __future__ import annotations

import json
from datetime import UTC

import pytest
from pydantic import ValidationError

from magent2.contracts import (
    ErrorEvent,
    MessageEnvelope,
    OutputEvent,
    RunStartedEvent,
    TokenEvent,
    ToolStepEvent,
    UserMessageEvent,
    parse_event,
)
from magent2.gateway.sse import frame

ALL_EVENTS = [
    UserMessageEvent(conversation_id="c", message_id="m", sender="user:a", recipient="agent:B", content="hi"),
    RunStartedEvent(conversation_id="c", message_id="m", agent="B"),
    TokenEvent(conversation_id="c", text="he", index=0),
    ToolStepEvent(conversation_id="c", name="ls", args={"event": "x"}, status="start", tool_call_id="t"),
    OutputEvent(conversation_id="c", text="done", usage={"total_tokens": 3}),
    ErrorEvent(conversation_id="c", message="bad", retryable=True),
]


def test_envelope_defaults_and_round_trip() -> None:
    envelope = MessageEnvelope(
        conversation_id="c-1", sender="user:alice", recipient="agent:DevAgent", content="x"
    )
    assert envelope.type == "message" and envelope.metadata == {}
    assert envelope.created_at.tzinfo == UTC and len(envelope.id) == 36
    assert envelope.agent_name == "DevAgent"
    assert MessageEnvelope.model_validate_json(envelope.to_json()) == envelope


@pytest.mark.parametrize(
    "field",
    [
        {"sender": "alice"},
        {"recipient": "DevAgent"},
        {"recipient": "agent:bad name"},
        {"type": "shout"},
        {"conversation_id": ""},
        {"unknown": 1},
    ],
)
def test_envelope_rejects_bad_fields(field: dict[str, object]) -> None:
    base = {"conversation_id": "c", "sender": "user:a", "recipient": "agent:B", "content": "x"}
    with pytest.raises(ValidationError):
        MessageEnvelope(**{**base, **field})  # type: ignore[arg-type]


@pytest.mark.parametrize("event", ALL_EVENTS, ids=lambda e: e.event)
def test_every_event_round_trips_through_the_discriminator(event: object) -> None:
    parsed = parse_event(event.to_json())  # type: ignore[attr-defined]
    assert parsed == event
    body = json.loads(event.to_json())  # type: ignore[attr-defined]
    assert {"id", "conversation_id", "created_at", "event"} <= body.keys()


@pytest.mark.parametrize("event", ALL_EVENTS, ids=lambda e: e.event)
def test_sse_frame_names_the_top_level_event(event: object) -> None:
    # tool_step's args contain an "event" key of their own: the frame must still say tool_step
    text = frame("5-1", event.to_json())  # type: ignore[attr-defined]
    lines = text.split("\n")
    assert lines[0] == "id: 5-1"
    assert lines[1] == f"event: {event.event}"  # type: ignore[attr-defined]
    assert text.endswith("\n\n")


def test_unknown_event_kind_is_rejected() -> None:
    with pytest.raises(ValidationError):
        parse_event(
            '{"event": "telepathy", "id": "1", "conversation_id": "c", "created_at": "2026-01-01T00:00:00Z"}'
        )
