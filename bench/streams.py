"""`python -m bench.streams`: one gateway process holding thousands of idle SSE streams.

Opens N streams (raw sockets: an idle stream costs the client nothing), then compares POST /send
latency and a send -> output round trip with the streams open against the same figures idle, and
reports the gateway's memory per stream. Target: p50 of POST /send within 2x of idle at 10,000."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from bench.__main__ import Row, cpu_seconds, print_table, rss_mib, wait_agent
from bench.client import load
from tests.support import RedisServer, free_port, running, spawn, wait_http


async def open_streams(port: int, count: int) -> list[asyncio.StreamWriter]:
    """Open `count` SSE streams and wait for each response head; then leave them idle."""
    writers: list[asyncio.StreamWriter] = []

    async def one(i: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"GET /stream/idle-{i} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        await writer.drain()
        status = await reader.readline()
        assert b" 200 " in status, status
        writers.append(writer)

    for start in range(0, count, 500):
        await asyncio.gather(*(one(i) for i in range(start, min(start + 500, count))))
    return writers


async def post_p50(port: int, posts: int) -> float:
    return statistics.median((await load(port, posts=posts, prefix=f"post-{time.monotonic_ns()}")).latency_ms)


async def round_trip_p50(port: int, messages: int) -> float:
    return statistics.median(
        (await load(port, messages=messages, prefix=f"rt-{time.monotonic_ns()}")).latency_ms
    )


async def main_async(args: argparse.Namespace) -> list[Row]:
    with tempfile.TemporaryDirectory() as workdir:
        redis = RedisServer(Path(workdir))
        port = free_port()
        env = {
            "REDIS_URL": redis.url,
            "GATEWAY_PORT": str(port),
            "GATEWAY_LOG_LEVEL": "warning",
            "GATEWAY_HEARTBEAT_SECONDS": "15",
            **({"GATEWAY_STREAM_READERS": str(args.readers)} if args.readers else {}),
        }
        try:
            with (
                running(spawn(["magent2.gateway"], **env)) as gateway,
                running(spawn(["magent2.worker"], **env, AGENT_NAME="Bench")),
            ):
                wait_http(f"http://127.0.0.1:{port}/ready")
                wait_agent(f"http://127.0.0.1:{port}", "Bench")
                await round_trip_p50(port, 50)  # warm up
                idle_post = await post_p50(port, args.posts)
                idle_rt = await round_trip_p50(port, args.messages)
                rss_before = rss_mib(gateway.pid)
                began = time.perf_counter()
                streams = await open_streams(port, args.streams)
                opened_s = time.perf_counter() - began
                await asyncio.sleep(2)
                rss_after = rss_mib(gateway.pid)
                cpu_before = cpu_seconds([gateway.pid])
                await asyncio.sleep(5)
                idle_cpu = (cpu_seconds([gateway.pid]) - cpu_before) / 5
                loaded_post = await post_p50(port, args.posts)
                loaded_rt = await round_trip_p50(port, args.messages)
                for writer in streams:
                    writer.close()
        finally:
            redis.stop()
    n = f"{args.streams:,} streams"
    return [
        (
            "POST /send p50 ms",
            "idle / with " + n,
            f"{idle_post:.2f} / {loaded_post:.2f} ({loaded_post / idle_post:.2f}x)",
        ),
        (
            "send -> output p50 ms",
            "idle / with " + n,
            f"{idle_rt:.2f} / {loaded_rt:.2f} ({loaded_rt / idle_rt:.2f}x)",
        ),
        ("gateway memory", "KiB per idle stream", f"{(rss_after - rss_before) * 1024 / args.streams:.1f}"),
        ("gateway memory", "RSS MiB idle / with " + n, f"{rss_before:.0f} / {rss_after:.0f}"),
        ("gateway CPU with " + n + " idle", "% of one core", f"{idle_cpu * 100:.1f}"),
        ("opening " + n, "seconds", f"{opened_s:.1f}"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.streams", description=__doc__)
    parser.add_argument(
        "--streams", type=int, default=10_000, help="idle SSE streams to hold (default 10,000)"
    )
    parser.add_argument("--readers", type=int, help="GATEWAY_STREAM_READERS (default: the gateway's)")
    parser.add_argument("--posts", type=int, default=300, help="POST /send samples per figure")
    parser.add_argument("--messages", type=int, default=100, help="round trips per figure")
    print_table(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
