from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from magent2.bus import InMemoryBus
from magent2.contracts import AgentManifest
from magent2.local import worker_settings
from magent2.settings import ConfigError, WorkerSettings, load
from magent2.tools.registry import build_toolset, selected_tools, terminal_policy
from tests.scripted_model import scripted_settings as settings
from tests.scripted_model import scripted_worker
from tests.support import send_envelope, wait_for_outputs, workers_running


def tool_names(toolset: Any) -> list[str]:
    return [tool.name for tool in toolset.function_tools]


def test_default_is_every_detected_tool() -> None:
    assert selected_tools(settings()) == (["terminal", "todo", "chat", "signals", "fanout"], None)
    names = tool_names(build_toolset(settings(), InMemoryBus()))
    assert names == [
        "terminal",
        "todo_create",
        "todo_get",
        "todo_list",
        "todo_update",
        "todo_delete",
        "chat_send",
        "signal_send",
        "signal_wait",
        "fan_out",
        "fan_in",
    ]


def test_unknown_tool_names_are_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AGENT_TOOLS", "todo, nonsense")
    with pytest.raises(ConfigError) as raised:
        load(WorkerSettings)
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert "unknown tools nonsense" in err and "todo (todo_create, todo_get" in err


def test_single_tool_names_select_just_those_tools() -> None:
    chosen = settings(AGENT_TOOLS="todo_create,todo_list,chat_send")
    assert tool_names(build_toolset(chosen, InMemoryBus())) == ["todo_create", "todo_list", "chat_send"]
    mixed = settings(AGENT_TOOLS="terminal,todo_get")
    assert tool_names(build_toolset(mixed, InMemoryBus())) == ["terminal", "todo_get"]


def test_explicit_mode_means_no_tools_unless_listed() -> None:
    assert selected_tools(settings(AGENT_REQUIRE_EXPLICIT_TOOLS="1")) == ([], None)
    explicit_chat = settings(AGENT_REQUIRE_EXPLICIT_TOOLS="1", AGENT_TOOLS="chat")
    assert selected_tools(explicit_chat) == (["chat"], {"chat_send"})
    assert selected_tools(settings(AGENT_TOOLS="")) == ([], set())


def test_mcp_servers_add_their_names() -> None:
    mcp = '[{"name": "time", "command": ["mcp-server-time"]}]'
    assert selected_tools(settings(AGENT_MCP_SERVERS=mcp))[0] == [
        "terminal",
        "todo",
        "chat",
        "signals",
        "fanout",
        "time",
    ]


def test_terminal_settings_from_env(tmp_path: Path) -> None:
    policy = terminal_policy(
        settings(
            TERMINAL_ALLOWED_COMMANDS="ls,cat",
            TERMINAL_TIMEOUT_SECONDS="2",
            TERMINAL_WORKDIR=str(tmp_path),
            TERMINAL_REDACT_PATTERNS='["AKIA[0-9A-Z]{16}", "x{2,3}"]',
        )
    )
    assert policy.allowed_commands == {"ls", "cat"} and policy.timeout_s == 2 and policy.workdir == tmp_path
    assert policy.redact("key AKIAABCDEFGHIJKLMNOP") == "key [REDACTED]"
    assert terminal_policy(settings(TERMINAL_ALLOWED_COMMANDS="")).allowed_commands == frozenset()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TERMINAL_REDACT_PATTERNS", '["("]'),
        ("AGENT_MCP_SERVERS", "[{"),
        ("AGENT_MCP_SERVERS", '[{"name": "x"}]'),
        ("TERMINAL_WORKDIR", "/no/such/dir"),
        ("AGENT_MODEL_FACTORY", "not a path"),
    ],
)
def test_bad_tool_settings_exit_2(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError):
        load(WorkerSettings)


def test_local_mode_maps_the_agent_spec_onto_tool_settings() -> None:
    manifest = AgentManifest.model_validate(
        {
            "apiVersion": "magent2.dev/v1alpha1",
            "kind": "Agent",
            "metadata": {"name": "a"},
            "spec": {
                "tools": ["terminal", "time"],
                "terminal": {"allowedCommands": ["ls"], "timeoutSeconds": 3},
                "mcpServers": [{"name": "time", "command": ["mcp-server-time"]}],
            },
        }
    )
    mapped = worker_settings(manifest, settings())
    assert selected_tools(mapped)[0] == ["terminal", "time"]
    assert terminal_policy(mapped).allowed_commands == {"ls"} and mapped.terminal_timeout_seconds == 3


async def test_oversize_input_is_rejected_with_an_error_naming_the_limit() -> None:
    bus = InMemoryBus()
    worker = scripted_worker(bus, AGENT_MAX_INPUT_CHARS="20")
    async with workers_running(worker):
        await send_envelope(bus, "short")
        await send_envelope(bus, "x" * 21)
        events = await wait_for_outputs(bus, "c1", 2)
    finals = [e for e in events if e.event in ("output", "error")]
    assert finals[0].event == "output"
    assert finals[1].event == "error"
    assert finals[1].message == "input rejected: 21 characters, over the limit of 20 (AGENT_MAX_INPUT_CHARS)"


async def test_max_turns_comes_from_settings() -> None:
    bus = InMemoryBus()
    worker = scripted_worker(bus, AGENT_MAX_TURNS="1")
    async with workers_running(worker):
        await send_envelope(bus, "call todo_list {}")
        events = await wait_for_outputs(bus, "c1", 1)
    assert events[-1].event == "error" and "max turns (1)" in events[-1].message


def test_local_mode_refuses_unknown_tools_like_the_cluster() -> None:
    from magent2.manifests import ManifestError

    manifest = AgentManifest.model_validate(
        {
            "apiVersion": "magent2.dev/v1alpha1",
            "kind": "Agent",
            "metadata": {"name": "a"},
            "spec": {"tools": ["shell"]},
        }
    )
    with pytest.raises(
        ManifestError, match=r"Agent a: unknown tools shell; known: terminal \(terminal\); todo"
    ):
        worker_settings(manifest, settings())
