"""`Bus` on Redis Streams: XADD/XREAD BLOCK, consumer groups, XAUTOCLAIM, Lua for ordering."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from magent2.bus.api import (
    START,
    Admission,
    Bus,
    BusMessage,
    BusUnavailable,
    Completion,
    ConsumerState,
    ConversationBusy,
    IndexUpdate,
    Parking,
    Publication,
    QueueHealth,
    Ranking,
    Verdict,
    parse_id,
)
from magent2.bus.scripts import ADMIT, COMPLETE, DECIDE, PUBLISH_AFTER, PUBLISH_ORDERED, RENEW

FIELD = "data"


def order_list_key(stream: str, order_key: str) -> str:
    return f"{stream}:order:{order_key}"


def done_key(stream: str, token: str) -> str:
    return f"{stream}:done:{token}"


def accepted_key(stream: str, token: str) -> str:
    return f"{stream}:accepted:{token}"


def _index_spec(index: Sequence[IndexUpdate], first_key: int) -> list[dict[str, Any]]:
    """`index` for PUBLISH_AFTER: each update names its key by position in KEYS (1-based)."""
    spec: list[dict[str, Any]] = []
    for at, update in enumerate(index, start=first_key):
        item: dict[str, Any] = {"k": at}
        if isinstance(update, Ranking):
            item |= {"member": update.member, "score": update.score, "keep": update.keep}
        else:
            # {} would encode as a JSON object either way; cjson needs objects, not arrays
            item |= {"incr": dict(update.increments), "set": dict(update.fields), "nx": dict(update.defaults)}
        if update.ttl_s is not None:
            item["ttl"] = update.ttl_s
        spec.append(item)
    return spec


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


@asynccontextmanager
async def _unavailable_on_connection_errors() -> AsyncIterator[None]:
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        # redis-py says "Error ... connecting to" / "Timeout connecting to" when no connection
        # was made: then nothing was sent. Any other failure may have happened after the write.
        never_sent = "connecting to" in str(exc)
        raise BusUnavailable(f"redis unavailable: {exc}", outcome_unknown=not never_sent) from exc


class RedisStreamsBus(Bus):
    """`socket_timeout_s` bounds every reply; blocking reads are capped a second below it, so a
    slow reply is an error and never a blind resend (a resent XADD would duplicate tokens).
    Callers retry through `BusUnavailable`, and every write they retry is idempotent
    (de-duplicated acceptance, fenced completion)."""

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        maxlen: int = 100_000,
        socket_timeout_s: float = 10.0,
        max_connections: int = 64,
    ) -> None:
        self.url = url
        self.maxlen = maxlen
        self.max_block_ms = max(int((socket_timeout_s - 1) * 1000), 100)
        # A bounded pool that makes callers wait for a free connection (up to the socket
        # timeout) rather than fail at once with "Too many connections" under a burst.
        pool = BlockingConnectionPool.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=3,
            socket_timeout=socket_timeout_s,
            health_check_interval=15,
            # One resend on a dropped connection (a pooled connection to a restarted Redis, which
            # never saw the command); never on a timeout, where the command may have run.
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            max_connections=max_connections,
            timeout=socket_timeout_s,
        )
        self.redis: aioredis.Redis = aioredis.Redis.from_pool(pool)  # closing it closes the pool
        self._publish_ordered = self.redis.register_script(PUBLISH_ORDERED)
        self._decide = self.redis.register_script(DECIDE)
        self._publish_after = self.redis.register_script(PUBLISH_AFTER)
        self._admit = self.redis.register_script(ADMIT)
        self._complete = self.redis.register_script(COMPLETE)
        self._renew = self.redis.register_script(RENEW)

    def _block(self, block_ms: int | None) -> int | None:
        return None if block_ms is None else min(block_ms, self.max_block_ms)

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
        self,
        first: Publication,
        stream: str,
        payload: str,
        *,
        order_key: str,
        token: str | None = None,
        token_ttl_s: int = 86_400,
        durable_timeout_ms: int | None = None,
        only_if_idle: bool = False,
        index: Sequence[IndexUpdate] = (),
    ) -> tuple[list[str], str]:
        ttl = "" if first.ttl_s is None else str(first.ttl_s)
        keys = [first.stream, stream, order_list_key(stream, order_key), accepted_key(stream, token or "")]
        spec = json.dumps(_index_spec(index, len(keys) + 1)) if index else "[]"
        keys += [update.key for update in index]
        args: list[str | int] = [self.maxlen, ttl, payload, "" if token is None else token_ttl_s]
        args += ["1" if only_if_idle else "", spec, *first.payloads]
        async with _unavailable_on_connection_errors():
            if durable_timeout_ms is None:
                ids = await self._publish_after(keys=keys, args=args)
            else:
                # WAITAOF waits for this connection's writes: send both on one pipeline.
                async with self.redis.pipeline(transaction=False) as pipe:
                    await self._publish_after(keys=keys, args=args, client=pipe)
                    pipe.execute_command("WAITAOF", 1, 0, durable_timeout_ms)
                    ids, (fsynced, _) = await pipe.execute()
                if not fsynced and ids != b"busy" and ids != "busy":
                    raise BusUnavailable(
                        f"the message was written but not fsynced to the AOF within {durable_timeout_ms} ms"
                    )
        if ids in ("busy", b"busy"):
            raise ConversationBusy(f"an earlier message under {order_key!r} is unfinished")
        return [str(i) for i in ids[:-1]], str(ids[-1])

    async def unfinished(self, stream: str, order_key: str) -> int:
        async with _unavailable_on_connection_errors():
            return int(await self.redis.llen(order_list_key(stream, order_key)))

    async def put_value(self, key: str, value: str, *, ttl_s: int | None = None) -> None:
        async with _unavailable_on_connection_errors():
            await self.redis.set(key, value, ex=ttl_s)

    async def get_value(self, key: str) -> str | None:
        async with _unavailable_on_connection_errors():
            value = await self.redis.get(key)
        return None if value is None else str(value)

    async def tally(self, key: str) -> dict[str, str]:
        async with _unavailable_on_connection_errors():
            found: dict[Any, Any] = await self.redis.hgetall(key)
        return {str(k): str(v) for k, v in found.items()}

    async def ranked(
        self, key: str, *, below: float | None = None, limit: int = 50
    ) -> list[tuple[str, float]]:
        top = "+inf" if below is None else f"({below}"
        async with _unavailable_on_connection_errors():
            found: Any = await self.redis.zrevrangebyscore(
                key, top, "-inf", start=0, num=limit, withscores=True
            )
        return [(str(member), float(score)) for member, score in found]

    async def ranked_count(self, key: str) -> int:
        async with _unavailable_on_connection_errors():
            return int(await self.redis.zcard(key))

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

    async def publish_batch(self, publications: Sequence[Publication]) -> None:
        async with _unavailable_on_connection_errors(), self.redis.pipeline(transaction=False) as pipe:
            for publication in publications:
                for payload in publication.payloads:
                    pipe.xadd(publication.stream, {FIELD: payload}, maxlen=self.maxlen)
                if publication.ttl_s is not None:
                    pipe.expire(publication.stream, publication.ttl_s)
            await pipe.execute()

    async def read(
        self, stream: str, after: str = START, *, count: int = 500, block_ms: int | None = None
    ) -> list[BusMessage]:
        return (await self.read_many({stream: after}, count=count, block_ms=block_ms)).get(stream, [])

    async def read_many(
        self, cursors: Mapping[str, str], *, count: int = 500, block_ms: int | None = None
    ) -> dict[str, list[BusMessage]]:
        if not cursors:
            return {}
        async with _unavailable_on_connection_errors():
            streams: dict[Any, Any] = dict(cursors)
            reply: Any = await self.redis.xread(streams, count=count, block=self._block(block_ms))
        return _messages(reply)

    async def last_id(self, stream: str) -> str:
        async with _unavailable_on_connection_errors():
            newest = await self.redis.xrevrange(stream, count=1)
        return str(newest[0][0]) if newest else START

    async def exists(self, stream: str) -> bool:
        async with _unavailable_on_connection_errors():
            return bool(await self.redis.exists(stream))

    async def length(self, stream: str) -> int:
        async with _unavailable_on_connection_errors():
            return int(await self.redis.xlen(stream))

    async def delete(self, stream: str, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        async with _unavailable_on_connection_errors():
            return int(await self.redis.xdel(stream, *ids))

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
                    group, consumer, {stream: ">"}, count=count, block=self._block(block_ms)
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # The stream was deleted under us (FLUSHDB, operator cleanup): recreate and go on.
                await self.ensure_group(stream, group)
                return []
        return _messages(reply).get(stream, [])

    async def reclaim(
        self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int
    ) -> list[BusMessage]:
        async with _unavailable_on_connection_errors():
            reply = await self.redis.xautoclaim(stream, group, consumer, min_idle_ms, "0-0", count=count)
        # reply: [next_cursor, [(id, fields) | entries trimmed meanwhile], deleted_ids]
        return [BusMessage(str(mid), fields[FIELD]) for mid, fields in reply[1] if fields]

    async def touch(self, stream: str, group: str, consumer: str, ids: Sequence[str]) -> list[str]:
        if not ids:
            return []
        async with _unavailable_on_connection_errors():
            lost = await self._renew(keys=[stream], args=[group, consumer, 0, *ids])
        return [str(i) for i in lost]

    async def release(
        self, stream: str, group: str, consumer: str, ids: Sequence[str], *, idle_ms: int
    ) -> None:
        if ids:
            async with _unavailable_on_connection_errors():
                await self._renew(keys=[stream], args=[group, consumer, idle_ms, *ids])

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

    async def queue_health(self, stream: str, group: str) -> QueueHealth:
        async with _unavailable_on_connection_errors(), self.redis.pipeline(transaction=False) as pipe:
            pipe.xinfo_groups(stream)
            pipe.xinfo_consumers(stream, group)
            pipe.xpending(stream, group)
            pipe.xrevrange(stream, count=1)
            # a missing stream or group answers errors, returned in place of the replies
            groups, consumers, pending, newest = await pipe.execute(raise_on_error=False)
        if not isinstance(groups, list) or isinstance(consumers, Exception):
            return QueueHealth(0, 0, 0.0, 0, [])  # no such stream or group yet
        found: dict[str, Any] = next((g for g in groups if g["name"] == group), {})
        in_flight = int(pending["pending"]) if isinstance(pending, dict) else 0
        oldest = pending.get("min") if isinstance(pending, dict) and in_flight else None
        now_ms = time.time() * 1000
        last_ms = parse_id(str(newest[0][0]))[0] if isinstance(newest, list) and newest else 0
        # `lag` is nil when Redis cannot tell (entries deleted in the middle): count them instead.
        lag = found.get("lag")
        return QueueHealth(
            backlog=int(lag) if lag is not None else await self._undelivered(stream, found),
            in_flight=in_flight,
            oldest_pending_s=max(0.0, (now_ms - parse_id(str(oldest))[0]) / 1000) if oldest else 0.0,
            last_entry_ms=last_ms,
            consumers=[ConsumerState(str(c["name"]), int(c["idle"]), int(c["pending"])) for c in consumers],
        )

    async def _undelivered(self, stream: str, group: dict[str, Any]) -> int:
        after = str(group.get("last-delivered-id") or START)
        async with _unavailable_on_connection_errors():
            entries: Any = await self.redis.xrange(stream, f"({after}", "+", count=10_000)
        return len(entries)

    async def admit(
        self,
        stream: str,
        group: str,
        consumer: str,
        message_id: str,
        *,
        order_key: str,
        token: str,
        max_deliveries: int,
    ) -> Admission:
        keys = [stream, order_list_key(stream, order_key), done_key(stream, token)]
        async with _unavailable_on_connection_errors():
            verdict = await self._admit(keys=keys, args=[message_id, group, consumer, max_deliveries])
        return cast(Admission, verdict)

    async def complete(
        self,
        stream: str,
        group: str,
        consumer: str,
        message_id: str,
        *,
        order_key: str | None = None,
        done_token: str | None = None,
        done_ttl_s: int = 86_400,
        publish: Sequence[Publication] = (),
        park: Parking | None = None,
    ) -> Completion:
        keys = [stream, order_list_key(stream, order_key or ""), done_key(stream, done_token or "")]
        keys += [park.record_key, park.due_key] if park else [done_key(stream, ""), done_key(stream, "")]
        args: list[str | int | float] = [
            group,
            message_id,
            consumer,
            "" if done_token is None else done_ttl_s,
            self.maxlen,
        ]
        if park:
            args += ["1", park.record, park.ttl_s, park.due_at, park.due_member]
        else:
            args += ["", "", "", "", ""]
        for publication in publish:
            keys.append(publication.stream)
            args += ["" if publication.ttl_s is None else publication.ttl_s, len(publication.payloads)]
            args += publication.payloads
        async with _unavailable_on_connection_errors():
            verdict = await self._complete(keys=keys, args=args)
        return cast(Completion, verdict)

    async def decide(
        self,
        record_key: str,
        call_id: str,
        decision: str,
        *,
        event: Publication,
        order_key: str,
        inbox: str,
        due_key: str,
        due_member: str,
    ) -> tuple[Verdict, str | None]:
        keys = [record_key, event.stream, inbox, order_list_key(inbox, order_key), due_key]
        ttl = "" if event.ttl_s is None else event.ttl_s
        args: list[str | int] = [call_id, decision, event.payloads[0], self.maxlen, ttl, due_member]
        async with _unavailable_on_connection_errors():
            verdict, *rest = await self._decide(keys=keys, args=args)
        return cast(Verdict, str(verdict)), str(rest[0]) if rest else None

    async def due(self, due_key: str, now: float, *, count: int = 100) -> list[str]:
        async with _unavailable_on_connection_errors():
            members = await self.redis.zrangebyscore(due_key, "-inf", now, start=0, num=count)
        return [str(m) for m in members]

    # -- lifecycle --
    async def durability_problem(self) -> str | None:
        async with _unavailable_on_connection_errors():
            info = await self.redis.info("persistence")
            try:
                await self.redis.execute_command("WAITAOF", 0, 0, 1)  # type: ignore[no-untyped-call]
            except ResponseError as exc:
                return f"the Redis server cannot wait for fsync (WAITAOF needs Redis >= 7.2): {exc}"
        if not info.get("aof_enabled"):
            return "the Redis server has appendonly off: there is no AOF to wait for"
        return None

    async def ping(self) -> None:
        async with _unavailable_on_connection_errors():
            await self.redis.ping()

    async def close(self) -> None:
        await self.redis.aclose()


def _messages(reply: Any) -> dict[str, list[BusMessage]]:
    # XREAD / XREADGROUP reply: [[stream, [(id, {field: value}), ...]], ...]
    return {
        str(stream): [BusMessage(str(mid), fields[FIELD]) for mid, fields in entries]
        for stream, entries in reply or ()
    }
