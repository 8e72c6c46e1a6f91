"""Shared test helpers: real servers on free loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Any, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


async def eventually(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class RedisServer:
    """A throwaway `redis-server` (Debian package) on a free port."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        binary: str = "redis-server",
        appendonly: bool = False,
        appendfsync: str = "always",
    ) -> None:
        path = shutil.which(binary)
        if path is None:
            raise RuntimeError(f"{binary} not found: install it with `make system-deps`")
        self.workdir, self.binary = workdir, binary
        self.appendonly, self.appendfsync = appendonly, appendfsync
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            [
                path,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if appendonly else "no",
                "--appendfsync",
                appendfsync,
                "--dir",
                str(workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self.ready, what="redis-server")

    def ready(self) -> bool:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s,
        ):
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
        return False

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(b"FLUSHALL\r\n")
            s.recv(16)

    @classmethod
    def restart(cls, stopped: RedisServer) -> RedisServer:
        """A new server on the same port and data directory, as after an outage."""
        return cls(
            stopped.workdir,
            stopped.port,
            binary=stopped.binary,
            appendonly=stopped.appendonly,
            appendfsync=stopped.appendfsync,
        )

    def kill(self) -> None:
        """kill -9: whatever was not yet on disk is gone."""
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@contextlib.asynccontextmanager
async def own_redis(workdir: Path, **options: Any) -> AsyncIterator[Any]:
    """A server of the test's own (binary, AOF…) and a `RedisStreamsBus` on it; both go after."""
    from magent2.bus import RedisStreamsBus

    server = RedisServer(workdir, **options)
    bus = RedisStreamsBus(server.url)
    try:
        yield bus
    finally:
        await bus.close()
        server.stop()


@contextlib.asynccontextmanager
async def serve_app(app: Any) -> AsyncIterator[str]:
    """Run an ASGI app under a real uvicorn server in this event loop; yield its base URL."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await eventually(lambda: server.started or task.done(), what="uvicorn")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        server.force_exit = True  # do not wait for open SSE streams
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        sock.close()


def python_env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "GATEWAY_", "OPENAI_", "REDIS_"))
    }
    env.update(extra)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def spawn(args: list[str], **env: str) -> subprocess.Popen[bytes]:
    """Start `python -m <args>` with a clean environment plus `env`."""
    return subprocess.Popen(
        [sys.executable, "-m", *args], env=python_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


@contextlib.contextmanager
def running(process: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_http(url: str, timeout: float = 20.0) -> None:
    def up() -> bool:
        try:
            return httpx.get(url, timeout=1).status_code < 500
        except httpx.HTTPError:
            return False

    wait_until(up, timeout=timeout, interval=0.05, what=url)


# Two agents on the scripted model: DevAgent without tools, Operator whose terminal calls need approval.
DEV_AND_OPERATOR = """
apiVersion: magent2.dev/v1alpha1
kind: Agent
metadata: {name: dev}
spec: {agentName: DevAgent, tools: []}
---
apiVersion: magent2.dev/v1alpha1
kind: Agent
metadata: {name: operator}
spec:
  agentName: Operator
  tools: [terminal]
  terminal: {allowedCommands: [echo]}
  approval: {tools: [terminal]}
"""
SCRIPTED = {"AGENT_MODEL_FACTORY": "tests.scripted_model:command_model", "AGENT_SESSION_PATH": ":memory:"}


@contextlib.contextmanager
def local_mode(manifest: Path | str, **env: str) -> Iterator[str]:
    """`magent2 up -f manifest` (agents on the scripted model) on a free port; its base URL."""
    port = free_port()
    command = ["magent2.cli", "up", "--port", str(port), "-f", str(manifest)]
    with running(spawn(command, **SCRIPTED, **env)):
        wait_http(f"http://127.0.0.1:{port}/health", timeout=30)
        yield f"http://127.0.0.1:{port}"


class RestartableGateway:
    """A slow echo worker (DevAgent, 50 ms per token) and a gateway process on real Redis, for the
    tests of streams that outlive a gateway: `kill` it (-9), then `start` a new one on the same port."""

    def __init__(self, redis_url: str, processes: contextlib.ExitStack) -> None:
        self.port, self.processes = free_port(), processes
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {"REDIS_URL": redis_url, "GATEWAY_PORT": str(self.port)}
        worker = {"REDIS_URL": redis_url, "AGENT_NAME": "DevAgent", "ECHO_TOKEN_DELAY_SECONDS": "0.05"}
        processes.enter_context(running(spawn(["magent2.worker"], **worker)))
        self.start()
        wait_http(f"{self.url}/health")

    def start(self) -> None:
        self.gateway = self.processes.enter_context(running(spawn(["magent2.gateway"], **self.env)))

    def kill(self) -> None:
        self.gateway.kill()
        self.gateway.wait(10)


@contextlib.contextmanager
def restartable_gateway(redis_url: str) -> Iterator[RestartableGateway]:
    with contextlib.ExitStack() as processes:
        yield RestartableGateway(redis_url, processes)


async def send_envelope(
    bus: Any,
    content: str,
    *,
    conversation: str = "c1",
    agent: str = "DevAgent",
    envelope_id: str | None = None,
    prefix: str = "",
) -> Any:
    from magent2.bus import Keys
    from magent2.contracts import MessageEnvelope

    fields: dict[str, Any] = {
        "conversation_id": conversation,
        "sender": "user:test",
        "recipient": f"agent:{agent}",
        "content": content,
    }
    if envelope_id:
        fields["id"] = envelope_id
    envelope = MessageEnvelope(**fields)
    await bus.publish(Keys(prefix).inbox(agent), envelope.to_json(), order_key=conversation)
    return envelope


async def conversation_events(bus: Any, conversation: str, *, prefix: str = "") -> list[Any]:
    from magent2.bus import START, Keys
    from magent2.contracts import parse_event

    return [
        parse_event(m.payload)
        for m in await bus.read(Keys(prefix).events(conversation), START, count=100_000)
    ]


async def wait_for_outputs(
    bus: Any, conversation: str, count: int, timeout: float = 10.0, prefix: str = ""
) -> list[Any]:
    """The conversation's events once `count` final (output, error or cancelled) events are in it."""
    from magent2.contracts import FINAL_EVENTS

    async def enough() -> bool:
        events = await conversation_events(bus, conversation, prefix=prefix)
        return sum(e.event in FINAL_EVENTS for e in events) >= count

    await eventually(enough, timeout=timeout, what=f"{count} final events in {conversation}")
    return await conversation_events(bus, conversation, prefix=prefix)


@contextlib.asynccontextmanager
async def workers_running(*workers: Any) -> AsyncIterator[list[asyncio.Task[None]]]:
    """Run in-process workers for the block; stop them (gracefully) after it."""
    tasks = [asyncio.create_task(worker.run()) for worker in workers]
    try:
        yield tasks
    finally:
        for worker in workers:
            worker.stop()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
