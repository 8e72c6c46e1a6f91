"""Status conditions: set one, keeping lastTransitionTime when its status did not change."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def condition(type_: str, status: bool, reason: str, message: str) -> dict[str, Any]:
    return {"type": type_, "status": "True" if status else "False", "reason": reason, "message": message}


def merge(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`new` conditions with lastTransitionTime carried over from `old` where status is unchanged."""
    previous = {c["type"]: c for c in old or []}
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    merged = []
    for item in new:
        before = previous.get(item["type"])
        since = before["lastTransitionTime"] if before and before.get("status") == item["status"] else now
        merged.append({**item, "lastTransitionTime": since})
    return merged


def same(old: list[dict[str, Any]] | None, new: list[dict[str, Any]]) -> bool:
    """Equal but for lastTransitionTime."""

    def strip(items: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        return [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in items or []]

    return strip(old) == strip(new)
