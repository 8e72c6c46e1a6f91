"""`python -m magent2.gateway`: the gateway under uvicorn."""

from __future__ import annotations

import uvicorn

from magent2 import telemetry
from magent2.bus import BusUnavailable
from magent2.bus.build import build_bus
from magent2.gateway.app import create_app
from magent2.loop import run, settle_heap
from magent2.settings import GatewaySettings, load
from magent2.startup import StartupError, exits_2_on_startup_errors, listen


async def _durability_problem(settings: GatewaySettings) -> str | None:
    bus = build_bus(settings)
    try:
        return await bus.durability_problem()
    except BusUnavailable as exc:
        return f"cannot ask Redis: {exc}"
    finally:
        await bus.close()


@exits_2_on_startup_errors("magent2 gateway")
def main(settings: GatewaySettings | None = None) -> None:
    settings = settings or load(GatewaySettings)
    if not settings.redis_url and not settings.in_memory:
        raise StartupError(
            "REDIS_URL is not set: workers reach the gateway only through Redis. Set REDIS_URL, "
            "or GATEWAY_IN_MEMORY=true for a gateway no worker can reach (tests, demos), "
            "or run `magent2 up` for gateway and workers in one process"
        )
    if settings.durable_ack and (problem := run(_durability_problem(settings))):
        raise StartupError(f"GATEWAY_DURABLE_ACK=true cannot be honoured: {problem}")
    telemetry.setup("gateway")
    sock = listen(settings.host, settings.port)
    config = uvicorn.Config(create_app(settings), log_level=settings.log_level, access_log=False)
    settle_heap()
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
