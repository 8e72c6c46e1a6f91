"""A scripted OpenAI-compatible model server for benchmarks: POST /v1/chat/completions with
`stream: true` answers after a time-to-first-token, then with `deltas` content chunks at
`rate` per second. Plain asyncio (no framework), so it is cheap next to what it measures.

    python -m bench.openai_server --port 8900 --ttft 0.3 --rate 40 --deltas 50
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

CHUNK = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0, "model": "scripted"}


# The wire of a streamed Chat Completions answer (also used by tests/node/model_server.py).
STREAM_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
STREAM_END = b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n"


def frame(delta: dict[str, object], finish: str | None = None, chunk: dict[str, object] = CHUNK) -> bytes:
    """One chunk of the answer, in HTTP chunked encoding."""
    body = json.dumps({**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    data = f"data: {body}\n\n".encode()
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def requests(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """The bodies of the requests on one keep-alive connection, until it closes."""
    try:
        while head := await reader.readuntil(b"\r\n\r\n"):
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            yield await reader.readexactly(length)
    except (asyncio.IncompleteReadError, ConnectionError):
        return


class ScriptedServer:
    def __init__(self, *, ttft_s: float, rate: float, deltas: int) -> None:
        self.ttft_s, self.interval_s, self.deltas = ttft_s, 1 / rate, deltas
        self.served = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            async for _ in requests(reader):
                await self.answer(writer)
        writer.close()

    async def answer(self, writer: asyncio.StreamWriter) -> None:
        began = time.monotonic()
        writer.write(STREAM_HEAD)
        await asyncio.sleep(self.ttft_s)
        writer.write(frame({"role": "assistant", "content": ""}))
        for n in range(self.deltas):
            writer.write(frame({"content": f"tok{n} "}))
            await writer.drain()
            # paced against the start, so a busy event loop does not stretch the answer
            await asyncio.sleep(max(0.0, began + self.ttft_s + (n + 1) * self.interval_s - time.monotonic()))
        writer.write(frame({}, "stop"))
        writer.write(STREAM_END)
        await writer.drain()
        self.served += 1


async def serve(port: int, *, ttft_s: float, rate: float, deltas: int) -> None:
    server = ScriptedServer(ttft_s=ttft_s, rate=rate, deltas=deltas)
    async with await asyncio.start_server(server.handle, "127.0.0.1", port, backlog=1024) as listening:
        await listening.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.openai_server", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ttft", type=float, default=0.3, help="seconds to the first token")
    parser.add_argument("--rate", type=float, default=40, help="deltas per second")
    parser.add_argument("--deltas", type=int, default=50, help="deltas per answer")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(serve(args.port, ttft_s=args.ttft, rate=args.rate, deltas=args.deltas))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
