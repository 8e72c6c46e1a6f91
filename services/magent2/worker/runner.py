"""What runs one message: the `Runner` protocol and the offline `EchoRunner`."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Protocol

from magent2.contracts import (
    ApprovalCall,
    MessageEnvelope,
    OutputEvent,
    PendingApproval,
    StreamEvent,
    TokenEvent,
)


class RunFailed(Exception):
    """A run failed; `retryable` says whether trying the same message again may succeed."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class RunPaused(Exception):
    """A run stopped for a person to approve `calls`; `state` resumes it (the SDK's RunState)."""

    def __init__(self, state: str, calls: list[ApprovalCall]) -> None:
        super().__init__(f"waiting for approval of {', '.join(call.tool for call in calls)}")
        self.state, self.calls = state, calls


class Runner(Protocol):
    def run(
        self, envelope: MessageEnvelope, resume: PendingApproval | None = None
    ) -> AsyncIterator[StreamEvent]:
        """Yield token / tool_step events and end with exactly one `output` event; with `resume`,
        continue that paused run under its decisions instead. Raise `RunFailed` (or anything else,
        taken as not retryable) on failure, `RunPaused` when a tool call needs approval."""
        ...

    async def aclose(self) -> None: ...


_PIECES = re.compile(r"\S+\s*|\s+")


def split_tokens(text: str) -> list[str]:
    """Word-sized pieces that concatenate back to `text`."""
    return _PIECES.findall(text)


class EchoRunner:
    """Answers `echo: <content>` as a token stream; used when no model is configured.
    `token_delay_s` paces the tokens like a slow model (demos, crash tests)."""

    def __init__(self, token_delay_s: float = 0.0) -> None:
        self.token_delay_s = token_delay_s

    async def run(
        self, envelope: MessageEnvelope, resume: PendingApproval | None = None
    ) -> AsyncIterator[StreamEvent]:
        text = f"echo: {envelope.content}"
        conversation = envelope.conversation_id
        for index, piece in enumerate(split_tokens(text)):
            if self.token_delay_s:
                await asyncio.sleep(self.token_delay_s)
            yield TokenEvent(conversation_id=conversation, text=piece, index=index)
        yield OutputEvent(conversation_id=conversation, text=text, message_id=envelope.id)

    async def aclose(self) -> None:
        return None
