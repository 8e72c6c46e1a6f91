"""Per-agent MCP servers (stdio or streamable HTTP) through the Agents SDK's MCP classes, each
supervised: connected in a task of its own (anyio wants connect and cleanup on one task) and
restarted with back-off when it dies, so a crash costs one failed tool call, not the worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any

from agents.mcp import MCPServer, MCPServerStdio, MCPServerStreamableHttp, create_static_tool_filter
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED

from magent2.contracts import McpServer as McpServerSpec

log = logging.getLogger("magent2.tools.mcp")


class McpServerUnavailable(RuntimeError):
    pass


class SupervisedMCPServer(MCPServer):
    def __init__(
        self,
        name: str,
        factory: Callable[[], MCPServer],
        *,
        startup_timeout_s: float = 10.0,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        require_approval: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(require_approval=require_approval)
        self._name, self._factory = name, factory
        self.startup_timeout_s, self.backoff_s, self.max_backoff_s = (
            startup_timeout_s,
            backoff_s,
            max_backoff_s,
        )
        self._inner: MCPServer | None = None
        self._ready = asyncio.Event()
        self._restart = asyncio.Event()
        self._stopping = asyncio.Event()
        self._owner: asyncio.Task[None] | None = None
        self.last_error: str | None = None
        self.starts = 0

    @property
    def name(self) -> str:
        return self._name

    async def connect(self) -> None:
        if self._owner is None or self._owner.done():
            self._stopping.clear()
            self._owner = asyncio.create_task(self._supervise(), name=f"mcp:{self._name}")
        await self._server()

    async def _supervise(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            inner = self._factory()
            try:
                await asyncio.wait_for(inner.connect(), self.startup_timeout_s)  # type: ignore[no-untyped-call]
                self._inner, failures = inner, 0
                self.starts += 1
                self._ready.set()
                log.info("MCP server %s connected", self._name)
                await self._restart.wait()
            except Exception as exc:  # a server that fails to start is retried, never fatal
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("MCP server %s failed to start: %s", self._name, self.last_error)
                failures += 1
            finally:
                self._ready.clear()
                self._inner = None
                with contextlib.suppress(Exception):
                    await inner.cleanup()  # type: ignore[no-untyped-call]
            self._restart.clear()
            if not self._stopping.is_set() and failures:
                delay = min(self.backoff_s * 2 ** (failures - 1), self.max_backoff_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)

    async def _server(self) -> MCPServer:
        if self._owner is None:
            await self.connect()
        try:
            await asyncio.wait_for(self._ready.wait(), self.startup_timeout_s)
        except TimeoutError:
            raise McpServerUnavailable(
                f"MCP server {self._name} is not available ({self.last_error or 'starting'})"
            ) from None
        assert self._inner is not None
        return self._inner

    def _crashed(self, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        log.warning("MCP server %s failed (%s); restarting it", self._name, self.last_error)
        self._ready.clear()  # later calls wait for the restart instead of using the dead session
        self._restart.set()

    async def list_tools(self, run_context: Any = None, agent: Any = None) -> Any:
        try:
            server = await self._server()
        except McpServerUnavailable as exc:
            log.warning("%s; its tools are left out of this run", exc)
            return []  # the agent runs without this server's tools until it is back
        try:
            return await server.list_tools(run_context, agent)
        except Exception as exc:
            self._crashed(exc)
            raise

    async def call_tool(self, tool_name: str, arguments: dict[str, Any] | None, meta: Any = None) -> Any:
        server = await self._server()
        try:
            return await server.call_tool(tool_name, arguments, meta)
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:  # the server process died under us
                self._crashed(exc)
            raise  # otherwise the tool said no; the server is fine
        except Exception as exc:
            self._crashed(exc)
            raise

    async def list_prompts(self) -> Any:
        return await (await self._server()).list_prompts()

    async def get_prompt(self, name: str, arguments: dict[str, Any] | None = None) -> Any:
        return await (await self._server()).get_prompt(name, arguments)

    async def cleanup(self) -> None:
        self._stopping.set()
        self._restart.set()
        if self._owner is not None:
            await self._owner
            self._owner = None


def _sdk_server(spec: McpServerSpec) -> MCPServer:
    common: dict[str, Any] = {
        "name": spec.name,
        "cache_tools_list": True,
        "client_session_timeout_seconds": spec.startup_timeout_seconds,
        "tool_filter": create_static_tool_filter(
            allowed_tool_names=spec.allow_tools, blocked_tool_names=spec.block_tools or None
        ),
    }
    if spec.url is not None:
        return MCPServerStreamableHttp(params={"url": spec.url}, **common)
    assert spec.command is not None
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}  # not the worker's secrets
    env.update({var.name: var.value or "" for var in spec.env if var.value is not None})
    command, *args = spec.command
    return MCPServerStdio(params={"command": command, "args": args, "env": env}, **common)


def build_mcp_servers(
    specs: list[McpServerSpec], *, approve: frozenset[str] | set[str] = frozenset()
) -> list[SupervisedMCPServer]:
    """`approve`: `mcp:<server>/<tool>` names whose calls a person approves first."""
    return [
        SupervisedMCPServer(
            spec.name,
            lambda spec=spec: _sdk_server(spec),  # type: ignore[misc]
            startup_timeout_s=spec.startup_timeout_seconds,
            require_approval={
                name.split("/", 1)[1]: "always" for name in approve if name.startswith(f"mcp:{spec.name}/")
            },
        )
        for spec in specs
    ]
