"""Choose the bus once, from settings: Redis Streams when REDIS_URL is set, else in memory."""

from __future__ import annotations

from magent2.bus.api import Bus
from magent2.bus.memory import InMemoryBus
from magent2.bus.redis import RedisStreamsBus
from magent2.settings import BusSettings


def build_bus(settings: BusSettings) -> Bus:
    if settings.redis_url:
        return RedisStreamsBus(
            settings.redis_url,
            maxlen=settings.stream_maxlen,
            socket_timeout_s=settings.redis_socket_timeout_seconds,
            max_connections=settings.redis_max_connections,
        )
    return InMemoryBus(maxlen=settings.stream_maxlen)
