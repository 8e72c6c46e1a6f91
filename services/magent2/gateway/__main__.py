"""`python -m magent2.gateway`: the gateway under uvicorn."""

from __future__ import annotations

import sys

import uvicorn

from magent2.bus.build import build_bus
from magent2.gateway.app import create_app
from magent2.loop import run
from magent2.settings import GatewaySettings, load


async def _durability_problem(settings: GatewaySettings) -> str | None:
    bus = build_bus(settings)
    try:
        return await bus.durability_problem()
    finally:
        await bus.close()


def main(settings: GatewaySettings | None = None) -> None:
    settings = settings or load(GatewaySettings)
    if settings.durable_ack and (problem := run(_durability_problem(settings))):
        print(f"GATEWAY_DURABLE_ACK=true cannot be honoured: {problem}", file=sys.stderr)
        raise SystemExit(2)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
    )


if __name__ == "__main__":
    main()
