"""Per-conversation todo lists: a store (Redis or memory) and the tool functions over it.

Return shapes: `{"task": {...}}`, `{"task": null}`, `{"tasks": [...]}`, `{"ok": bool}`; on a
transient store error the same key with its empty value plus `"error"` and `"transient": true`."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from datetime import datetime
from typing import Any, Protocol

import redis.asyncio as aioredis
from agents import RunContextWrapper, function_tool
from pydantic import BaseModel, Field
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from magent2.contracts import utc_now
from magent2.tools.output import as_json

_TRANSIENT = (RedisConnectionError, RedisTimeoutError, OSError)


class Task(BaseModel):
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    conversation_id: str
    title: str
    completed: bool = False
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json")  # JSON-safe: RFC 3339 times


class TodoStore(Protocol):
    async def save(self, task: Task, *, new: bool) -> None: ...
    async def get(self, task_id: str) -> Task | None: ...
    async def list(self, conversation_id: str) -> list[Task]: ...
    async def delete(self, task: Task) -> None: ...


class InMemoryTodoStore:
    def __init__(self) -> None:
        self.tasks: dict[str, Task] = {}

    async def save(self, task: Task, *, new: bool) -> None:
        self.tasks[task.id] = task

    async def get(self, task_id: str) -> Task | None:
        return self.tasks.get(task_id)

    async def list(self, conversation_id: str) -> list[Task]:
        return sorted(
            (t for t in self.tasks.values() if t.conversation_id == conversation_id),
            key=lambda t: t.created_at,
        )

    async def delete(self, task: Task) -> None:
        self.tasks.pop(task.id, None)


class RedisTodoStore:
    """`{prefix}:task:{id}` holds the task (O(1) get); `{prefix}:conversation:{id}` indexes a
    conversation's tasks by creation time."""

    def __init__(self, client: aioredis.Redis, prefix: str = "todo") -> None:
        self.redis, self.prefix = client, prefix

    def _task_key(self, task_id: str) -> str:
        return f"{self.prefix}:task:{task_id}"

    def _index_key(self, conversation_id: str) -> str:
        return f"{self.prefix}:conversation:{conversation_id}"

    async def save(self, task: Task, *, new: bool) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self._task_key(task.id), task.model_dump_json())
            if new:
                pipe.zadd(self._index_key(task.conversation_id), {task.id: task.created_at.timestamp()})
            await pipe.execute()

    async def get(self, task_id: str) -> Task | None:
        raw = await self.redis.get(self._task_key(task_id))
        return Task.model_validate_json(raw) if raw else None

    async def list(self, conversation_id: str) -> list[Task]:
        ids = await self.redis.zrange(self._index_key(conversation_id), 0, -1)
        if not ids:
            return []
        raws = await self.redis.mget([self._task_key(str(i)) for i in ids])
        return [Task.model_validate_json(raw) for raw in raws if raw]

    async def delete(self, task: Task) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._task_key(task.id))
            pipe.zrem(self._index_key(task.conversation_id), task.id)
            await pipe.execute()


class Todo:
    """The five todo operations with the tool return shapes."""

    def __init__(self, store: TodoStore) -> None:
        self.store = store

    async def create(
        self, conversation_id: str, title: str, metadata: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if not title.strip():
            return {"task": None, "error": "title must not be empty"}
        task = Task(conversation_id=conversation_id, title=title.strip(), metadata=metadata or {})
        return await _guard({"task": None}, self._saved(task, new=True))

    async def get(self, task_id: str) -> dict[str, Any]:
        async def found() -> dict[str, Any]:
            task = await self.store.get(task_id)
            return {"task": task.public() if task else None}

        return await _guard({"task": None}, found())

    async def list(self, conversation_id: str) -> dict[str, Any]:
        async def listed() -> dict[str, Any]:
            return {"tasks": [t.public() for t in await self.store.list(conversation_id)]}

        return await _guard({"tasks": []}, listed())

    async def update(
        self,
        task_id: str,
        *,
        title: str | None = None,
        completed: bool | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        async def updated() -> dict[str, Any]:
            task = await self.store.get(task_id)
            if task is None:
                return {"task": None, "error": f"no task {task_id}"}
            changes: dict[str, Any] = {"updated_at": utc_now()}
            if title is not None:
                changes["title"] = title.strip() or task.title
            if completed is not None:
                changes["completed"] = completed
            if metadata is not None:
                changes["metadata"] = {**task.metadata, **metadata}
            return await self._saved(task.model_copy(update=changes), new=False)

        return await _guard({"task": None}, updated())

    async def delete(self, task_id: str) -> dict[str, Any]:
        async def deleted() -> dict[str, Any]:
            task = await self.store.get(task_id)
            if task is not None:
                await self.store.delete(task)
            return {"ok": task is not None}

        return await _guard({"ok": False}, deleted())

    async def _saved(self, task: Task, *, new: bool) -> dict[str, Any]:
        await self.store.save(task, new=new)
        return {"task": task.public()}


async def _guard(empty: dict[str, Any], operation: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    """A transient store failure becomes a compact result the model can act on, not an exception."""
    try:
        return await operation
    except _TRANSIENT as exc:
        return {**empty, "error": f"todo store unavailable: {type(exc).__name__}", "transient": True}


def todo_tools(todo: Todo) -> list[Any]:
    """Agents SDK function tools; `conversation_id` defaults to the conversation being answered."""

    def conversation(ctx: RunContextWrapper[Any], given: str | None) -> str:
        return given or str(getattr(ctx.context, "conversation_id", "default"))

    @function_tool(strict_mode=False)
    async def todo_create(
        ctx: RunContextWrapper[Any],
        title: str,
        metadata: dict[str, Any] | None = None,
        conversation_id: str | None = None,
    ) -> str:
        """Add a task to the conversation's todo list.

        Args:
            title: what is to be done.
            metadata: optional extra fields to keep with the task.
            conversation_id: another conversation's list instead of this one.
        """
        return as_json(await todo.create(conversation(ctx, conversation_id), title, metadata))

    @function_tool
    async def todo_get(task_id: str) -> str:
        """Fetch one task by id."""
        return as_json(await todo.get(task_id))

    @function_tool
    async def todo_list(ctx: RunContextWrapper[Any], conversation_id: str | None = None) -> str:
        """List the conversation's tasks, oldest first."""
        return as_json(await todo.list(conversation(ctx, conversation_id)))

    @function_tool(strict_mode=False)
    async def todo_update(
        task_id: str,
        title: str | None = None,
        completed: bool | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> str:
        """Change a task's title, mark it (un)done, or merge metadata into it."""
        return as_json(await todo.update(task_id, title=title, completed=completed, metadata=metadata))

    @function_tool
    async def todo_delete(task_id: str) -> str:
        """Delete a task."""
        return as_json(await todo.delete(task_id))

    return [todo_create, todo_get, todo_list, todo_update, todo_delete]
