"""Pure status builders: an Agent's queue health as status fields, and which changes of it are
worth an Event."""

from __future__ import annotations

from typing import Any

from magent2.bus.api import QueueHealth


def queue_status(health: QueueHealth, dead_letters: int) -> dict[str, Any]:
    return {
        "backlog": health.backlog,
        "inFlight": health.in_flight,
        # whole seconds: a status that changes on every read would be written on every read
        "oldestPendingSeconds": int(health.oldest_pending_s),
        "deadLetters": dead_letters,
    }


def notable(
    old: dict[str, Any], new: dict[str, Any], *, ready: int, autoscaled: bool
) -> list[tuple[str, str]]:
    """(reason, message) of each Warning the change from `old` to `new` deserves."""
    found = []
    if new["deadLetters"] > old.get("deadLetters", 0):
        grew = new["deadLetters"] - old.get("deadLetters", 0)
        found.append(
            (
                "DeadLetters",
                f"{grew} message(s) moved to the dead-letter stream ({new['deadLetters']} in all)",
            )
        )
    stuck = new["backlog"] > 0 and ready == 0 and not autoscaled  # KEDA wakes a scaled-to-zero agent
    if stuck and not old.get("backlog"):
        found.append(("BacklogWithoutWorkers", f"{new['backlog']} message(s) wait and no worker is ready"))
    return found
