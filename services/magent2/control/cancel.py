"""Which run holds which conversation in a worker, and stopping it: a cancel is a `ControlCommand`
on `control:{agent}`, which every worker of the agent reads; the one running the conversation
stops that run and publishes `cancelled` as its outcome."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from magent2.bus import Bus, Keys
from magent2.bus.api import parse_id
from magent2.contracts import ControlCommand

COMMAND_TTL_S = 3600


async def request_cancel(
    bus: Bus, keys: Keys, agent: str, conversation_id: str, *, reason: str, until_id: str | None = None
) -> None:
    """Ask the workers of `agent` to stop the run of `conversation_id` (only a run of an inbox
    entry older than `until_id`, when given: an interrupt never stops the message that caused it)."""
    command = ControlCommand(
        command="cancel", conversation_id=conversation_id, reason=reason, until_id=until_id
    )
    await bus.publish(keys.control(agent), command.to_json(), ttl_s=COMMAND_TTL_S)


@dataclass
class _Run:
    message_id: str  # its inbox entry
    task: asyncio.Task[Any]


class Cancellations:
    """The runs of one worker by conversation, and the reasons of those stopped on request."""

    def __init__(self) -> None:
        self._runs: dict[str, _Run] = {}
        self._reasons: dict[str, str] = {}

    def started(self, conversation_id: str, message_id: str, task: asyncio.Task[Any]) -> None:
        self._runs[conversation_id] = _Run(message_id, task)

    def ended(self, conversation_id: str, message_id: str) -> str | None:
        """Forget the run; the reason it was cancelled for, if it was."""
        run = self._runs.get(conversation_id)
        if run is not None and run.message_id == message_id:
            del self._runs[conversation_id]
        return self._reasons.pop(message_id, None)

    def apply(self, command: ControlCommand) -> bool:
        run = self._runs.get(command.conversation_id)
        if run is None or run.message_id in self._reasons or run.task.done():
            return False
        if command.until_id is not None and parse_id(run.message_id) >= parse_id(command.until_id):
            return False
        self._reasons[run.message_id] = command.reason or "cancelled"
        run.task.cancel()
        return True
