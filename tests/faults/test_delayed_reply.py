"""A Redis reply slower than the socket timeout: the worker retries its completion, and the
retry, finding the first attempt went through, publishes nothing a second time."""

from __future__ import annotations

import asyncio
from typing import Any

from magent2.bus import Bus, RedisStreamsBus
from magent2.worker import EchoRunner, Worker
from tests.faults.proxy import DelayingProxy
from tests.support import RedisServer, conversation_events, send_envelope, wait_for_outputs, workers_running


class SlowFirstCompletion:
    """Failure injection: once armed, the reply to the next completion comes 3 s late (the
    socket timeout is 2 s)."""

    def __init__(self, inner: Bus, proxy: DelayingProxy) -> None:
        self.inner, self.proxy, self.armed = inner, proxy, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def complete(self, *args: Any, **kwargs: Any) -> Any:
        if self.armed:
            self.armed = False
            self.proxy.delay_s = 3.0
            asyncio.get_running_loop().call_later(3.5, setattr, self.proxy, "delay_s", 0.0)
        return await self.inner.complete(*args, **kwargs)


async def test_completion_retried_after_a_late_reply_publishes_once(
    redis_server: RedisServer, redis_url: str
) -> None:
    proxy = DelayingProxy(redis_server.port)
    await proxy.start()
    direct = RedisStreamsBus(redis_url)
    through_proxy = RedisStreamsBus(proxy.url, socket_timeout_s=2)
    bus: Any = SlowFirstCompletion(through_proxy, proxy)
    worker = Worker(bus, EchoRunner(), agent_name="DevAgent", visibility_timeout_s=30)
    try:
        async with workers_running(worker):
            await send_envelope(direct, "m0")  # the completion script gets loaded into Redis
            await wait_for_outputs(direct, "c1", 1, timeout=30)
            bus.armed = True
            for i in (1, 2):
                await send_envelope(direct, f"m{i}")
            await wait_for_outputs(direct, "c1", 3, timeout=30)
            await asyncio.sleep(0.5)
        events = await conversation_events(direct, "c1")
        assert [e.text for e in events if e.event == "output"] == ["echo: m0", "echo: m1", "echo: m2"]
        assert not [e for e in events if e.event == "error"]
        assert worker.metrics.completions.labels("duplicate")._value.get() == 1  # the retry
        assert worker.metrics.completions.labels("ok")._value.get() == 2
    finally:
        await through_proxy.close()
        await direct.close()
        await proxy.stop()
