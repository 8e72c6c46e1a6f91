"""MCP servers over stdio through the SDK runner: a third-party server (mcp-server-time, offline),
the example notes server crashing mid-session, and a server that never starts."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from typing import Any

from magent2.bus import InMemoryBus
from tests.scripted_model import scripted_worker
from tests.support import (
    ROOT,
    free_port,
    running,
    send_envelope,
    wait_for_outputs,
    wait_until,
    workers_running,
)


def mcp_agent(bus: InMemoryBus, servers: list[dict[str, Any]], **env: str) -> Any:
    return scripted_worker(bus, AGENT_MCP_SERVERS=json.dumps(servers), **env)


def results(events: list[Any]) -> list[tuple[str, str]]:
    return [
        (e.status, e.result_summary or e.error or "")
        for e in events
        if e.event == "tool_step" and e.status != "start"
    ]


async def test_third_party_time_server_with_an_allowlist() -> None:
    bus = InMemoryBus()
    server = {
        "name": "time",
        "command": [sys.executable, "-m", "mcp_server_time"],
        "allowTools": ["get_current_time"],
    }
    worker = mcp_agent(bus, [server], AGENT_TOOLS="time")
    async with workers_running(worker):
        await send_envelope(bus, 'call get_current_time {"timezone": "Europe/Paris"}')
        events = await wait_for_outputs(bus, "c1", 1, timeout=30)
    [(status, summary)] = results(events)
    assert status == "success" and "Europe/Paris" in summary and "datetime" in summary
    tools = await worker.runner.agent.mcp_servers[0].list_tools()  # type: ignore[attr-defined]
    assert [t.name for t in tools] == ["get_current_time"]  # convert_time filtered out


async def test_a_crashed_server_is_a_tool_error_then_restarted() -> None:
    bus = InMemoryBus()
    server = {"name": "notes", "command": [sys.executable, str(ROOT / "examples" / "mcp_notes_server.py")]}
    worker = mcp_agent(bus, [server], AGENT_TOOLS="notes")
    async with workers_running(worker):
        for content in (
            'call add_note {"text": "a"}',
            'call add_note {"text": "b"}',
            "call crash {}",
            'call add_note {"text": "c"}',
        ):
            await send_envelope(bus, content)
        events = await wait_for_outputs(bus, "c1", 4, timeout=60)
    outcome = results(events)
    assert [status for status, _ in outcome] == ["success", "success", "error", "success"]
    assert "2 note(s)" in outcome[1][1]
    assert "1 note(s)" in outcome[3][1]  # a fresh server process answered
    assert [e.event for e in events].count("output") == 4  # the worker never died


async def test_a_server_that_never_starts_leaves_the_agent_working() -> None:
    bus = InMemoryBus()
    server = {"name": "broken", "command": ["/nonexistent/mcp-server"], "startupTimeoutSeconds": 1}
    async with workers_running(mcp_agent(bus, [server])):
        await send_envelope(bus, "hello")
        events = await wait_for_outputs(bus, "c1", 1, timeout=30)
    assert events[-1].event == "output" and events[-1].text == "you said: hello"


async def test_streamable_http_server() -> None:
    port = free_port()
    with running(
        subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / "mcp_notes_server.py"), "--http", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ):
        wait_until(lambda: _listening(port), timeout=20, what="the MCP HTTP server")
        bus = InMemoryBus()
        server = {"name": "notes", "url": f"http://127.0.0.1:{port}/mcp", "allowTools": ["add_note"]}
        async with workers_running(mcp_agent(bus, [server])):
            await send_envelope(bus, 'call add_note {"text": "over http"}')
            events = await wait_for_outputs(bus, "c1", 1, timeout=30)
    assert results(events) == [("success", results(events)[0][1])] and "1 note(s)" in results(events)[0][1]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
