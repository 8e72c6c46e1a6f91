"""A gateway mounted under /magent2 (as behind an Ingress that keeps the path prefix), with an echo
worker on an in-memory bus: `python -m tests.console.prefixed_gateway PORT`."""

from __future__ import annotations

import asyncio
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from magent2.bus import InMemoryBus
from magent2.gateway.app import create_app
from magent2.settings import GatewaySettings
from magent2.worker import EchoRunner, Worker


async def main(port: int) -> None:
    bus = InMemoryBus()
    worker = Worker(bus, EchoRunner(token_delay_s=0.02), agent_name="DevAgent")
    gateway = create_app(GatewaySettings(GATEWAY_IN_MEMORY=True), bus=bus)
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Mount("/magent2", app=gateway)]), port=port))
    working = asyncio.create_task(worker.run())
    await server.serve()  # until SIGTERM
    working.cancel()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
