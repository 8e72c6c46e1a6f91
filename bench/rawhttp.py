"""A deliberately small HTTP/1.1 client for the load generator: keep-alive JSON POSTs and one SSE
stream per connection. httpx costs ~2 ms of CPU per message, which on a 2-core machine would be
measured as gateway slowness; this costs a tenth of that."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, f"{host}:{port}")

    async def _head(self) -> tuple[int, dict[str, str]]:
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    async def post_json(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        data = json.dumps(body).encode()
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
        status, headers = await self._head()
        payload = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return status, json.loads(payload) if payload else None

    async def sse_lines(self, path: str) -> AsyncIterator[bytes]:
        """Lines of an SSE response (chunked transfer encoding), forever."""
        self.writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        status, _ = await self._head()
        if status != 200:
            raise RuntimeError(f"stream answered HTTP {status}")
        pending = b""
        while True:
            size = int((await self.reader.readline()).strip(), 16)
            if size == 0:
                return
            chunk = await self.reader.readexactly(size + 2)
            *lines, pending = (pending + chunk[:-2]).split(b"\n")
            for line in lines:
                yield line

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()
