"""Exactly-once in effect under faults, across real processes: a gateway, two workers and Redis
with an AOF. While conversations are sent and streamed over SSE, in turn: kill -9 of a worker,
SIGSTOP of a worker past its lease (then woken), kill -9 and restart of Redis, kill -9 and restart
of the gateway under live streams. Then, for every accepted message: exactly one final event,
in send order per conversation, and every SSE client saw each event once, without gaps."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from magent2.bus import RedisStreamsBus
from tests.support import ROOT, RedisServer, conversation_events, eventually, free_port, python_env

pytestmark = pytest.mark.e2e

CONVERSATIONS, MESSAGES = 16, 8
LEASE_S = 1.0
SEND_GAP_S = 1.4


class Processes:
    """The system under test; each process logs to its own file (a full pipe would stall it)."""

    def __init__(self, workdir: Path, redis_url: str) -> None:
        self.workdir, self.redis_url = workdir, redis_url
        self.gateway_port = free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        common = {"REDIS_URL": self.redis_url, "REDIS_SOCKET_TIMEOUT_SECONDS": "3"}
        if name == "gateway":
            module = "magent2.gateway"
            env = {
                "GATEWAY_PORT": str(self.gateway_port),
                "GATEWAY_HOST": "127.0.0.1",
                "GATEWAY_HEARTBEAT_SECONDS": "0.5",
            }
        else:
            module = "magent2.worker"
            env = {
                "AGENT_NAME": "DevAgent",
                "ECHO_TOKEN_DELAY_SECONDS": "0.15",  # runs of ~0.7 s: every fault hits runs in flight
                "WORKER_VISIBILITY_TIMEOUT_SECONDS": str(LEASE_S),
            }
        log = (self.workdir / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", module], env=python_env(**common, **env), stdout=log, stderr=log, cwd=ROOT
        )

    def kill(self, name: str) -> None:
        self.procs[name].kill()
        self.procs[name].wait()

    def signal(self, name: str, sig: signal.Signals) -> None:
        os.kill(self.procs[name].pid, sig)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def system(workdir: Path, redis_url: str) -> Iterator[Processes]:
    processes = Processes(workdir, redis_url)
    try:
        for name in ("gateway", "worker-a", "worker-b"):
            processes.start(name)
        yield processes
    finally:
        processes.stop_all()


async def send_all(base: str, conversation: str, accepted: list[str]) -> None:
    """Send MESSAGES messages one after another, each retried with its id until accepted."""
    async with httpx.AsyncClient(base_url=base, timeout=5) as http:
        for i in range(MESSAGES):
            body = {
                "id": f"{conversation}-m{i}",
                "conversation_id": conversation,
                "sender": "user:fault",
                "recipient": "agent:DevAgent",
                "content": f"{conversation} message {i}",
            }
            for _ in range(600):
                with contextlib.suppress(httpx.HTTPError):
                    response = await http.post("/send", json=body)
                    if response.status_code == 202:
                        accepted.append(body["id"])
                        break
                    assert response.status_code == 503, response.text
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"{body['id']} never accepted")
            await asyncio.sleep(SEND_GAP_S)  # spread over the whole fault schedule


async def follow(
    base: str, conversation: str, seen: list[tuple[str, dict[str, Any]]], done: asyncio.Event
) -> None:
    """An SSE client that reconnects with Last-Event-ID whenever its connection drops."""
    last_id: str | None = None
    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(5, read=10)) as http:
        while not done.is_set():
            headers = {"Last-Event-ID": last_id} if last_id else {}
            try:
                async with http.stream("GET", f"/stream/{conversation}", headers=headers) as response:
                    frame: dict[str, str] = {}
                    async for line in response.aiter_lines():
                        if line.startswith(("id: ", "data: ")):
                            key, _, value = line.partition(": ")
                            frame[key] = value
                        elif not line and "data" in frame:
                            last_id = frame["id"]
                            seen.append((last_id, json.loads(frame["data"])))
                            frame = {}
                        if done.is_set():
                            return
            except httpx.HTTPError:
                await asyncio.sleep(0.1)


async def test_every_accepted_message_gets_exactly_one_output_through_faults(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path, appendonly=True)
    probe = RedisStreamsBus(redis.url)
    conversations = [f"conv{i:02d}" for i in range(CONVERSATIONS)]
    accepted: list[str] = []
    seen: dict[str, list[tuple[str, dict[str, Any]]]] = {c: [] for c in conversations}
    done = asyncio.Event()
    try:
        with system(tmp_path, redis.url) as procs:
            base = f"http://127.0.0.1:{procs.gateway_port}"
            await eventually(lambda: _up(base), timeout=30, what="gateway")
            await eventually(lambda: _agent_known(base), timeout=30, what="a worker registered")
            followers = [asyncio.create_task(follow(base, c, seen[c], done)) for c in conversations]
            senders = asyncio.gather(*(send_all(base, c, accepted) for c in conversations))

            await asyncio.sleep(1.5)
            procs.kill("worker-a")  # kill -9 mid-run
            procs.start("worker-a")
            await asyncio.sleep(1.5)
            procs.signal("worker-b", signal.SIGSTOP)  # frozen past its lease...
            await asyncio.sleep(LEASE_S * 3)
            procs.signal("worker-b", signal.SIGCONT)  # ...then woken: a zombie with stale runs
            await asyncio.sleep(1.0)
            redis.kill()  # kill -9 of Redis; the AOF keeps what was acknowledged
            await asyncio.sleep(1.0)
            redis = RedisServer.restart(redis)
            await asyncio.sleep(1.5)
            procs.kill("gateway")  # under 16 live SSE streams
            await asyncio.sleep(0.5)
            procs.start("gateway")

            await asyncio.wait_for(senders, 120)
            total = CONVERSATIONS * MESSAGES
            assert len(accepted) == total

            async def all_final() -> bool:
                finals = 0
                for c in conversations:
                    finals += sum(e.event in ("output", "error") for e in await conversation_events(probe, c))
                return finals >= total

            await eventually(all_final, timeout=90, what="a final event for every accepted message")
            await asyncio.sleep(LEASE_S * 3)  # time for any duplicate to show up

            async def caught_up() -> bool:
                for c in conversations:
                    if len(seen[c]) < len(await conversation_events(probe, c)):
                        return False
                return True

            await eventually(caught_up, timeout=30, what="SSE clients caught up")
            done.set()
            await asyncio.gather(*followers, return_exceptions=True)

        lost = duplicated = out_of_order = errors = 0
        for c in conversations:
            finals = [e for e in await conversation_events(probe, c) if e.event in ("output", "error")]
            errors += sum(e.event == "error" for e in finals)
            ids = [e.message_id for e in finals]
            expected = [f"{c}-m{i}" for i in range(MESSAGES)]
            lost += len(set(expected) - set(ids))
            duplicated += len(ids) - len(set(ids))
            out_of_order += ids != sorted(set(ids), key=expected.index)
        print(
            f"\nfaults: {len(accepted)} accepted: lost={lost} duplicated={duplicated} out_of_order={out_of_order}"
        )
        assert (lost, duplicated, out_of_order, errors) == (0, 0, 0, 0)
        for c in conversations:
            events = await conversation_events(probe, c)
            assert [e.text for e in events if e.event == "output"] == [
                f"echo: {c} message {i}" for i in range(MESSAGES)
            ]
            assert [e.event for e in events].count("user_message") == MESSAGES
            # SSE: each event once, in stream order, none missing (cursors strictly increase)
            stream_ids = [m.id for m in await probe.read(f"stream:{c}", count=100_000)]
            assert [cursor for cursor, _ in seen[c]] == stream_ids
    finally:
        done.set()
        await probe.close()
        redis.stop()


async def _up(base: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=1) as http:
            return (await http.get(f"{base}/ready")).status_code == 200
    except httpx.HTTPError:
        return False


async def _agent_known(base: str) -> bool:
    async with httpx.AsyncClient(timeout=1) as http:
        return "DevAgent" in (await http.get(f"{base}/agents")).text
