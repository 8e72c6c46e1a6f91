"""`python -m bench.llm`: the Agents SDK path, LLM-shaped. A scripted OpenAI-compatible server
(300 ms to first token, 40 deltas/s, 50 deltas per answer) answers both the bare Agents SDK
(`Runner.run_streamed` in a process of its own, no magent2) and magent2 (gateway + worker
processes, each message sent over HTTP and streamed back over SSE), N runs at once. Reported:
time to first token (p50) and what magent2 adds to it, and CPU per streamed model delta of the
bare SDK process vs the worker (gateway and scripted server CPU beside them)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from bench.__main__ import Row, cpu_seconds, print_table, rss_mib, wait_agent
from bench.client import load
from tests.support import ROOT, RedisServer, free_port, python_env, running, spawn, wait_http, wait_until

DELTAS = 50


async def bare_sdk(port: int, runs: int) -> dict[str, float]:
    """Runs inside its own process: N concurrent Runner.run_streamed, no magent2 at all."""
    import openai
    from agents import Agent, OpenAIChatCompletionsModel, Runner
    from agents.stream_events import RawResponsesStreamEvent

    client = openai.AsyncOpenAI(api_key="bench", base_url=f"http://127.0.0.1:{port}/v1")
    agent = Agent(name="Bare", model=OpenAIChatCompletionsModel(model="scripted", openai_client=client))

    async def one() -> tuple[float, int]:
        began, first, deltas = time.perf_counter(), 0.0, 0
        result = Runner.run_streamed(agent, "hello")
        async for event in result.stream_events():
            if isinstance(event, RawResponsesStreamEvent) and event.data.type == "response.output_text.delta":
                deltas += 1
                first = first or time.perf_counter() - began
        return first, deltas

    await one()
    cpu = time.process_time()
    results = await asyncio.gather(*(one() for _ in range(runs)))
    cpu = time.process_time() - cpu
    return {
        "ttft_ms": statistics.median(r[0] for r in results) * 1000,
        "cpu_ms_per_delta": cpu / sum(r[1] for r in results) * 1000,
    }


async def through_magent2(port: int, runs: int) -> float:
    """N conversations at once, one message each; the median time from POST to the first token."""
    run = await load(port, conversations=runs, messages=1, prefix=f"llm-{uuid.uuid4().hex[:8]}")
    return statistics.median(run.first_token_ms)


async def measure(runs_list: list[int], concurrency: int | None) -> list[Row]:
    rows: list[Row] = []
    model_port, port = free_port(), free_port()
    with running(spawn(["bench.openai_server", "--port", str(model_port)])) as model:
        wait_until(lambda: _listening(model_port), what="scripted model server")
        with tempfile.TemporaryDirectory() as workdir:
            redis = RedisServer(Path(workdir))
            env = {
                "REDIS_URL": redis.url,
                "GATEWAY_PORT": str(port),
                "GATEWAY_LOG_LEVEL": "warning",
                "OPENAI_BASE_URL": f"http://127.0.0.1:{model_port}/v1",
                "OPENAI_API_KEY": "bench",
                "AGENT_MODEL": "scripted",
                "AGENT_TOOLS": "",
                "OPENAI_AGENTS_DISABLE_TRACING": "1",
            }
            if concurrency:
                env["AGENT_CONCURRENCY"] = str(concurrency)
            try:
                with (
                    running(spawn(["magent2.gateway"], **env)) as gateway,
                    running(spawn(["magent2.worker"], **env, AGENT_NAME="Bench")) as worker,
                ):
                    wait_http(f"http://127.0.0.1:{port}/ready")
                    wait_agent(f"http://127.0.0.1:{port}", "Bench")
                    await through_magent2(port, 2)  # warm up
                    idle_mib = rss_mib(worker.pid)
                    for runs in runs_list:
                        bare = _bare_in_a_process(model_port, runs)
                        pids = (worker.pid, gateway.pid, model.pid)
                        before = [cpu_seconds([p]) for p in pids]
                        async with _peak_rss(worker.pid) as peak:
                            ttft = await through_magent2(port, runs)
                        spent = [cpu_seconds([p]) - b for p, b in zip(pids, before, strict=True)]
                        rows += _rows(runs, bare, ttft, [cpu / (runs * DELTAS) * 1000 for cpu in spent])
                        at_once = min(runs, concurrency or _default_concurrency())
                        rows.append(
                            (
                                f"{runs} runs at once",
                                "worker RSS MiB: idle / peak (per run)",
                                f"{idle_mib:.0f} / {peak[0]:.0f} ({(peak[0] - idle_mib) / at_once:.2f})",
                            )
                        )
            finally:
                redis.stop()
    return rows


def _rows(runs: int, bare: dict[str, float], ttft: float, cpu_per_delta: list[float]) -> list[Row]:
    worker, gateway, model = cpu_per_delta
    label = f"{runs} runs at once"
    ours = worker - bare["cpu_ms_per_delta"]
    return [
        (
            label,
            "TTFT p50 ms: bare SDK / magent2 (added)",
            f"{bare['ttft_ms']:.0f} / {ttft:.0f} (+{ttft - bare['ttft_ms']:.0f})",
        ),
        (label, "CPU ms/model delta: bare SDK / worker", f"{bare['cpu_ms_per_delta']:.3f} / {worker:.3f}"),
        (label, "  ours (worker - bare) / gateway / model", f"{ours:.3f} / {gateway:.3f} / {model:.3f}"),
    ]


@contextlib.asynccontextmanager
async def _peak_rss(pid: int) -> AsyncIterator[list[float]]:
    """The highest RSS of `pid` while the block runs, sampled every 20 ms (in peak[0] after it)."""
    peak = [rss_mib(pid)]

    async def sample() -> None:
        while True:
            peak[0] = max(peak[0], rss_mib(pid))
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    try:
        yield peak
    finally:
        sampler.cancel()
        peak[0] = max(peak[0], rss_mib(pid))


def _default_concurrency() -> int:
    from magent2.settings import WorkerSettings

    return int(WorkerSettings.model_fields["agent_concurrency"].default)


def _bare_in_a_process(model_port: int, runs: int) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-m", "bench.llm", "--bare", str(model_port), "--runs", str(runs)],
        env=python_env(OPENAI_AGENTS_DISABLE_TRACING="1"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    figures: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.llm", description=__doc__)
    parser.add_argument("--runs", type=int, nargs="+", default=[20, 50, 100], help="runs at once")
    parser.add_argument("--concurrency", type=int, help="AGENT_CONCURRENCY (default: the worker's)")
    parser.add_argument("--bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        print(json.dumps(asyncio.run(bare_sdk(args.bare, args.runs[0]))))
        return
    print_table(asyncio.run(measure(args.runs, args.concurrency)))


if __name__ == "__main__":
    main()
