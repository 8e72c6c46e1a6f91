"""`make bench`: magent2's speed on this machine, printed as a table.

Round trip send -> output through a gateway process, Redis and an echo worker process (concurrency 1
and 16), driven by the Go load generator (`bench/loadgen`) so the client's CPU is not counted as the
server's; server CPU per message is the three processes' CPU time over the messages. Also token
events/s delivered to one SSE client, a raw redis XADD/XREAD baseline and the durable-ack cost.
Targets (2 cores): server CPU <= 1.0 ms per message, >= 1,000 msg/s at concurrency 16, p50 <= 2 ms
at concurrency 1."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import redis.asyncio as aioredis

from bench.client import load
from magent2.contracts import TokenEvent
from tests.support import RedisServer, free_port, running, spawn, wait_http, wait_until

Row = tuple[str, str, str]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (from /proc; clock ticks of 1/100 s)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / 100


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_agent(base_url: str, name: str) -> None:
    """Until a worker of `name` has registered its inbox (the gateway 404s unknown agents)."""
    wait_until(lambda: name in httpx.get(f"{base_url}/agents").text, timeout=30, what=f"agent {name}")


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def durable_ack(posts: int) -> list[Row]:
    """POST /send p50 against Valkey with an AOF (appendfsync everysec), with and without
    GATEWAY_DURABLE_ACK (WAITAOF: the 202 waits for the fsync)."""
    figures = {}
    with tempfile.TemporaryDirectory() as workdir:
        server = RedisServer(Path(workdir), binary="valkey-server", appendonly=True, appendfsync="everysec")
        try:
            for durable in ("false", "true"):
                port = free_port()
                env = {
                    "REDIS_URL": server.url,
                    "GATEWAY_PORT": str(port),
                    "GATEWAY_DURABLE_ACK": durable,
                    "GATEWAY_CHECK_RECIPIENTS": "false",  # no worker: acceptance only
                }
                with running(spawn(["magent2.gateway"], **env, GATEWAY_LOG_LEVEL="warning")):
                    wait_http(f"http://127.0.0.1:{port}/ready")
                    await load(port, posts=100, prefix="warm")
                    run = await load(port, posts=posts, prefix=f"durable-{durable}")
                    figures[durable] = statistics.median(run.latency_ms)
        finally:
            server.stop()
    label = "POST /send p50 ms, Valkey AOF everysec"
    ratio = figures["true"] / figures["false"]
    return [
        (
            label,
            "ack / durable ack (WAITAOF)",
            f"{figures['false']:.2f} / {figures['true']:.2f} ({ratio:.1f}x)",
        )
    ]


async def round_trip(
    port: int, concurrency: int, per_conversation: int, repeat: int, servers: list[int]
) -> list[Row]:
    """`repeat` rounds; each figure is the median over the rounds (this machine is noisy).
    Server CPU per message: the CPU time of gateway + worker + Redis over a round / messages."""
    await load(port, messages=20, prefix=f"warm-{uuid.uuid4().hex[:6]}")
    p50s, p99s, rates, cpus = [], [], [], []
    for _ in range(repeat):
        cpu_before = [cpu_seconds([pid]) for pid in servers]
        run = await load(
            port,
            conversations=concurrency,
            messages=per_conversation,
            prefix=f"c{concurrency}-{uuid.uuid4().hex[:6]}",
        )
        rates.append(run.rate)
        cpus.append(
            [(cpu_seconds([p]) - c) / run.messages * 1000 for p, c in zip(servers, cpu_before, strict=True)]
        )
        p50s.append(pct(run.latency_ms, 0.5))
        p99s.append(pct(run.latency_ms, 0.99))
    median = statistics.median
    label = f"round trip, concurrency {concurrency} ({concurrency * per_conversation} msgs x {repeat})"
    return [
        (label, "p50 / p99 ms", f"{median(p50s):.2f} / {median(p99s):.2f}"),
        (label, "messages/s", f"{median(rates):,.0f}"),
        (label, "server CPU ms/message", f"{median(sum(c) for c in cpus):.2f}"),
        (
            label,
            "  of which gateway / worker / redis",
            " / ".join(f"{median(c[i] for c in cpus):.2f}" for i in range(3)),
        ),
    ]


async def sse_tokens(base_url: str, redis_url: str, count: int) -> list[Row]:
    client = aioredis.Redis.from_url(redis_url)
    conversation = f"tokens-{uuid.uuid4().hex[:6]}"
    payloads = [
        TokenEvent(conversation_id=conversation, text="tok ", index=i).to_json() for i in range(count)
    ]
    async with client.pipeline(transaction=False) as pipe:
        for payload in payloads:
            pipe.xadd(f"stream:{conversation}", {"data": payload})
        await pipe.execute()
    await client.aclose()
    received = 0
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        began = time.perf_counter()
        async with http.stream("GET", f"/stream/{conversation}", params={"max_events": count}) as stream:
            async for line in stream.aiter_lines():
                if line.startswith("event: token"):
                    received += 1
        elapsed = time.perf_counter() - began
    assert received == count, f"received {received} of {count}"
    return [(f"SSE to one client ({count:,} token events)", "events/s", f"{count / elapsed:,.0f}")]


async def redis_baseline(redis_url: str, count: int) -> list[Row]:
    client = aioredis.Redis.from_url(redis_url)
    stream = f"baseline-{uuid.uuid4().hex[:6]}"
    payload = TokenEvent(conversation_id="c", text="tok ", index=0).to_json()
    began = time.perf_counter()
    async with client.pipeline(transaction=False) as pipe:
        for _ in range(count):
            pipe.xadd(stream, {"data": payload})
        await pipe.execute()
    xadd_rate = count / (time.perf_counter() - began)
    began, cursor, read = time.perf_counter(), "0-0", 0
    while read < count:
        reply = await client.xread({stream: cursor}, count=500)
        entries = reply[0][1]
        read += len(entries)
        cursor = entries[-1][0]
    xread_rate = count / (time.perf_counter() - began)
    latencies = []
    for _ in range(300):
        began = time.perf_counter()
        await client.xadd(stream, {"data": payload})
        await client.xread({stream: cursor}, count=1)
        latencies.append(time.perf_counter() - began)
        cursor = "$"
    await client.aclose()
    return [
        ("raw redis baseline", "XADD pipelined/s", f"{xadd_rate:,.0f}"),
        ("raw redis baseline", "XREAD (500/batch) entries/s", f"{xread_rate:,.0f}"),
        ("raw redis baseline", "XADD+XREAD p50 ms", f"{statistics.median(latencies) * 1000:.3f}"),
    ]


def print_table(rows: list[Row]) -> None:
    widths = [max(len(r[i]) for r in [("benchmark", "metric", "value"), *rows]) for i in range(3)]
    line = "  ".join("-" * w for w in widths)
    print(line)
    for row in [("benchmark", "metric", "value"), *rows]:
        print(
            "  ".join(
                cell.ljust(w) if i < 2 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if row[0] == "benchmark":
            print(line)
    print(line)


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        redis = RedisServer(Path(workdir))
        port = free_port()
        env = {"REDIS_URL": redis.url, "GATEWAY_PORT": str(port), "GATEWAY_LOG_LEVEL": "warning"}
        try:
            with (
                running(spawn(["magent2.gateway"], **env)) as gateway,
                running(
                    spawn(["magent2.worker"], **env, AGENT_NAME="Bench", AGENT_CONCURRENCY="32")
                ) as worker,
            ):
                base_url = f"http://127.0.0.1:{port}"
                wait_http(f"{base_url}/ready")
                wait_agent(base_url, "Bench")
                servers = [gateway.pid, worker.pid, redis.process.pid]
                rows = await round_trip(port, 1, args.messages, args.repeat, servers)
                rows += await round_trip(port, 16, max(args.messages // 4, 10), args.repeat, servers)
                rows += await sse_tokens(base_url, redis.url, args.tokens)
                rows += await redis_baseline(redis.url, args.tokens)
            rows += await durable_ack(args.messages)
        finally:
            redis.stop()
    print_table(rows)
    if args.json:
        print(json.dumps({f"{a} | {b}": c for a, b, c in rows}))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--messages", type=int, default=400, help="messages at concurrency 1 (default 400)")
    parser.add_argument("--tokens", type=int, default=100_000, help="token events for the SSE test")
    parser.add_argument("--repeat", type=int, default=5, help="rounds per round-trip figure (median)")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
