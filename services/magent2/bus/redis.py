"""`Bus` on Redis Streams: XADD/XREAD BLOCK, consumer groups, XAUTOCLAIM, Lua for ordering."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from magent2.bus.api import START, Admission, Bus, BusMessage, BusUnavailable, Publication

FIELD = "data"

# XADD and queue the new id on the order list in one atomic step.
_PUBLISH_ORDERED = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'data', ARGV[1])
redis.call('RPUSH', KEYS[2], id)
return id
"""

# KEYS: first stream, stream, order list. ARGV: maxlen, ttl ('' for none), payload, first payloads...
_PUBLISH_AFTER = """
local ids = {}
for i = 4, #ARGV do
  ids[#ids + 1] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'data', ARGV[i])
end
if ARGV[2] ~= '' then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'data', ARGV[3])
redis.call('RPUSH', KEYS[3], id)
ids[#ids + 1] = id
return ids
"""

# KEYS: stream, order list, done key. ARGV: message id. -> 'done' | 'wait' | 'run'
_ADMIT = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 'done' end
local function earlier(a, b)
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end
while true do
  local head = redis.call('LINDEX', KEYS[2], 0)
  if not head or not earlier(head, ARGV[1]) then return 'run' end
  if #redis.call('XRANGE', KEYS[1], head, head) > 0 then return 'wait' end
  redis.call('LREM', KEYS[2], 1, head) -- trimmed away before anyone ran it
