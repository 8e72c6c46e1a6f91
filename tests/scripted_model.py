"""The one fake in the suite: the Agents SDK's own ScriptedModel, streaming text in word-sized
deltas as a real model does, so tokens, tool calls and outputs flow through the SDK's runner."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from agents.items import TResponseStreamEvent
from agents.testing import ScriptedModel, assistant_message, function_call

from magent2.worker.runner import split_tokens

__all__ = ["TokenStreamingModel", "assistant_message", "function_call"]


class TokenStreamingModel(ScriptedModel):
    async def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[TResponseStreamEvent]:
        async for event in super().stream_response(*args, **kwargs):
            if event.type == "response.output_text.delta" and len(split_tokens(event.delta)) > 1:
                for piece in split_tokens(event.delta):
                    yield event.model_copy(update={"delta": piece})
            else:
                yield event
