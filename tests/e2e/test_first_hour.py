"""A new user's first hour: every way a process cannot start says so in one line and exits 2;
`--help` describes each command and its environment; stopping never prints a traceback."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.support import RedisServer, free_port, python_env

pytestmark = pytest.mark.e2e


def magent2(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "magent2.cli", *args],
        env=python_env(HOME="/nonexistent", KUBECONFIG="/nonexistent/kubeconfig", **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line_exit_2(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if " WARNING " not in line and " INFO " not in line]
    assert len(lines) == 1 and needle in lines[0], result.stderr


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


def test_a_busy_port_is_one_line(busy_port: int) -> None:
    one_line_exit_2(
        magent2("up", "--port", str(busy_port)), f"port {busy_port} on 127.0.0.1 is already in use"
    )
    gateway = magent2(
        "gateway", GATEWAY_IN_MEMORY="true", GATEWAY_HOST="127.0.0.1", GATEWAY_PORT=str(busy_port)
    )
    one_line_exit_2(gateway, "GATEWAY_PORT")


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["up", "--redis-url", "redis://127.0.0.1:1"], {}, "cannot reach Redis at redis://127.0.0.1:1"),
        (["gateway"], {}, "REDIS_URL is not set"),
        (["worker"], {}, "REDIS_URL is not set"),
        (["operator"], {}, "no Kubernetes credentials"),
        (
            ["gateway"],
            {"REDIS_URL": "redis://127.0.0.1:1", "GATEWAY_DURABLE_ACK": "true"},
            "cannot be honoured",
        ),
    ],
)
def test_cannot_start_is_one_line_and_exit_2(args: list[str], env: dict[str, str], needle: str) -> None:
    one_line_exit_2(magent2(*args, **env), needle)


def test_an_in_memory_gateway_only_when_asked_for() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "magent2.cli", "gateway"],
        env=python_env(GATEWAY_IN_MEMORY="true", GATEWAY_HOST="127.0.0.1", GATEWAY_PORT=str(port)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("in-memory gateway did not start")
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.parametrize(
    ("command", "variables"),
    [
        (
            "worker",
            ["AGENT_NAME [DevAgent]", "REDIS_URL", "WORKER_MAX_DELIVERIES [5]", "TERMINAL_ALLOWED_COMMANDS"],
        ),
        ("gateway", ["GATEWAY_PORT [8000]", "GATEWAY_IN_MEMORY [False]", "GATEWAY_STREAM_READERS [32]"]),
        ("operator", ["WORKER_IMAGE", "OPERATOR_NAMESPACES"]),
    ],
)
def test_help_describes_the_command_and_its_environment(command: str, variables: list[str]) -> None:
    result = magent2(command, "--help")
    assert result.returncode == 0
    assert "environment (defaults in brackets):" in result.stdout and "exit status:" in result.stdout
    for variable in variables:
        assert variable in result.stdout


def test_stopping_a_worker_whose_redis_is_down_prints_no_traceback(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    redis = RedisServer(tmp_path_factory.mktemp("redis"))
    worker = subprocess.Popen(
        [sys.executable, "-m", "magent2.worker"],
        env=python_env(
            REDIS_URL=redis.url, ECHO_TOKEN_DELAY_SECONDS="0.5", WORKER_SHUTDOWN_GRACE_SECONDS="2"
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert worker.stdout is not None
        for line in worker.stdout:  # wait until it serves
            if "consuming chat:DevAgent" in line:
                break
        redis.kill()
        time.sleep(1)
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
        redis.stop()
    assert worker.returncode == 0, output
    assert "Traceback" not in output and "stopped" in output
