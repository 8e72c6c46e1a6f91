"""The terminal tool against real processes: allowlist, no shell, timeouts that kill children,
output caps, redaction, a scrubbed environment — and through the SDK runner."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from agents import Agent

from magent2.bus import InMemoryBus
from magent2.tools.redaction import Redactor
from magent2.tools.terminal import TerminalPolicy, run_command, terminal_tool
from magent2.worker import Worker
from magent2.worker.sdk_runner import AgentsSdkRunner
from magent2.worker.sessions import sqlite_sessions
from tests.scripted_model import TokenStreamingModel, assistant_message, function_call
from tests.support import send_envelope, wait_for_outputs, workers_running


@pytest.fixture
def policy(tmp_path: Path) -> TerminalPolicy:
    return TerminalPolicy(
        allowed_commands=frozenset({"echo", "pwd", "python3", "ls", "cat"}), timeout_s=2, workdir=tmp_path
    )


async def test_allowed_command_runs(policy: TerminalPolicy) -> None:
    result = await run_command("echo hello world", policy)
    assert (result.ok, result.exit_code, result.output) == (True, 0, "hello world\n")


async def test_command_not_on_the_allowlist_is_denied(policy: TerminalPolicy, tmp_path: Path) -> None:
    victim = tmp_path / "keep"
    victim.write_text("x")
    result = await run_command(f"rm {victim}", policy)
    assert result.denied and "'rm' is not allowed" in (result.reason or "")
    assert victim.exists()


async def test_path_tricks_do_not_bypass_the_allowlist(policy: TerminalPolicy, tmp_path: Path) -> None:
    fake = tmp_path / "echo"
    fake.write_text("#!/bin/sh\ntouch pwned\n")
    fake.chmod(0o755)
    result = await run_command(f"{fake} hi", policy)  # basename is allowed; the binary comes from PATH
    assert result.output == "hi\n" and not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "command",
    [
        "echo hi; touch pwned",
        "echo hi && touch pwned",
        "echo hi | touch pwned",
        "echo hi > pwned",
        "echo `touch pwned`",
        "echo $(touch pwned)",
    ],
)
async def test_shell_metacharacters_are_plain_arguments(
    policy: TerminalPolicy, tmp_path: Path, command: str
) -> None:
    result = await run_command(command, policy)
    assert (result.ok and result.output.startswith("hi")) or "touch pwned" in result.output
    assert not (tmp_path / "pwned").exists()


async def test_timeout_kills_the_command_and_its_children(policy: TerminalPolicy) -> None:
    script = "import subprocess,sys,time; c=subprocess.Popen(['sleep','100']); print(c.pid, flush=True); time.sleep(100)"
    began = time.monotonic()
    result = await run_command(f'python3 -c "{script}"', policy)
    assert result.timed_out and "killed" in (result.reason or "")
    assert time.monotonic() - began < 5
    child = int(result.output.split()[0])
    await asyncio.sleep(0.2)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in state  # a zombie is dead, merely not reaped yet


async def test_ten_megabytes_of_output_are_capped_while_reading(policy: TerminalPolicy) -> None:
    tracemalloc.start()
    result = await run_command("python3 -c \"import sys; sys.stdout.write('x' * 10_000_000)\"", policy)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert result.ok and result.truncated
    assert len(result.output) == policy.output_cap_bytes
    assert peak < 2_000_000  # never held the 10 MB
    shown = result.for_model(policy.function_output_max_chars)
    assert len(shown["output"]) == 1000 and shown["output_truncated_chars"] == policy.output_cap_bytes - 1000


async def test_planted_secrets_are_redacted(tmp_path: Path) -> None:
    (tmp_path / "config").write_text(
        "api_key = sk-live0123456789abcdefghij\npassword=hunter2\ncorp-XYZ-secret\n"
    )
    policy = TerminalPolicy(
        allowed_commands=frozenset({"cat"}),
        workdir=tmp_path,
        redact=Redactor.build(substrings=["corp-XYZ-secret"]),
    )
    result = await run_command("cat config", policy)
    assert (
        "sk-live" not in result.output and "hunter2" not in result.output and "corp-XYZ" not in result.output
    )
    assert result.output.count("[REDACTED]") == 3


async def test_the_child_environment_is_scrubbed(
    policy: TerminalPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-parent0123456789abcdef")
    monkeypatch.setenv("REDIS_URL", "redis://:pw@redis:6379/0")
    monkeypatch.setenv("SOME_WORKER_SECRET", "s3")
    result = await run_command('python3 -c "import os, json; print(json.dumps(sorted(os.environ)))"', policy)
    assert result.ok
    names = set(eval(result.output))
    assert names <= {"PATH", "HOME", "LANG", "LC_ALL", "TERM", "PWD", "LC_CTYPE"}


async def test_working_directory_is_fixed(policy: TerminalPolicy, tmp_path: Path) -> None:
    assert (await run_command("pwd", policy)).output.strip() == str(tmp_path)


@pytest.mark.parametrize(("command", "reason"), [("", "empty"), ('echo "open', "cannot parse")])
async def test_unusable_commands_are_denied(policy: TerminalPolicy, command: str, reason: str) -> None:
    result = await run_command(command, policy)
    assert result.denied and reason in (result.reason or "")


async def test_empty_allowlist_denies_everything(tmp_path: Path) -> None:
    result = await run_command("echo hi", TerminalPolicy(allowed_commands=frozenset(), workdir=tmp_path))
    assert result.denied and "allowed: none" in (result.reason or "")


async def test_failing_command_reports_its_exit_code(policy: TerminalPolicy) -> None:
    result = await run_command("ls /definitely/not/here", policy)
    assert result.exit_code not in (0, None) and not result.ok
    assert "exit code" in result.for_model(1000)["error"]


async def test_terminal_through_the_sdk_runner(policy: TerminalPolicy) -> None:
    model = TokenStreamingModel(
        [
            [function_call("terminal", {"command": "echo sk-leak0123456789abcdefgh"}, call_id="t1")],
            [function_call("terminal", {"command": "rm -rf /"}, call_id="t2")],
            [assistant_message("Done.")],
        ]
    )
    agent: Agent[Any] = Agent(name="DevAgent", model=model, tools=[terminal_tool(policy)])
    bus = InMemoryBus()
    worker = Worker(bus, AgentsSdkRunner(agent, sqlite_sessions(":memory:")), agent_name="DevAgent")
    async with workers_running(worker):
        await send_envelope(bus, "run things")
        events = await wait_for_outputs(bus, "c1", 1)
    started = [e for e in events if e.event == "tool_step" and e.status == "start"]
    assert started[0].args == {"command": "echo [REDACTED]"}  # not even the request leaks the key
    steps = [e for e in events if e.event == "tool_step" and e.status != "start"]
    assert [s.status for s in steps] == ["success", "error"]
    assert "[REDACTED]" in (steps[0].result_summary or "") and "sk-leak" not in (
        steps[0].result_summary or ""
    )
    assert "'rm' is not allowed" in (steps[1].error or "")
    # the model reads JSON, not a Python repr ({'exit_code': 0, ... 'truncated': False})
    assert json.loads(steps[0].result_summary or "")["exit_code"] == 0
    assert events[-1].text == "Done."
    assert sys.executable  # the worker's interpreter is untouched by the tool
    assert os.environ.get("PATH")


def test_defaults_allow_no_interpreter_and_no_command_runner() -> None:
    """python3 -c, sh -c, find -exec, xargs, env: any of them would allow every command."""
    from magent2.tools.terminal import DEFAULT_ALLOWED

    runners = {"python3", "python", "sh", "bash", "node", "perl", "find", "xargs", "env", "timeout", "nice"}
    assert not runners & set(DEFAULT_ALLOWED)
