"""Separate processes, real Redis: crash recovery with kill -9, SIGTERM, configuration errors."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import pytest

from magent2.bus import RedisStreamsBus
from tests.support import (
    conversation_events,
    eventually,
    python_env,
    running,
    send_envelope,
    spawn,
    wait_for_outputs,
)

pytestmark = pytest.mark.e2e

LONG = "one two three four five six seven eight nine ten eleven twelve"


def worker(redis_url: str, **env: str) -> subprocess.Popen[bytes]:
    return spawn(["magent2.worker"], REDIS_URL=redis_url, AGENT_NAME="DevAgent", **env)


async def test_kill_9_mid_run_another_worker_completes_exactly_once(
    bus: RedisStreamsBus, redis_url: str
) -> None:
    slow = {"ECHO_TOKEN_DELAY_SECONDS": "0.2", "WORKER_VISIBILITY_TIMEOUT_SECONDS": "1"}
    with running(worker(redis_url, **slow)) as doomed:
        sent = await send_envelope(bus, LONG)

        async def streaming() -> bool:
            return any(e.event == "token" for e in await conversation_events(bus, "c1"))

        await eventually(streaming, timeout=20, what="first token")
        doomed.kill()  # SIGKILL: no chance to hand anything back
        doomed.wait()
    assert not any(e.event == "output" for e in await conversation_events(bus, "c1"))
    with running(worker(redis_url, **slow)):
        events = await wait_for_outputs(bus, "c1", 1, timeout=30)
        await asyncio.sleep(1.5)  # a second run would have started by now
        events = await conversation_events(bus, "c1")
    outputs = [e for e in events if e.event == "output"]
    assert len(outputs) == 1
    assert outputs[0].text == f"echo: {LONG}" and outputs[0].message_id == sent.id


async def test_replicas_in_processes_run_a_conversation_serially(
    bus: RedisStreamsBus, redis_url: str
) -> None:
    env = {"ECHO_TOKEN_DELAY_SECONDS": "0.02"}
    with running(worker(redis_url, **env)), running(worker(redis_url, **env)):
        for i in range(6):
            await send_envelope(bus, f"m{i} a b c")
        events = await wait_for_outputs(bus, "c1", 6, timeout=30)
    runs = [e.event for e in events if e.event in ("run_started", "output")]
    assert runs == ["run_started", "output"] * 6  # never two runs of one conversation at once
    assert [e.text for e in events if e.event == "output"] == [f"echo: m{i} a b c" for i in range(6)]


async def test_sigterm_finishes_the_running_message_then_exits(bus: RedisStreamsBus, redis_url: str) -> None:
    with running(worker(redis_url, ECHO_TOKEN_DELAY_SECONDS="0.1")) as process:
        await send_envelope(bus, "a b c d e f")

        async def started() -> bool:
            return any(e.event == "token" for e in await conversation_events(bus, "c1"))

        await eventually(started, timeout=20, what="the run to start")
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 20)
    assert code == 0
    assert [e.text for e in await conversation_events(bus, "c1") if e.event == "output"] == [
        "echo: a b c d e f"
    ]


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"AGENT_MAX_TURNS": "many"}, "AGENT_MAX_TURNS"),
        ({"AGENT_NAME": "bad name!"}, "AGENT_NAME"),
        ({"REDIS_URL": "http://nope"}, "REDIS_URL"),
        ({"AGENT_INSTRUCTIONS_FILE": "/does/not/exist"}, "AGENT_INSTRUCTIONS_FILE"),
    ],
)
def test_bad_configuration_exits_2_naming_the_variable(
    redis_url: str, env: dict[str, str], needle: str
) -> None:
    full = {"REDIS_URL": redis_url, **env}
    result = subprocess.run(
        [sys.executable, "-m", "magent2.worker"],
        env=python_env(**full),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert needle in result.stderr
    assert "http://nope" not in result.stderr  # URLs may carry passwords: never echoed


def test_worker_without_redis_explains_itself() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "magent2.worker"], env=python_env(), capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2 and "REDIS_URL is not set" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
