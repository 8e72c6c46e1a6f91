"""A scripted OpenAI-compatible model (streamed Chat Completions) that pods can reach on the node's
address. It drives real tool calls through the Agents SDK inside the worker pods:
- a user message `run: <command>` is answered with a `terminal` tool call running that command;
- after a tool result it answers `tool said: <result>`;
- anything else is answered `echo: <text>`, streamed as `deltas` chunks over `answer_s` seconds,
  slow enough for a test to act in the middle of a run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.openai_server import STREAM_END, STREAM_HEAD, frame, requests

CHUNK: dict[str, object] = {
    "id": "chatcmpl-node",
    "object": "chat.completion.chunk",
    "created": 0,
    "model": "scripted",
}


def _frame(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return frame(delta, finish, CHUNK)


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content or "")


class ScriptedModel:
    def __init__(self, *, answer_s: float = 0.5, deltas: int = 5) -> None:
        self.answer_s, self.deltas = answer_s, deltas
        self.requests = 0
        self.address = ""  # host:port, once serving

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            async for body in requests(reader):
                self.requests += 1
                await self._answer(writer, json.loads(body or b"{}").get("messages", []))
        writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, messages: list[dict[str, Any]]) -> None:
        writer.write(STREAM_HEAD)
        writer.write(_frame({"role": "assistant", "content": ""}))
        last = messages[-1] if messages else {}
        text = _text(last.get("content"))
        if last.get("role") == "user" and text.startswith("run: "):
            call = {"index": 0, "id": "call_1", "type": "function"}
            arguments = json.dumps({"command": text.removeprefix("run: ")})
            writer.write(
                _frame({"tool_calls": [{**call, "function": {"name": "terminal", "arguments": arguments}}]})
            )
            writer.write(_frame({}, "tool_calls"))
        else:
            answer = f"tool said: {text}" if last.get("role") == "tool" else f"echo: {text}"
            n = self.deltas
            for piece in (answer[len(answer) * i // n : len(answer) * (i + 1) // n] for i in range(n)):
                await asyncio.sleep(self.answer_s / self.deltas)
                writer.write(_frame({"content": piece}))
                await writer.drain()
            writer.write(_frame({}, "stop"))
        writer.write(STREAM_END)
        await writer.drain()


@contextmanager
def serving(host: str, port: int, model: ScriptedModel) -> Iterator[ScriptedModel]:
    """Run `model` on host:port in a thread of its own for the duration of the block."""
    loop = asyncio.new_event_loop()
    started = threading.Event()

    async def main() -> None:
        server = await asyncio.start_server(model.handle, host, port)
        started.set()
        try:
            async with server:
                await server.serve_forever()
        finally:  # connections still open belong to this loop: end them with it
            others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

    model.address = f"{host}:{port}"
    task = loop.create_task(main())
    thread = threading.Thread(
        target=loop.run_until_complete, args=(asyncio.gather(task, return_exceptions=True),)
    )
    thread.start()
    if not started.wait(10):
        raise RuntimeError(f"scripted model did not start on {host}:{port}")
    try:
        yield model
    finally:
        loop.call_soon_threadsafe(task.cancel)
        thread.join(10)
