from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from magent2.bus import Bus, InMemoryBus, RedisStreamsBus
from tests.support import RedisServer

# The SDK must never try to reach OpenAI from tests.
os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    redis_server.flush()
    return redis_server.url


@pytest.fixture(params=["memory", "redis"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    """Each test using `bus` runs against both implementations: one contract."""
    if request.param == "memory":
        yield InMemoryBus()
        return
    url = request.getfixturevalue("redis_url")
    redis_bus = RedisStreamsBus(url)
    yield redis_bus
    await redis_bus.close()


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]
