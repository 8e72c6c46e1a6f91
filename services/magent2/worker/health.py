"""A tiny HTTP endpoint for worker pods: /livez (the consume loop is turning), /readyz (it is, and
the bus answers) and /metrics (Prometheus). Plain asyncio: a worker needs no web framework."""

from __future__ import annotations

import asyncio
import contextlib
import time

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from magent2.bus import Bus, BusUnavailable
from magent2.worker.worker import Worker


class HealthServer:
    def __init__(self, worker: Worker, bus: Bus, *, port: int, stale_after_s: float = 30.0) -> None:
        self.worker, self.bus, self.port, self.stale_after_s = worker, bus, port, stale_after_s
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "0.0.0.0", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _status(self, path: str) -> tuple[int, str]:
        if path == "/metrics":
            return 200, generate_latest(self.worker.metrics.registry).decode()
        if path not in ("/livez", "/readyz"):
            return 404, "not found"
        if time.monotonic() - self.worker.last_beat > self.stale_after_s:
            return 503, "consume loop stalled"
        if path == "/readyz":
            if self.worker.stopping:
                return 503, "stopping"
            try:
                await asyncio.wait_for(self.bus.ping(), 2)
            except (BusUnavailable, TimeoutError) as exc:
                return 503, f"bus unavailable: {exc}"
        return 200, "ok"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            request = await asyncio.wait_for(reader.readline(), 5)
            parts = request.decode("latin-1").split()
            code, text = await self._status(parts[1] if len(parts) > 1 else "/")
            body = text.encode()
            kind = CONTENT_TYPE_LATEST if parts[1:2] == ["/metrics"] else "text/plain"
            writer.write(
                f"HTTP/1.1 {code} {'OK' if code == 200 else 'Error'}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        writer.close()
