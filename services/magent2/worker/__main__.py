"""`python -m magent2.worker`: one worker process for AGENT_NAME's inbox."""

from __future__ import annotations

import asyncio
import signal

from magent2 import telemetry
from magent2.bus.build import build_bus
from magent2.loop import run, settle_heap
from magent2.settings import WorkerSettings, load
from magent2.startup import StartupError, configure_logging, exits_2_on_startup_errors
from magent2.worker.build import build_runner, build_worker
from magent2.worker.health import HealthServer


async def serve(settings: WorkerSettings) -> None:
    bus = build_bus(settings)
    runner = build_runner(settings, bus)
    worker = build_worker(settings, bus, runner)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    health = HealthServer(worker, bus, port=settings.health_port) if settings.health_port else None
    if health is not None:
        await health.start()
    settle_heap()
    try:
        await worker.run()
    finally:
        if health is not None:
            await health.stop()
        await runner.aclose()
        await bus.close()


@exits_2_on_startup_errors("magent2 worker")
def main(log_level: str = "info") -> None:
    settings = load(WorkerSettings)
    if not settings.redis_url:
        raise StartupError(
            "REDIS_URL is not set: a standalone worker consumes a Redis inbox "
            "(for one process without Redis, run `magent2 up`)"
        )
    configure_logging(log_level)
    telemetry.setup("worker")
    run(serve(settings))


if __name__ == "__main__":
    main()
