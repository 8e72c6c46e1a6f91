"""Fixtures of the run-control tests: the Redis the worker processes share, and a gateway on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from magent2.bus import RedisStreamsBus
from magent2.gateway.app import create_app
from magent2.settings import GatewaySettings
from tests.support import serve_app


@pytest.fixture
async def bus(redis_url: str) -> AsyncIterator[RedisStreamsBus]:
    """The Redis the worker processes use, read directly to check what they published."""
    redis_bus = RedisStreamsBus(redis_url)
    yield redis_bus
    await redis_bus.close()


@pytest.fixture
async def gateway(redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(GatewaySettings(REDIS_URL=redis_url))
    async with serve_app(app) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        yield http
