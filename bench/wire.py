"""`python -m bench.wire`: the bus's Redis client (`magent2.bus.wire`) against redis-py, the same
EVALSHA from 1 and 16 tasks at once: client CPU and Redis CPU per command, commands per second.
Both on uvloop, as the gateway and the worker run."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench.__main__ import Row, cpu_seconds, print_table
from magent2.bus.wire import Redis, Script
from magent2.loop import run
from tests.support import RedisServer

SCRIPT = "return redis.call('INCR', KEYS[1])"


async def measure(
    call: Callable[[], Awaitable[Any]], commands: int, tasks: int, redis_pid: int
) -> tuple[float, float, float]:
    """Client CPU us/command, Redis CPU us/command, commands/s."""

    async def caller(n: int) -> None:
        for _ in range(n):
            await call()

    client, server, began = time.process_time(), cpu_seconds([redis_pid]), time.perf_counter()
    await asyncio.gather(*(caller(commands // tasks) for _ in range(tasks)))
    elapsed = time.perf_counter() - began
    return (
        (time.process_time() - client) / commands * 1e6,
        (cpu_seconds([redis_pid]) - server) / commands * 1e6,
        commands / elapsed,
    )


async def main_async(commands: int) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as workdir:
        server = RedisServer(Path(workdir))
        try:
            py = aioredis.Redis.from_url(server.url, decode_responses=True)
            sha = await py.script_load(SCRIPT)
            wire, script = Redis(server.url), Script(SCRIPT)
            clients: dict[str, Callable[[], Awaitable[Any]]] = {
                "redis-py": lambda: py.evalsha(sha, 1, "k"),  # type: ignore[no-untyped-call]
                "bus.wire": lambda: wire.script(script, ["k"], []),
            }
            for name, call in clients.items():
                await measure(call, 1000, 1, server.process.pid)  # warm up
                for tasks in (1, 16):
                    client, redis, rate = await measure(call, commands, tasks, server.process.pid)
                    label = f"EVALSHA from {tasks} task{'s' if tasks > 1 else ''}"
                    rows.append(
                        (label, f"{name}: client / redis us per command", f"{client:.1f} / {redis:.1f}")
                    )
                    rows.append((label, f"{name}: commands/s", f"{rate:,.0f}"))
            await py.aclose()
            await wire.close()
        finally:
            server.stop()
    return sorted(rows, key=lambda row: row[0])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.wire", description=__doc__)
    parser.add_argument("--commands", type=int, default=20_000, help="commands per figure")
    print_table(run(main_async(parser.parse_args().commands)))


if __name__ == "__main__":
    main()
