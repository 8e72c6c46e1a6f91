"""What every entry point checks before it serves: a port it can listen on and a Redis that
answers. Each failure is one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import socket
import sys
from collections.abc import Callable
from typing import TypeVar

from magent2.bus import Bus, BusUnavailable

T = TypeVar("T")


class StartupError(Exception):
    """The process cannot start as configured; the message says why and what to do."""


def listen(host: str, port: int, *, hint: str = "--port / GATEWAY_PORT") -> socket.socket:
    """A bound socket for uvicorn (`sockets=[...]`), so a busy port is reported before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(
                f"port {port} on {host} is already in use; choose another with {hint}"
            ) from None
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


async def require_bus(bus: Bus, where: str, timeout_s: float = 5.0) -> None:
    try:
        await asyncio.wait_for(bus.ping(), timeout_s)
    except (BusUnavailable, TimeoutError) as exc:
        raise StartupError(f"cannot reach Redis at {where}: {exc or 'no answer in time'}") from None


def exits_2_on_startup_errors(command: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    def decorate(main: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(main)
        def wrapper(*args: object, **kwargs: object) -> T:
            try:
                return main(*args, **kwargs)
            except StartupError as exc:
                print(f"{command}: {exc}", file=sys.stderr)
                raise SystemExit(2) from None

        return wrapper

    return decorate


def configure_logging(level: str) -> None:
    """Our messages at `level`; each model/HTTP request (httpx logs them at INFO) only at debug."""
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("httpx", "openai"):
        logging.getLogger(chatty).setLevel(logging.NOTSET if level.lower() == "debug" else logging.WARNING)
