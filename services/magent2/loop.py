"""Run a coroutine on uvloop when it is installed (it comes with uvicorn[standard]): the worker
spends most of its time in the event loop and Redis I/O, where uvloop is markedly cheaper. And
`settle_heap`, the garbage collector's settings for a long-lived server process."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(main)
    return uvloop.run(main)


def settle_heap() -> None:
    """For a long-lived server, once it is built: freeze what start-up allocated (imports,
    settings, the agent) so the collector never walks it again, and collect the youngest
    generation every 10,000 allocations instead of 700. The SDK allocates many short-lived
    objects per streamed delta; with CPython's defaults the collector took ~20% of a loaded
    worker's CPU, full collections ~150 ms each (`python -m bench.llm`)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(10_000, older, oldest)
