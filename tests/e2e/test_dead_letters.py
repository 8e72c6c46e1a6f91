"""Poison messages in separate processes: a message that kills every worker running it is
dead-lettered after WORKER_MAX_DELIVERIES, and `magent2 dlq` lists, shows, replays and purges it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from magent2.bus import Keys, RedisStreamsBus
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


def dlq(redis_url: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "magent2.cli", "dlq", *args],
        env=python_env(**({"REDIS_URL": redis_url} if redis_url else {})),
        capture_output=True,
        text=True,
        timeout=30,
    )


async def test_a_message_that_kills_its_workers_is_dead_lettered_then_replayed(
    bus: RedisStreamsBus, redis_url: str
) -> None:
    env = {
        "REDIS_URL": redis_url,
        "AGENT_NAME": "DevAgent",
        "ECHO_TOKEN_DELAY_SECONDS": "0.2",
        "WORKER_VISIBILITY_TIMEOUT_SECONDS": "0.5",
        "WORKER_MAX_DELIVERIES": "2",
    }
    poison = await send_envelope(bus, "poison pill a b c d e f")
    for delivery in (1, 2):  # each worker that starts it dies (kill -9)

        async def started(n: int = delivery) -> bool:
            return [e.event for e in await conversation_events(bus, "c1")].count("run_started") >= n

        with running(spawn(["magent2.worker"], **env)) as victim:
            await eventually(started, timeout=30, what=f"run {delivery} started")
            victim.kill()
            victim.wait()
    await send_envelope(bus, "next")
    with running(spawn(["magent2.worker"], **env)):
        events = await wait_for_outputs(bus, "c1", 2, timeout=30)
    finals = [e for e in events if e.event in ("output", "error")]
    assert (finals[0].event, finals[0].message_id) == ("error", poison.id)
    assert "dead-letter" in finals[0].message and "more than 2 times" in finals[0].message
    assert [e.text for e in finals[1:]] == ["echo: next"]

    listed = dlq(redis_url, "list", "--agent", "DevAgent")
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.splitlines()
    entry_id = line.split()[0]
    assert poison.id in line and "poison pill" in line and "1 dead letter(s)" in listed.stderr
    shown = dlq(redis_url, "show", "--agent", "DevAgent", entry_id)
    assert json.loads(shown.stdout)["id"] == entry_id
    assert dlq(redis_url, "show", "--agent", "DevAgent", "1-1").returncode == 1

    replayed = dlq(redis_url, "replay", "--agent", "DevAgent", entry_id)
    assert replayed.returncode == 0 and "replayed 1 of 1" in replayed.stderr, replayed.stderr
    assert await bus.length(Keys().dead_letters("DevAgent")) == 0
    with running(spawn(["magent2.worker"], **env)):
        events = await wait_for_outputs(bus, "c1", 3, timeout=30)
    assert [e.text for e in events if e.event == "output"] == ["echo: next", "echo: poison pill a b c d e f"]


async def test_dlq_purge_and_usage_errors(bus: RedisStreamsBus, redis_url: str) -> None:
    stream = Keys().dead_letters("DevAgent")
    await bus.publish(
        stream, '{"message_id": "1-0", "agent": "DevAgent", "reason": "malformed", "payload": "{x"}'
    )
    listed = dlq(redis_url, "list", "--agent", "DevAgent")
    assert "(malformed)" in listed.stdout
    refused = dlq(redis_url, "replay", "--agent", "DevAgent", "--all")
    assert refused.returncode == 1 and "cannot be replayed" in refused.stderr
    assert dlq(redis_url, "purge", "--agent", "DevAgent").returncode == 2  # neither ids nor --all
    purged = dlq(redis_url, "purge", "--agent", "DevAgent", "--all")
    assert purged.returncode == 0 and "purged 1" in purged.stderr
    assert await bus.length(stream) == 0
    unset = dlq(None, "list", "--agent", "X")
    assert unset.returncode == 2 and "REDIS_URL is not set" in unset.stderr
