"""Run a coroutine on uvloop when it is installed (it comes with uvicorn[standard]): the worker
spends most of its time in the event loop and Redis I/O, where uvloop is markedly cheaper."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(main)
    return uvloop.run(main)
