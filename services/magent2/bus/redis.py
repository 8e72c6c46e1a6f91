"""`Bus` on Redis Streams: XADD/XREAD BLOCK, consumer groups, XAUTOCLAIM, Lua for ordering.
Commands go through `bus.wire` (auto-pipelined on one shared connection; blocking reads on
connections of their own)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

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
from magent2.bus.wire import Arg, ConnectionFailed, Redis, ReplyError, Script

FIELD = "data"
FIRST = "first"  # set by PUBLISH_AFTER: see `BusMessage.first_in_order`


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
async def unavailable_on_connection_errors() -> AsyncIterator[None]:
    """The wire client's failures as the Bus API's `BusUnavailable`."""
    try:
        yield
    except ConnectionFailed as exc:
        raise BusUnavailable(f"redis unavailable: {exc}", outcome_unknown=exc.sent) from exc
    except OSError as exc:
        raise BusUnavailable(f"redis unavailable: {exc}") from exc


_SCRIPTS = {
    name: Script(source)
    for name, source in {
        "publish_ordered": PUBLISH_ORDERED,
        "publish_after": PUBLISH_AFTER,
        "admit": ADMIT,
        "complete": COMPLETE,
        "decide": DECIDE,
        "renew": RENEW,
    }.items()
}


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
        self.wire = Redis(url, timeout_s=socket_timeout_s, max_connections=max_connections)

    def _block(self, block_ms: int | None) -> int | None:
        return None if block_ms is None else min(max(block_ms, 1), self.max_block_ms)

    async def _call(self, *args: Arg) -> Any:
        async with unavailable_on_connection_errors():
            return await self.wire.call(*args)

    async def _script(self, name: str, keys: list[str], args: list[Arg]) -> Any:
        async with unavailable_on_connection_errors():
            return await self.wire.script(_SCRIPTS[name], keys, args)

    # -- streams --
    async def publish(
        self, stream: str, payload: str, *, order_key: str | None = None, ttl_s: int | None = None
    ) -> str:
        if order_key is not None:
            keys = [stream, order_list_key(stream, order_key)]
            return str(await self._script("publish_ordered", keys, [payload, self.maxlen]))
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
        keys.append(done_key(stream, token or ""))
        spec = json.dumps(_index_spec(index, len(keys) + 1)) if index else "[]"
        keys += [update.key for update in index]
        args: list[Arg] = [self.maxlen, ttl, payload, "" if token is None else token_ttl_s]
        args += ["1" if only_if_idle else "", spec, *first.payloads]
        if durable_timeout_ms is None:
            ids = await self._script("publish_after", keys, args)
        else:
            ids = await self._durably(keys, args, durable_timeout_ms)
        if ids == "busy":
            raise ConversationBusy(f"an earlier message under {order_key!r} is unfinished")
        return [str(i) for i in ids[:-1]], str(ids[-1])

    async def _durably(self, keys: list[str], args: list[Arg], timeout_ms: int) -> Any:
        """PUBLISH_AFTER, then WAITAOF for it. WAITAOF waits for the writes of its own connection
        and blocks it meanwhile: both go on a connection of their own, never the shared one."""
        script = _SCRIPTS["publish_after"]
        async with unavailable_on_connection_errors(), self.wire.dedicated() as link:
            await link.send(("SCRIPT", "LOAD", script.source))  # a restarted Redis may lack it
            written = link.send(("EVALSHA", script.sha, len(keys), *keys, *args))
            waited = link.send(("WAITAOF", 1, 0, timeout_ms), extra_s=timeout_ms / 1000)
            ids, (fsynced, _) = await written, await waited
        if not fsynced and ids != "busy":
            raise BusUnavailable(f"the message was written but not fsynced to the AOF within {timeout_ms} ms")
        return ids

    async def unfinished(self, stream: str, order_key: str) -> int:
        return int(await self._call("LLEN", order_list_key(stream, order_key)))

    async def put_value(self, key: str, value: str, *, ttl_s: int | None = None) -> None:
        await self._call("SET", key, value, *(("EX", ttl_s) if ttl_s is not None else ()))

    async def get_value(self, key: str) -> str | None:
        value = await self._call("GET", key)
        return None if value is None else str(value)

    async def tally(self, key: str) -> dict[str, str]:
        return _pairs(await self._call("HGETALL", key))

    async def ranked(
        self, key: str, *, below: float | None = None, limit: int = 50
    ) -> list[tuple[str, float]]:
        top = "+inf" if below is None else f"({below}"
        found = await self._call("ZREVRANGEBYSCORE", key, top, "-inf", "WITHSCORES", "LIMIT", 0, limit)
        return [(str(member), float(score)) for member, score in zip(found[::2], found[1::2], strict=True)]

    async def ranked_count(self, key: str) -> int:
        return int(await self._call("ZCARD", key))

    async def publish_many(
        self, stream: str, payloads: Sequence[str], *, ttl_s: int | None = None
    ) -> list[str]:
        replies = await self._many(_appends(Publication(stream, payloads, ttl_s), self.maxlen))
        return [str(r) for r in replies[: len(payloads)]]

    async def publish_batch(self, publications: Sequence[Publication]) -> None:
        await self._many([c for p in publications for c in _appends(p, self.maxlen)])

    async def _many(self, commands: list[tuple[Arg, ...]]) -> list[Any]:
        async with unavailable_on_connection_errors():
            replies = await self.wire.many(*commands)
        for reply in replies:
            if isinstance(reply, ReplyError):
                raise reply
        return replies

    async def read(
        self, stream: str, after: str = START, *, count: int = 500, block_ms: int | None = None
    ) -> list[BusMessage]:
        return (await self.read_many({stream: after}, count=count, block_ms=block_ms)).get(stream, [])

    async def read_many(
        self, cursors: Mapping[str, str], *, count: int = 500, block_ms: int | None = None
    ) -> dict[str, list[BusMessage]]:
        if not cursors:
            return {}
        streams = [*cursors.keys(), *cursors.values()]
        block = self._block(block_ms)
        async with unavailable_on_connection_errors():
            if block is None:
                reply = await self.wire.call("XREAD", "COUNT", count, "STREAMS", *streams)
            else:
                reply = await self.wire.blocking(
                    block, "XREAD", "COUNT", count, "BLOCK", block, "STREAMS", *streams
                )
        return _messages(reply)

    async def last_id(self, stream: str) -> str:
        newest = await self._call("XREVRANGE", stream, "+", "-", "COUNT", 1)
        return str(newest[0][0]) if newest else START

    async def exists(self, stream: str) -> bool:
        return bool(await self._call("EXISTS", stream))

    async def length(self, stream: str) -> int:
        return int(await self._call("XLEN", stream))

    async def delete(self, stream: str, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        return int(await self._call("XDEL", stream, *ids))

    async def streams(self, prefix: str) -> list[str]:
        names: set[str] = set()
        cursor, pattern = "0", _glob_escape(prefix) + "*"
        while True:
            cursor, found = await self._call(
                "SCAN", cursor, "MATCH", pattern, "COUNT", 1000, "TYPE", "stream"
            )
            names.update(str(name) for name in found)
            if cursor == "0":
                return sorted(names)

    # -- consumer groups --
    async def ensure_group(self, stream: str, group: str) -> None:
        try:
            await self._call("XGROUP", "CREATE", stream, group, "0", "MKSTREAM")
        except ReplyError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def consume(
        self, stream: str, group: str, consumer: str, *, count: int, block_ms: int
    ) -> list[BusMessage]:
        block = self._block(block_ms) or 0
        command = (
            "XREADGROUP",
            "GROUP",
            group,
            consumer,
            "COUNT",
            count,
            "BLOCK",
            block,
            "STREAMS",
            stream,
            ">",
        )
        try:
            async with unavailable_on_connection_errors():
                reply = await self.wire.blocking(block, *command)
        except ReplyError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # The stream was deleted under us (FLUSHDB, operator cleanup): recreate and go on.
            await self.ensure_group(stream, group)
            return []
        return _messages(reply).get(stream, [])

    async def reclaim(
        self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int
    ) -> list[BusMessage]:
        reply = await self._call("XAUTOCLAIM", stream, group, consumer, min_idle_ms, "0-0", "COUNT", count)
        # reply: [next_cursor, [[id, [field, value]] | entries trimmed meanwhile], deleted_ids]
        return _entries(reply[1])

    async def touch(self, stream: str, group: str, consumer: str, ids: Sequence[str]) -> list[str]:
        if not ids:
            return []
        lost = await self._script("renew", [stream], [group, consumer, 0, *ids])
        return [str(i) for i in lost]

    async def release(
        self, stream: str, group: str, consumer: str, ids: Sequence[str], *, idle_ms: int
    ) -> None:
        if ids:
            await self._script("renew", [stream], [group, consumer, idle_ms, *ids])

    async def prune_consumers(self, stream: str, group: str, *, idle_ms: int) -> list[str]:
        try:
            consumers = [_pairs(c) for c in await self._call("XINFO", "CONSUMERS", stream, group)]
        except ReplyError:
            return []  # no such stream or group yet
        gone = [c["name"] for c in consumers if int(c["pending"]) == 0 and int(c["idle"]) >= idle_ms]
        for name in gone:
            await self._call("XGROUP", "DELCONSUMER", stream, group, name)
        return gone

    async def queue_health(self, stream: str, group: str) -> QueueHealth:
        async with unavailable_on_connection_errors():
            # a missing stream or group answers errors, returned in place of the replies
            groups, consumers, pending, newest = await self.wire.many(
                ("XINFO", "GROUPS", stream),
                ("XINFO", "CONSUMERS", stream, group),
                ("XPENDING", stream, group),
                ("XREVRANGE", stream, "+", "-", "COUNT", 1),
            )
        if isinstance(groups, ReplyError) or isinstance(consumers, ReplyError):
            return QueueHealth(0, 0, 0.0, 0, [])  # no such stream or group yet
        found = next((g for g in map(_pairs, groups) if g["name"] == group), {})
        # XPENDING summary: [count, smallest id, greatest id, [[consumer, count], ...]]
        in_flight = int(pending[0]) if isinstance(pending, list) else 0
        oldest = pending[1] if isinstance(pending, list) and in_flight else None
        now_ms = time.time() * 1000
        last_ms = parse_id(str(newest[0][0]))[0] if isinstance(newest, list) and newest else 0
        # `lag` is nil when Redis cannot tell (entries deleted in the middle): count them instead.
        lag = found.get("lag")
        return QueueHealth(
            backlog=int(lag) if lag is not None else await self._undelivered(stream, found),
            in_flight=in_flight,
            oldest_pending_s=max(0.0, (now_ms - parse_id(str(oldest))[0]) / 1000) if oldest else 0.0,
            last_entry_ms=last_ms,
            consumers=[
                ConsumerState(str(c["name"]), int(c["idle"]), int(c["pending"]))
                for c in map(_pairs, consumers)
            ],
        )

    async def _undelivered(self, stream: str, group: dict[str, Any]) -> int:
        after = str(group.get("last-delivered-id") or START)
        entries = await self._call("XRANGE", stream, f"({after}", "+", "COUNT", 10_000)
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
        return cast(
            Admission, await self._script("admit", keys, [message_id, group, consumer, max_deliveries])
        )

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
        args: list[Arg] = [group, message_id, consumer, "" if done_token is None else done_ttl_s, self.maxlen]
        if park:
            args += ["1", park.record, park.ttl_s, park.due_at, park.due_member]
        else:
            args += ["", "", "", "", ""]
        for publication in publish:
            keys.append(publication.stream)
            args += ["" if publication.ttl_s is None else publication.ttl_s, len(publication.payloads)]
            args += publication.payloads
        return cast(Completion, await self._script("complete", keys, args))

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
        args: list[Arg] = [call_id, decision, event.payloads[0], self.maxlen, ttl, due_member]
        verdict, *rest = await self._script("decide", keys, args)
        return cast(Verdict, str(verdict)), str(rest[0]) if rest else None

    async def due(self, due_key: str, now: float, *, count: int = 100) -> list[str]:
        members = await self._call("ZRANGEBYSCORE", due_key, "-inf", now, "LIMIT", 0, count)
        return [str(m) for m in members]

    # -- lifecycle --
    async def durability_problem(self) -> str | None:
        info = await self._call("INFO", "persistence")
        try:
            await self._call("WAITAOF", 0, 0, 1)
        except ReplyError as exc:
            return f"the Redis server cannot wait for fsync (WAITAOF needs Redis >= 7.2): {exc}"
        if "aof_enabled:1" not in info.split():
            return "the Redis server has appendonly off: there is no AOF to wait for"
        return None

    async def ping(self) -> None:
        await self._call("PING")

    async def close(self) -> None:
        await self.wire.close()


def _appends(publication: Publication, maxlen: int) -> list[tuple[Arg, ...]]:
    commands: list[tuple[Arg, ...]] = [
        ("XADD", publication.stream, "MAXLEN", "~", maxlen, "*", FIELD, payload)
        for payload in publication.payloads
    ]
    if publication.ttl_s is not None:
        commands.append(("EXPIRE", publication.stream, publication.ttl_s))
    return commands


def _pairs(flat: list[Any]) -> dict[str, Any]:
    """A RESP2 map ([k1, v1, k2, v2, ...]) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _entries(entries: list[Any]) -> list[BusMessage]:
    # [[id, [field, value, ...]], ...]; an entry trimmed away meanwhile has no fields
    return [_entry(mid, fields) for mid, fields in entries if fields]


def _entry(mid: str, fields: list[str]) -> BusMessage:
    if len(fields) == 2:  # only FIELD
        return BusMessage(mid, fields[1])
    found = dict(zip(fields[::2], fields[1::2], strict=True))
    return BusMessage(mid, found[FIELD], first_in_order=found.get(FIRST) == "1")


def _messages(reply: Any) -> dict[str, list[BusMessage]]:
    # XREAD / XREADGROUP reply: [[stream, entries], ...], or nil when a blocking read timed out
    return {stream: _entries(entries) for stream, entries in reply or ()}
