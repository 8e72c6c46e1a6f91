"""Fixtures of the end-to-end tests: a Redis bus for processes to share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from magent2.bus import RedisStreamsBus


@pytest.fixture
async def bus(redis_url: str) -> AsyncIterator[RedisStreamsBus]:
    redis_bus = RedisStreamsBus(redis_url)
    yield redis_bus
    await redis_bus.close()
