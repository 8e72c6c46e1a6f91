"""Conversation history for the Agents SDK: Redis when configured (any replica continues any
conversation), SQLite at AGENT_SESSION_PATH otherwise.

The Redis history keeps the layout of the SDK's own `RedisSession` (a hash `<prefix>session:<id>`
and the list `<prefix>session:<id>:messages` of JSON items), so histories written by earlier
versions read on; but each change is one Lua script on the bus's client instead of the SDK's
WATCH/MULTI transaction of ~10 redis-py commands, which cost ~2 ms of worker CPU per run."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agents.memory import Session, SessionABC, SQLiteSession
from agents.memory.session_settings import SessionSettings, resolve_session_limit

from magent2.bus.redis import unavailable_on_connection_errors
from magent2.bus.wire import Arg, Redis, Script

SessionFactory = Callable[[str], Session]

# KEYS: session hash, messages list. ARGV: session id, now (unix s), ttl ('' for none), items...
_APPEND = Script(
    """
redis.call('HSET', KEYS[1], 'session_id', ARGV[1])
redis.call('HSETNX', KEYS[1], 'created_at', ARGV[2])
redis.call('RPUSH', KEYS[2], unpack(ARGV, 4))
redis.call('HSET', KEYS[1], 'updated_at', ARGV[2])
if ARGV[3] ~= '' then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
"""
)


class RedisHistory(SessionABC):
    """One conversation's history on the bus's Redis client (`bus.wire`)."""

    def __init__(
        self,
        session_id: str,
        redis: Redis,
        *,
        key_prefix: str = "session",
        ttl_s: int | None = None,
        session_settings: SessionSettings | None = None,
    ) -> None:
        self.session_id, self.redis, self.ttl_s = session_id, redis, ttl_s
        self.session_settings = session_settings or SessionSettings()
        self._session_key = f"{key_prefix}:{session_id}"
        self._messages_key = f"{self._session_key}:messages"

    async def get_items(self, limit: int | None = None) -> list[Any]:
        wanted = resolve_session_limit(limit, self.session_settings)
        if wanted is not None and wanted <= 0:
            return []
        raw = await self._call("LRANGE", self._messages_key, 0 if wanted is None else -wanted, -1)
        items = _decoded(raw)
        if wanted is not None and len(items) < wanted and len(raw) == wanted:
            # corrupt entries among the newest: the limit counts valid items
            items = _decoded(await self._call("LRANGE", self._messages_key, 0, -1))[-wanted:]
        return items

    async def add_items(self, items: list[Any]) -> None:
        if not items:
            return
        encoded = [json.dumps(item, separators=(",", ":")) for item in items]
        ttl = "" if self.ttl_s is None else self.ttl_s
        args: list[Arg] = [self.session_id, f"{time.time():.6f}", ttl, *encoded]
        async with unavailable_on_connection_errors():
            await self.redis.script(_APPEND, [self._session_key, self._messages_key], args)

    async def pop_item(self) -> Any | None:
        while (raw := await self._call("RPOP", self._messages_key)) is not None:
            if decoded := _decoded([raw]):
                return decoded[0]
        return None

    async def clear_session(self) -> None:
        await self._call("DEL", self._session_key, self._messages_key, f"{self._session_key}:counter")

    async def _call(self, *args: str | int) -> Any:
        """A Redis outage is the bus's: the worker leaves the message pending for a retry."""
        async with unavailable_on_connection_errors():
            return await self.redis.call(*args)


def _decoded(raw: list[str]) -> list[Any]:
    items = []
    for text in raw:
        try:
            items.append(json.loads(text))
        except ValueError:
            continue  # a corrupt entry is skipped, as the SDK's sessions do
    return items


def redis_sessions(redis: Redis, *, prefix: str = "", ttl_s: int | None = None) -> SessionFactory:
    return lambda conversation_id: RedisHistory(
        conversation_id, redis, key_prefix=f"{prefix}session", ttl_s=ttl_s
    )


def sqlite_sessions(path: str) -> SessionFactory:
    if path == ":memory:":
        # An in-memory SQLite database lives as long as its session object: keep one per conversation.
        cache: dict[str, Session] = {}
        return lambda conversation_id: cache.setdefault(conversation_id, SQLiteSession(conversation_id))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return lambda conversation_id: SQLiteSession(conversation_id, db_path=path)
