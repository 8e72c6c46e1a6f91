"""The one fake in the suite: the Agents SDK's own ScriptedModel, streaming text in word-sized
deltas as a real model does, so tokens, tool calls and outputs flow through the SDK's runner."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from agents.items import TResponseStreamEvent
from agents.models.interface import Model
from agents.testing import ScriptedModel, assistant_message, function_call
from agents.usage import Usage

from magent2.worker.runner import split_tokens
from tests.support import SCRIPTED

__all__ = ["CommandModel", "TokenStreamingModel", "assistant_message", "command_model", "function_call"]


class TokenStreamingModel(ScriptedModel):
    async def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[TResponseStreamEvent]:
        async for event in super().stream_response(*args, **kwargs):
            if event.type == "response.output_text.delta" and len(split_tokens(event.delta)) > 1:
                for piece in split_tokens(event.delta):
                    yield event.model_copy(update={"delta": piece})
            else:
                yield event


def command_model(model_name: str = "scripted") -> CommandModel:
    """AGENT_MODEL_FACTORY=tests.scripted_model:command_model, for worker processes in tests."""
    return CommandModel()


class SlowStreamingModel(TokenStreamingModel):
    """TokenStreamingModel that waits before each text delta, as a model mid-answer does."""

    def __init__(self, *args: Any, delay_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.delay_s = delay_s

    async def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[TResponseStreamEvent]:
        async for event in super().stream_response(*args, **kwargs):
            if event.type == "response.output_text.delta":
                await asyncio.sleep(self.delay_s)
            yield event


# what every CommandModel turn reports, so usage (output events, token metrics) is not all zeros
USAGE = Usage(requests=1, input_tokens=7, output_tokens=3, total_tokens=10)


class CommandModel(Model):
    """A model that needs no script: a user message `call <tool> <json args>` becomes that tool
    call; `pingpong` becomes chat_send of `pingpong` to the `peer=<name>` of its instructions;
    `slow <n>` streams n words, 50 ms apart; a tool's output is answered `tool said: <output>`;
    anything else `you said: <text>`.
    Each turn is played through the SDK's ScriptedModel, so the streams are the SDK's own."""

    @staticmethod
    def _step(items: str | list[Any], instructions: str | None = None) -> list[Any]:
        last = items if isinstance(items, str) else items[-1]
        if isinstance(last, dict) and last.get("type") == "function_call_output":
            return [assistant_message(f"tool said: {last['output']}")]
        text = last if isinstance(last, str) else str(last.get("content", ""))
        if text == "pingpong" and instructions and "peer=" in instructions:
            peer = instructions.split("peer=", 1)[1].split()[0]
            text = f'call chat_send {{"recipient": "{peer}", "content": "pingpong"}}'
        if text.startswith("slow "):
            return [assistant_message(" ".join(f"w{i}" for i in range(int(text.split()[1]))))]
        if text.startswith("call "):
            _, name, *rest = text.split(" ", 2)
            return [
                function_call(
                    name, json.loads(rest[0]) if rest else {}, call_id=f"call-{uuid.uuid4().hex[:8]}"
                )
            ]
        return [assistant_message(f"you said: {text}")]

    async def get_response(self, system_instructions: Any, input: Any, *args: Any, **kwargs: Any) -> Any:
        return await ScriptedModel(
            [self._step(input, system_instructions)], default_usage=USAGE
        ).get_response(system_instructions, input, *args, **kwargs)

    def stream_response(self, system_instructions: Any, input: Any, *args: Any, **kwargs: Any) -> Any:
        step = self._step(input, system_instructions)
        last = input if isinstance(input, str) else input[-1]
        slow = str(last if isinstance(last, str) else last.get("content", "")).startswith("slow ")
        model = (
            SlowStreamingModel([step], delay_s=0.05, default_usage=USAGE, emit_traces=True)
            if slow
            else TokenStreamingModel([step], default_usage=USAGE, emit_traces=True)
        )
        return model.stream_response(system_instructions, input, *args, **kwargs)


def scripted_settings(**env: Any) -> Any:
    """WorkerSettings for an SDK worker driven by `command_model`, plus `env` (alias names)."""
    from magent2.settings import WorkerSettings

    return WorkerSettings(**{**SCRIPTED, **env})


def scripted_worker(bus: Any, **env: Any) -> Any:
    """A real worker (registry, tools, input limit, SDK runner) on `bus`, driven by `command_model`."""
    from magent2.worker.build import build_runner, build_worker

    settings = scripted_settings(**env)
    return build_worker(settings, bus, build_runner(settings, bus))
