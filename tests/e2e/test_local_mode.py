"""`magent2 up` as a user runs it: the README's curl examples and the client's exit codes."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import ROOT, free_port, python_env, running, spawn, wait_http

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def local_mode() -> Iterator[str]:
    port = free_port()
    with running(spawn(["magent2.cli", "up", "--port", str(port), "-f", "examples/agents.yaml"])) as process:
        try:
            wait_http(f"http://127.0.0.1:{port}/health", timeout=30)
        except TimeoutError:
            process.kill()
            raise AssertionError(process.stdout.read().decode() if process.stdout else "no output") from None
        yield f"http://127.0.0.1:{port}"


def readme_curls() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("### Talk to it", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [cmd.strip() for cmd in re.split(r"\n(?=curl )", block.replace("\\\n", " ")) if cmd.strip()]


def test_readme_curl_examples_work(local_mode: str) -> None:
    commands = readme_curls()
    assert len(commands) == 4
    outputs = []
    for command in commands:
        command = command.replace("http://localhost:8000", local_mode)
        result = subprocess.run(["bash", "-c", f"{command} --max-time 3"], capture_output=True, text=True)
        assert result.returncode in (0, 28), result.stderr  # 28: the stream stays open until --max-time
        outputs.append(result.stdout)
    sent, stream, agents, cancel = outputs
    assert '"conversation_id":"conv-1"' in sent
    assert "event: output" in stream and "echo: hello" in stream
    assert '"name":"DevAgent"' in agents and '"name":"Reviewer"' in agents
    assert "nothing of conversation 'conv-1' is running" in cancel  # the reply is over by now


def client(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "magent2.cli", "client", *args],
        env=python_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_client_one_message(local_mode: str) -> None:
    result = client("--base-url", local_mode, "-m", "hi there", "--conv", "cli-1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "echo: hi there"
    assert "conversation cli-1 (continue it with --conv cli-1)" in result.stderr


def test_client_json_and_agent_from_env(local_mode: str) -> None:
    result = client(
        "-m", "yo", "--json", env={"MAGENT2_BASE_URL": local_mode, "MAGENT2_AGENT_NAME": "Reviewer"}
    )
    assert result.returncode == 0, result.stderr
    events = [line for line in result.stdout.splitlines() if line]
    assert '"event": "run_started"' in events[0] and '"agent": "Reviewer"' in events[0]
    assert '"event": "output"' in events[-1]


def test_client_quiet_prints_only_the_output(local_mode: str) -> None:
    result = client("--base-url", local_mode, "-m", "quiet please", "-q")
    assert result.returncode == 0 and result.stdout == "echo: quiet please\n"


def test_a_mistyped_agent_is_refused_naming_the_known_ones(local_mode: str) -> None:
    result = client("--base-url", local_mode, "-m", "anyone?", "--agent", "Nobody", "--timeout", "5")
    assert result.returncode == 3
    assert (
        "HTTP 404" in result.stderr
        and "unknown agent 'Nobody'; known agents: DevAgent, Reviewer" in result.stderr
    )


def test_client_timeout_exit_2() -> None:
    """A gateway that accepts any recipient, with no worker behind it: the reply never comes."""
    port = free_port()
    env = {"GATEWAY_IN_MEMORY": "true", "GATEWAY_CHECK_RECIPIENTS": "false", "GATEWAY_PORT": str(port)}
    with running(spawn(["magent2.cli", "gateway"], **env)):
        wait_http(f"http://127.0.0.1:{port}/health")
        result = client(
            "--base-url", f"http://127.0.0.1:{port}", "-m", "anyone?", "--agent", "Nobody", "--timeout", "1"
        )
    assert result.returncode == 2 and "timed out" in result.stderr


def test_client_send_failed_exit_3(local_mode: str) -> None:
    assert client("--base-url", local_mode, "-m", "x", "--agent", "bad name").returncode == 3
    unreachable = client("--base-url", f"http://127.0.0.1:{free_port()}", "-m", "x")
    assert unreachable.returncode == 3 and "cannot reach" in unreachable.stderr


def test_client_usage_exit_5() -> None:
    assert client("--no-such-flag").returncode == 5
    assert client("-m", "x", "--timeout", "0").returncode == 5
    assert client("-m", "x", "--max-events", "0").returncode == 5


def test_client_interactive_chat(local_mode: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "magent2.cli", "client", "--base-url", local_mode],
        input="first\nsecond\n/quit\n",
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "echo: first" in result.stdout and "echo: second" in result.stdout


def test_client_commands_are_not_sent_and_the_conversation_id_is_printed(local_mode: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "magent2.cli", "client", "--base-url", local_mode, "--conv", "cmd-1"],
        input="/help\n/agent Reviewer\nhey\n/agents\n/bogus\n/quit\n",
        env=python_env(XDG_STATE_HOME="/nonexistent"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "echo: hey" in result.stdout
    assert "/agent <name>" in result.stderr and "talking to Reviewer" in result.stderr
    assert "Reviewer: 1 worker(s), backlog 0" in result.stderr and "unknown command '/bogus'" in result.stderr
    assert "continue it with --conv cmd-1" in result.stderr
    summary = httpx.get(f"{local_mode}/conversations/cmd-1").json()
    assert (summary["messages"], summary["agents"]) == (1, ["Reviewer"])  # only "hey" was sent


def test_client_line_editing_recalls_history_with_the_up_arrow(local_mode: str, tmp_path: Path) -> None:
    """In a real terminal (a pty): the up arrow brings the last line back, and history is kept."""
    import os
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # the child: the client, as a person runs it
        os.execve(
            sys.executable,
            [sys.executable, "-m", "magent2.cli", "client", "--base-url", local_mode, "--conv", "tty-1"],
            python_env(XDG_STATE_HOME=str(tmp_path), TERM="xterm"),
        )
    seen = b""

    def until(text: bytes, count: int = 1) -> None:
        nonlocal seen
        deadline = time.monotonic() + 30
        while seen.count(text) < count:
            assert time.monotonic() < deadline, seen.decode(errors="replace")
            if select.select([fd], [], [], 0.5)[0]:
                seen += os.read(fd, 4096)

    try:
        until(b"you> ")
        os.write(fd, b"again and again\r")
        until(b"echo: again and again")
        until(b"you> ", 2)
        os.write(fd, b"\x1b[A\r")  # up arrow, enter
        until(b"echo: again and again", 2)
        until(b"you> ", 3)
        os.write(fd, b"\x04")  # Ctrl-D
        until(b"continue it with --conv tty-1")
    finally:
        os.waitpid(pid, 0)
        os.close(fd)
    assert "again and again" in (tmp_path / "magent2" / "client_history").read_text()
    assert httpx.get(f"{local_mode}/conversations/tty-1").json()["messages"] == 2


def test_up_rejects_an_invalid_manifest(tmp_path: Path) -> None:
    bad = tmp_path / "agents.yaml"
    bad.write_text(
        "apiVersion: magent2.dev/v1alpha1\nkind: Agent\nmetadata: {name: x}\nspec: {replicas: -1}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "magent2.cli", "up", "-f", str(bad)],
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "Agent x" in result.stderr and "spec.replicas" in result.stderr


async def test_client_stream_failure_exit_4_and_agent_error_exit_1() -> None:
    """Failure injection: a stand-in gateway whose stream breaks or reports an agent error."""
    import asyncio

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    from tests.support import serve_app

    async def send(request: Request) -> Response:
        body = await request.json()
        return JSONResponse({"id": "m1", "conversation_id": body["conversation_id"], "cursor": "1-0"}, 202)

    async def stream(request: Request) -> Response:
        if request.path_params["conv"] == "broken":
            return PlainTextResponse("boom", 500)
        error = '{"event":"error","id":"e","conversation_id":"err","created_at":"2026-01-01T00:00:00Z","message":"model down","retryable":true}'
        return PlainTextResponse(f"id: 2-0\nevent: error\ndata: {error}\n\n", media_type="text/event-stream")

    app = Starlette(routes=[Route("/send", send, methods=["POST"]), Route("/stream/{conv}", stream)])
    async with serve_app(app) as url:
        broken = await asyncio.to_thread(client, "--base-url", url, "-m", "x", "--conv", "broken")
        failed = await asyncio.to_thread(client, "--base-url", url, "-m", "x", "--conv", "err")
    assert broken.returncode == 4 and "HTTP 500" in broken.stderr
    assert failed.returncode == 1 and "model down (retryable)" in failed.stderr


def test_up_stops_cleanly_on_sigterm() -> None:
    import signal

    port = free_port()
    process = spawn(["magent2.cli", "up", "--port", str(port)])
    with running(process):
        wait_http(f"http://127.0.0.1:{port}/health", timeout=30)
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
