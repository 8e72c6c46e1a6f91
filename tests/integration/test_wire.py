"""The bus's Redis client (`bus.wire`) against a real redis-server: many tasks share one
connection and each gets its own reply; errors, cancellations, timeouts, restarts and lost
scripts are each confined to what they hit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from magent2.bus.wire import ConnectionFailed, Redis, ReplyError, Script
from tests.faults.proxy import DelayingProxy
from tests.support import RedisServer

pytestmark = pytest.mark.redis


@contextlib.asynccontextmanager
async def through_proxy(
    server: RedisServer, *, timeout_s: float
) -> AsyncIterator[tuple[DelayingProxy, Redis]]:
    """A client whose replies pass a proxy that can hold them back."""
    proxy = DelayingProxy(server.port)
    await proxy.start()
    redis = Redis(proxy.url, timeout_s=timeout_s)
    try:
        await redis.call("PING")
        yield proxy, redis
    finally:
        await redis.close()
        await proxy.stop()


async def clients(redis: Redis) -> int:
    listing = await redis.call("CLIENT", "LIST")
    return len([line for line in listing.splitlines() if "cmd=client" not in line])


async def test_concurrent_commands_share_one_connection_and_each_gets_its_own_reply(redis_url: str) -> None:
    redis = Redis(redis_url)
    try:
        replies = await asyncio.gather(*(redis.call("ECHO", f"reply-{i}") for i in range(2000)))
        assert replies == [f"reply-{i}" for i in range(2000)]
        assert await clients(redis) == 0  # only the CLIENT LIST connection itself: the same one
        assert await redis.many(("SET", "k", "v"), ("GET", "k"), ("DEL", "k")) == ["OK", "v", 1]
    finally:
        await redis.close()


async def test_an_error_reply_fails_only_its_own_command(redis_url: str) -> None:
    redis = Redis(redis_url)
    try:
        await redis.call("SET", "text", "x")
        wrong, right = await asyncio.gather(
            redis.call("LPUSH", "text", "y"), redis.call("GET", "text"), return_exceptions=True
        )
        assert isinstance(wrong, ReplyError) and "WRONGTYPE" in str(wrong)
        assert right == "x"
        first, second = await redis.many(("INCR", "text"), ("STRLEN", "text"))
        assert isinstance(first, ReplyError) and second == 1
    finally:
        await redis.close()


async def test_a_script_redis_forgot_is_loaded_again(redis_url: str) -> None:
    redis = Redis(redis_url)
    script = Script("return ARGV[1] .. KEYS[1]")
    try:
        assert await redis.script(script, ["k"], ["v-"]) == "v-k"
        await redis.call("SCRIPT", "FLUSH")
        assert await redis.script(script, ["k"], ["again-"]) == "again-k"
    finally:
        await redis.close()


async def test_a_cancelled_caller_does_not_shift_the_replies_behind_it(redis_server: RedisServer) -> None:
    async with through_proxy(redis_server, timeout_s=5) as (proxy, redis):
        proxy.delay_s = 0.3
        cancelled = asyncio.ensure_future(redis.call("ECHO", "first"))
        later = asyncio.ensure_future(redis.call("ECHO", "second"))
        await asyncio.sleep(0.05)
        cancelled.cancel()
        assert await later == "second"
        proxy.delay_s = 0
        assert await redis.call("ECHO", "third") == "third"


async def test_a_reply_later_than_the_timeout_fails_what_waits_and_the_next_call_reconnects(
    redis_server: RedisServer,
) -> None:
    async with through_proxy(redis_server, timeout_s=0.5) as (proxy, redis):
        proxy.delay_s = 1.5
        with pytest.raises(ConnectionFailed, match="timeout") as failed:
            await redis.call("INCR", "counter")
        assert failed.value.sent  # it reached Redis (and ran): the caller must not assume otherwise
        proxy.delay_s = 0
        assert await redis.call("GET", "counter") == "1"


async def test_a_restarted_redis_is_reconnected_to_and_an_unreachable_one_fails_unsent(
    tmp_path: Path,
) -> None:
    server = RedisServer(tmp_path)
    redis = Redis(server.url, timeout_s=2)
    try:
        await redis.call("SET", "k", "v")
        server.kill()
        await asyncio.sleep(0.2)  # the client sees the connection close
        with pytest.raises(ConnectionFailed) as down:
            await redis.call("GET", "k")
        assert not down.value.sent  # nothing listens: the command never left
        server = RedisServer.restart(server)
        assert await redis.call("PING") == "PONG"
    finally:
        await redis.close()
        server.stop()


async def test_password_and_database_come_from_the_url(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    admin = Redis(server.url)
    try:
        await admin.call("CONFIG", "SET", "requirepass", "hunter2")
        port = server.port
        redis = Redis(f"redis://:hunter2@127.0.0.1:{port}/3")
        await redis.call("SET", "where", "db3")
        assert await redis.call("CLIENT", "INFO") and "db=3" in await redis.call("CLIENT", "INFO")
        await redis.close()
        with pytest.raises(ConnectionFailed, match="refused the connection") as refused:
            await Redis(f"redis://:wrong@127.0.0.1:{port}/0").call("PING")
        assert not refused.value.sent
    finally:
        await admin.close()
        server.stop()


async def test_blocking_commands_wait_for_a_free_connection_of_their_own(redis_url: str) -> None:
    redis = Redis(redis_url, max_connections=3)  # the shared one + 2 for blocking commands
    try:
        reads = [asyncio.ensure_future(redis.blocking(5000, "BLPOP", f"q{i}", 5)) for i in range(3)]
        await asyncio.sleep(0.2)
        assert await redis.call("PING") == "PONG"  # the shared connection is never blocked
        assert await clients(redis) == 2  # the third read waits for one of them
        await redis.call("RPUSH", "q0", "a")
        await redis.call("RPUSH", "q1", "b")
        await redis.call("RPUSH", "q2", "c")
        assert sorted(tuple(r) for r in await asyncio.gather(*reads)) == [
            ("q0", "a"),
            ("q1", "b"),
            ("q2", "c"),
        ]
    finally:
        await redis.close()
