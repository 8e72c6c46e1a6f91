"""Conversation history for the Agents SDK: Redis when configured (any replica continues any
conversation), SQLite at AGENT_SESSION_PATH otherwise."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import redis.asyncio as aioredis
from agents.extensions.memory import RedisSession
from agents.memory import Session, SQLiteSession

SessionFactory = Callable[[str], Session]


def redis_sessions(client: aioredis.Redis, *, prefix: str = "", ttl_s: int | None = None) -> SessionFactory:
    def open_session(conversation_id: str) -> Session:
        return RedisSession(conversation_id, redis_client=client, key_prefix=f"{prefix}session", ttl=ttl_s)

    return open_session


def sqlite_sessions(path: str) -> SessionFactory:
    if path == ":memory:":
        # An in-memory SQLite database lives as long as its session object: keep one per conversation.
        cache: dict[str, Session] = {}
        return lambda conversation_id: cache.setdefault(conversation_id, SQLiteSession(conversation_id))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return lambda conversation_id: SQLiteSession(conversation_id, db_path=path)