end
"""

# KEYS: stream, order list, done key, events stream.
# ARGV: group, message id, done ttl ('' for none), events ttl ('' for none), maxlen, event payloads...
_COMPLETE = """
for i = 6, #ARGV do
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 'data', ARGV[i])
end
if ARGV[4] ~= '' and #ARGV >= 6 then redis.call('EXPIRE', KEYS[4], ARGV[4]) end
if ARGV[3] ~= '' then redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[3]) end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('LREM', KEYS[2], 1, ARGV[2])
return 1
"""


def order_list_key(stream: str, order_key: str) -> str:
    return f"{stream}:order:{order_key}"


def done_key(stream: str, token: str) -> str:
    return f"{stream}:done:{token}"


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


@asynccontextmanager
async def _unavailable_on_connection_errors() -> AsyncIterator[None]:
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise BusUnavailable(f"redis unavailable: {exc}") from exc


class RedisStreamsBus(Bus):
    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        maxlen: int = 100_000,
        client: aioredis.Redis | None = None,
    ) -> None:
        self.url = url
        self.maxlen = maxlen
        self.redis: aioredis.Redis = client or aioredis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=3, health_check_interval=15
        )
        self._publish_ordered = self.redis.register_script(_PUBLISH_ORDERED)
        self._publish_after = self.redis.register_script(_PUBLISH_AFTER)
        self._admit = self.redis.register_script(_ADMIT)
        self._complete = self.redis.register_script(_COMPLETE)

    # -- streams --
    async def publish(
        self, stream: str, payload: str, *, order_key: str | None = None, ttl_s: int | None = None
    ) -> str:
        async with _unavailable_on_connection_errors():
            if order_key is not None:
                message_id = await self._publish_ordered(
                    keys=[stream, order_list_key(stream, order_key)], args=[payload, self.maxlen]
                )
                return str(message_id)
        return (await self.publish_many(stream, [payload], ttl_s=ttl_s))[0]

    async def publish_after(
        self, first: Publication, stream: str, payload: str, *, order_key: str
    ) -> tuple[list[str], str]:
        ttl = "" if first.ttl_s is None else str(first.ttl_s)
        async with _unavailable_on_connection_errors():
            ids = await self._publish_after(
                keys=[first.stream, stream, order_list_key(stream, order_key)],
                args=[self.maxlen, ttl, payload, *first.payloads],
            )
        return [str(i) for i in ids[:-1]], str(ids[-1])

    async def publish_many(
        self, stream: str, payloads: Sequence[str], *, ttl_s: int | None = None
    ) -> list[str]:
        async with _unavailable_on_connection_errors(), self.redis.pipeline(transaction=False) as pipe:
            for payload in payloads:
                pipe.xadd(stream, {FIELD: payload}, maxlen=self.maxlen)
            if ttl_s is not None:
                pipe.expire(stream, ttl_s)
            results = await pipe.execute()
        return [str(r) for r in results[: len(payloads)]]

    async def read(
        self, stream: str, after: str = START, *, count: int = 500, block_ms: int | None = None
    ) -> list[BusMessage]:
        async with _unavailable_on_connection_errors():
            reply = await self.redis.xread({stream: after}, count=count, block=block_ms)
        return _messages(reply)

    async def last_id(self, stream: str) -> str:
        async with _unavailable_on_connection_errors():
            newest = await self.redis.xrevrange(stream, count=1)
        return str(newest[0][0]) if newest else START

    async def streams(self, prefix: str) -> list[str]:
        names: set[str] = set()
        async with _unavailable_on_connection_errors():
            async for key in self.redis.scan_iter(match=_glob_escape(prefix) + "*", _type="stream"):
                names.add(str(key))
        return sorted(names)

    # -- consumer groups --
    async def ensure_group(self, stream: str, group: str) -> None:
        async with _unavailable_on_connection_errors():
            try:
                await self.redis.xgroup_create(stream, group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def consume(
        self, stream: str, group: str, consumer: str, *, count: int, block_ms: int
    ) -> list[BusMessage]:
        async with _unavailable_on_connection_errors():
            try:
                reply = await self.redis.xreadgroup(
                    group, consumer, {stream: ">"}, count=count, block=block_ms
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # The stream was deleted under us (FLUSHDB, operator cleanup): recreate and go on.
                await self.ensure_group(stream, group)
                return []
        return _messages(reply)

    async def reclaim(
        self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int
    ) -> list[BusMessage]:
        async with _unavailable_on_connection_errors():
            reply = await self.redis.xautoclaim(stream, group, consumer, min_idle_ms, "0-0", count=count)
        # reply: [next_cursor, [(id, fields) | entries trimmed meanwhile], deleted_ids]
        return [BusMessage(str(mid), fields[FIELD]) for mid, fields in reply[1] if fields]

    async def touch(self, stream: str, group: str, consumer: str, ids: Sequence[str]) -> None:
        if ids:
            async with _unavailable_on_connection_errors():
                await self.redis.xclaim(stream, group, consumer, 0, list(ids), justid=True)

    async def release(
        self, stream: str, group: str, consumer: str, ids: Sequence[str], *, idle_ms: int
    ) -> None:
        if ids:
            async with _unavailable_on_connection_errors():
                await self.redis.xclaim(stream, group, consumer, 0, list(ids), idle=idle_ms, justid=True)

    async def prune_consumers(self, stream: str, group: str, *, idle_ms: int) -> list[str]:
        async with _unavailable_on_connection_errors():
            try:
                consumers = await self.redis.xinfo_consumers(stream, group)
            except ResponseError:
                return []  # no such stream or group yet
            gone = [c["name"] for c in consumers if c["pending"] == 0 and c["idle"] >= idle_ms]
            for name in gone:
                await self.redis.xgroup_delconsumer(stream, group, name)
        return gone

    async def admit(self, stream: str, order_key: str, message_id: str, token: str) -> Admission:
        async with _unavailable_on_connection_errors():
            verdict = await self._admit(
                keys=[stream, order_list_key(stream, order_key), done_key(stream, token)], args=[message_id]
            )
        return cast(Admission, verdict)

    async def complete(
        self,
        stream: str,
        group: str,
        message_id: str,
        *,
        order_key: str | None = None,
        done_token: str | None = None,
        done_ttl_s: int = 86_400,
        publish: Publication | None = None,
    ) -> None:
        events = publish or Publication(stream, ())
        keys = [
            stream,
            order_list_key(stream, order_key or ""),
            done_key(stream, done_token or ""),
            events.stream,
        ]
        args = [
            group,
            message_id,
            "" if done_token is None else done_ttl_s,
            "" if events.ttl_s is None else events.ttl_s,
            self.maxlen,
            *events.payloads,
        ]
        async with _unavailable_on_connection_errors():
            await self._complete(keys=keys, args=args)

    # -- lifecycle --
    async def ping(self) -> None:
        async with _unavailable_on_connection_errors():
            await self.redis.ping()

    async def close(self) -> None:
        await self.redis.aclose()


def _messages(reply: Any) -> list[BusMessage]:
    if not reply:
        return []
    # XREAD / XREADGROUP reply for one stream: [[stream, [(id, {field: value}), ...]]]
    return [BusMessage(str(mid), fields[FIELD]) for mid, fields in reply[0][1]]
