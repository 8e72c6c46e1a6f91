from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from magent2.bus import RedisStreamsBus
from magent2.tools.todo import InMemoryTodoStore, RedisTodoStore, Todo
from tests.support import free_port, running, send_envelope, spawn, wait_for_outputs


@pytest.fixture(params=["memory", "redis"])
async def todo(request: pytest.FixtureRequest) -> AsyncIterator[Todo]:
    if request.param == "memory":
        yield Todo(InMemoryTodoStore())
        return
    client = aioredis.Redis.from_url(request.getfixturevalue("redis_url"), decode_responses=True)
    yield Todo(RedisTodoStore(client, "todo"))
    await client.aclose()


async def test_create_get_list_update_delete(todo: Todo) -> None:
    created = (await todo.create("c1", "write tests", {"priority": 1}))["task"]
    assert created["title"] == "write tests" and created["completed"] is False
    assert created["created_at"].endswith("Z") or "+00:00" in created["created_at"]
    json.dumps(created)  # JSON-safe
    await todo.create("c1", "ship it")
    await todo.create("c2", "elsewhere")
    assert (await todo.get(created["id"]))["task"] == created
    assert [t["title"] for t in (await todo.list("c1"))["tasks"]] == ["write tests", "ship it"]
    updated = (await todo.update(created["id"], completed=True, metadata={"owner": "a"}))["task"]
    assert updated["completed"] is True and updated["metadata"] == {"priority": 1, "owner": "a"}
    assert updated["updated_at"] >= created["updated_at"]
    assert await todo.delete(created["id"]) == {"ok": True}
    assert await todo.delete(created["id"]) == {"ok": False}
    assert await todo.get(created["id"]) == {"task": None}
    assert [t["title"] for t in (await todo.list("c1"))["tasks"]] == ["ship it"]


async def test_invalid_input_is_a_result_not_an_exception(todo: Todo) -> None:
    assert (await todo.create("c1", "   "))["error"] == "title must not be empty"
    assert (await todo.update("missing", completed=True))["task"] is None


async def test_transient_redis_error_is_a_compact_result() -> None:
    dead = aioredis.Redis(
        port=free_port(), socket_connect_timeout=0.5, decode_responses=True, retry=Retry(NoBackoff(), 0)
    )
    todo = Todo(RedisTodoStore(dead))
    result = await todo.create("c1", "x")
    assert result["task"] is None and result["transient"] is True and "unavailable" in result["error"]
    assert (await todo.list("c1"))["tasks"] == [] and (await todo.delete("x"))["ok"] is False
    await dead.aclose()


async def test_todo_shared_by_two_worker_processes(redis_url: str) -> None:
    """Agent A adds a task in one process; agent B, another process, lists it from Redis."""
    env: dict[str, Any] = {
        "REDIS_URL": redis_url,
        "AGENT_MODEL_FACTORY": "tests.scripted_model:command_model",
        "AGENT_TOOLS": "todo",
    }
    bus = RedisStreamsBus(redis_url)
    with (
        running(spawn(["magent2.worker"], AGENT_NAME="A", **env)),
        running(spawn(["magent2.worker"], AGENT_NAME="B", **env)),
    ):
        await send_envelope(
            bus,
            'call todo_create {"title": "from A", "conversation_id": "shared"}',
            conversation="a1",
            agent="A",
        )
        await wait_for_outputs(bus, "a1", 1, timeout=30)
        await send_envelope(bus, 'call todo_list {"conversation_id": "shared"}', conversation="b1", agent="B")
        events = await wait_for_outputs(bus, "b1", 1, timeout=30)
    await bus.close()
    listed = [e for e in events if e.event == "tool_step" and e.status == "success"]
    assert '"title": "from A"' in (listed[0].result_summary or "")
