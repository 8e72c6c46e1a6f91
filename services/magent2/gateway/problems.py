"""Error bodies shared by FastAPI's exception handlers and the hot routes (`gateway/hot.py`):
a request the gateway cannot take says what is wrong, the same way on every route."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from magent2.bus import LATEST, BusUnavailable
from magent2.bus.api import is_cursor


def invalid_cursor(cursor: str) -> str | None:
    """Why `cursor` cannot be resumed after, or None when it can (`$` included)."""
    if cursor == LATEST or is_cursor(cursor):
        return None
    return f"invalid cursor {cursor!r}: expected <ms>-<seq>, <ms> or $"


def invalid(errors: Sequence[Any]) -> tuple[int, dict[str, Any]]:
    """400 for a body that is not JSON, else 422 naming each bad field (pydantic's errors)."""
    if any(error.get("type") == "json_invalid" for error in errors):
        return 400, {"detail": "request body is not valid JSON"}
    detail = [
        {"field": ".".join(str(p) for p in error["loc"] if p != "body"), "message": error["msg"]}
        for error in errors
    ]
    return 422, {"detail": detail}


def unavailable(exc: BusUnavailable, message_id: str | None) -> dict[str, Any]:
    """The 503 body. For a send, whether the message may have been accepted, and that sending it
    again with the same id is safe either way."""
    body: dict[str, Any] = {"detail": f"message bus unavailable: {exc}"}
    if message_id is not None:
        body.update(
            id=message_id,
            outcome="unknown" if exc.outcome_unknown else "not_accepted",
            retry=f"send again with the same id ({message_id}); it is accepted and run at most once",
        )
    return body
