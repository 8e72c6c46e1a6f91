"""Which tools an agent gets: AGENT_TOOLS allowlist over the detected tools."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from magent2.bus import Bus, Keys, RedisStreamsBus
from magent2.contracts import BUILTIN_TOOLS
from magent2.observer.index import ObserverIndex
from magent2.settings import WorkerSettings
from magent2.tools.chat import Chat, chat_tools
from magent2.tools.fanout import FanOut, fanout_tools
from magent2.tools.redaction import Redactor
from magent2.tools.signals import Signals, signal_tools
from magent2.tools.terminal import DEFAULT_ALLOWED, TerminalPolicy, terminal_tool
from magent2.tools.todo import InMemoryTodoStore, RedisTodoStore, Todo, todo_tools

log = logging.getLogger("magent2.tools")


@dataclass
class Toolset:
    function_tools: list[Any] = field(default_factory=list)
    mcp_servers: list[Any] = field(default_factory=list)
    names: list[str] = field(default_factory=list)


def selected_tools(settings: WorkerSettings) -> tuple[list[str], set[str] | None]:
    """The tool groups to build (built-in and MCP) and the function tools to keep of the
    built-in ones (None: all). AGENT_TOOLS may name a group or single tools of it; unset, every
    group (none with AGENT_REQUIRE_EXPLICIT_TOOLS). Unknown names were refused by the settings."""
    groups = [*BUILTIN_TOOLS, *(server.name for server in settings.mcp_servers)]
    if settings.agent_tools is None:
        return ([] if settings.agent_require_explicit_tools else groups), None
    wanted = set(settings.agent_tools)
    keep = {
        tool for group, tools in BUILTIN_TOOLS.items() for tool in tools if group in wanted or tool in wanted
    }
    chosen = [group for group in groups if group in wanted or keep & set(BUILTIN_TOOLS.get(group, ()))]
    return chosen, keep


def terminal_policy(settings: WorkerSettings) -> TerminalPolicy:
    allowed = (
        DEFAULT_ALLOWED if settings.terminal_allowed_commands is None else settings.terminal_allowed_commands
    )
    return TerminalPolicy(
        allowed_commands=frozenset(allowed),
        timeout_s=settings.terminal_timeout_seconds,
        output_cap_bytes=settings.terminal_output_cap_bytes,
        function_output_max_chars=settings.terminal_function_output_max_chars,
        workdir=settings.terminal_workdir,
        redact=Redactor.build(settings.terminal_redact_substrings, settings.terminal_redact_patterns),
    )


def todo_client(url: str) -> aioredis.Redis:
    """A client of its own that fails fast: a tool call should report a Redis hiccup in about a
    second, not after the bus client's patient retries."""
    return aioredis.Redis.from_url(
        url, decode_responses=True, socket_connect_timeout=1, socket_timeout=5, retry=Retry(NoBackoff(), 1)
    )


def build_toolset(settings: WorkerSettings, bus: Bus) -> Toolset:
    names, keep = selected_tools(settings)
    toolset = Toolset(names=names)
    if "terminal" in names:
        toolset.function_tools.append(terminal_tool(terminal_policy(settings)))
    if "todo" in names:
        prefix = f"{settings.bus_prefix}{settings.todo_store_prefix}"
        store = (
            RedisTodoStore(todo_client(bus.url), prefix)
            if isinstance(bus, RedisStreamsBus)
            else InMemoryTodoStore()
        )
        toolset.function_tools.extend(todo_tools(Todo(store)))
    keys, ttl_s = Keys(settings.bus_prefix), settings.events_ttl_seconds
    index = ObserverIndex(keys, keep=settings.observer_max_conversations, ttl_s=ttl_s)
    if "chat" in names:
        chat = Chat(
            bus, keys, settings.agent_name, max_hops=settings.chat_max_hops, events_ttl_s=ttl_s, index=index
        )
        toolset.function_tools.extend(chat_tools(chat))
    if "signals" in names:
        signals = Signals(
            bus,
            keys,
            settings.agent_name,
            topic_prefix=settings.signal_topic_prefix,
            payload_max_bytes=settings.signal_payload_max_bytes,
            ttl_s=ttl_s,
        )
        toolset.function_tools.extend(signal_tools(signals))
    if "fanout" in names:
        fanout = FanOut(
            bus,
            keys,
            settings.agent_name,
            index=index,
            max_hops=settings.chat_max_hops,
            max_children=settings.fanout_max_children,
            events_ttl_s=ttl_s,
        )
        toolset.function_tools.extend(fanout_tools(fanout))
    if keep is not None:
        toolset.function_tools = [tool for tool in toolset.function_tools if tool.name in keep]
    approve = set(settings.agent_approval_tools)
    for tool in toolset.function_tools:
        tool.needs_approval = tool.name in approve  # the SDK pauses the run before calling it
    mcp_names = set(names) - set(BUILTIN_TOOLS)
    if mcp_names:
        from magent2.tools.mcp import build_mcp_servers

        toolset.mcp_servers = build_mcp_servers(
            [s for s in settings.mcp_servers if s.name in mcp_names], approve=approve
        )
    return toolset
