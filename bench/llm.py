"""`python -m bench.llm`: the Agents SDK path, LLM-shaped. A scripted OpenAI-compatible server
(300 ms to first token, 40 deltas/s, 50 deltas per answer) answers both the bare Agents SDK
(`Runner.run_streamed` in a process of its own, no magent2) and magent2 (gateway + worker
processes, each message sent over HTTP and streamed back over SSE), N runs at once.

The bare SDK runs twice alone (on its defaults, then tuned as the worker runs it: the aiohttp
transport, uvloop, `settle_heap`), then tuned again side by side with magent2, both started
together, so that both meet the same load on the 2 cores. Reported: time to first token (p50) and
what magent2 adds to it, CPU per streamed model delta of the bare SDK (alone: what tuning saves;
side by side: against the worker) and what the worker spends above it (ours), with the gateway,
Redis and scripted server CPU beside them."""

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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from bench.__main__ import Row, cpu_seconds, print_table, rss_mib, wait_agent
from bench.client import load
from magent2.loop import run, settle_heap
from tests.support import ROOT, RedisServer, free_port, python_env, running, spawn, wait_http, wait_until

DELTAS = 50


async def bare_sdk(
    port: int, runs: int, *, tuned: bool, ready: Callable[[], Awaitable[None]] | None = None
) -> dict[str, float]:
    """Runs inside its own process: N concurrent Runner.run_streamed, no magent2 at all. `tuned`:
    on the worker's footing (the aiohttp transport, uvloop, `settle_heap`); else the SDK's
    defaults (httpx, asyncio, CPython's collector settings). `ready`: awaited after the warm-up."""
    import openai
    from agents import Agent, OpenAIChatCompletionsModel, Runner
    from agents.stream_events import RawResponsesStreamEvent

    from magent2.worker.sdk_runner import http_client

    http = http_client("aiohttp") if tuned else None
    client = openai.AsyncOpenAI(api_key="bench", base_url=f"http://127.0.0.1:{port}/v1", http_client=http)
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
    if tuned:
        settle_heap()
    if ready is not None:
        await ready()
    cpu = time.process_time()
    results = await asyncio.gather(*(one() for _ in range(runs)))
    cpu = time.process_time() - cpu
    await client.close()
    return {
        "ttft_ms": statistics.median(r[0] for r in results) * 1000,
        "cpu_ms_per_delta": cpu / sum(r[1] for r in results) * 1000,
    }


async def _told_to_go() -> None:
    """Side by side: say "ready" on stdout, start when a line comes on stdin."""
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def through_magent2(port: int, runs: int) -> float:
    """N conversations at once, one message each; the median time from POST to the first token."""
    run = await load(port, conversations=runs, messages=1, prefix=f"llm-{uuid.uuid4().hex[:8]}")
    return statistics.median(run.first_token_ms)


async def measure(runs_list: list[int], concurrency: int | None, repeat: int) -> list[Row]:
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
                    pids = (worker.pid, gateway.pid, redis.process.pid, model.pid)
                    for runs in runs_list:
                        rounds: list[Round] = []
                        peak = idle_mib
                        for _ in range(repeat):
                            default = _bare_alone(model_port, runs, tuned=False)
                            tuned = _bare_alone(model_port, runs, tuned=True)
                            before = [cpu_seconds([p]) for p in pids]
                            async with _peak_rss(worker.pid) as seen:
                                beside, ttft = await _side_by_side(model_port, port, runs)
                            spent = [cpu_seconds([p]) - b for p, b in zip(pids, before, strict=True)]
                            per_delta = [c / (runs * DELTAS) * 1000 for c in spent]
                            per_delta[-1] /= 2  # the model server answered both
                            rounds.append(Round(default, tuned, beside, ttft, per_delta))
                            peak = max(peak, seen[0])
                        at_once = min(runs, concurrency or _default_concurrency())
                        rows += _rows(runs, rounds)
                        rows.append(
                            (
                                f"{runs} runs at once",
                                "worker RSS MiB: idle / peak (per run)",
                                f"{idle_mib:.0f} / {peak:.0f} ({(peak - idle_mib) / at_once:.2f})",
                            )
                        )
            finally:
                redis.stop()
    return rows


@dataclass
class Round:
    default: dict[str, float]  # the bare SDK on its defaults, alone
    tuned: dict[str, float]  # the bare SDK on the worker's footing, alone
    beside: dict[str, float]  # the same, running beside magent2
    ttft_ms: float  # through magent2
    cpu_ms_per_delta: list[float]  # worker, gateway, redis, model server


def _rows(runs: int, rounds: list[Round]) -> list[Row]:
    def med(values: Iterable[float]) -> float:
        return statistics.median(values)

    bare_ttft = med(r.beside["ttft_ms"] for r in rounds)
    ttft = med(r.ttft_ms for r in rounds)
    default_cpu = med(r.default["cpu_ms_per_delta"] for r in rounds)
    tuned_cpu = med(r.tuned["cpu_ms_per_delta"] for r in rounds)
    bare_cpu = med(r.beside["cpu_ms_per_delta"] for r in rounds)
    worker, gateway, redis, model = (med(r.cpu_ms_per_delta[i] for r in rounds) for i in range(4))
    ours = med(r.cpu_ms_per_delta[0] - r.beside["cpu_ms_per_delta"] for r in rounds)
    label = f"{runs} runs at once"
    return [
        (
            label,
            "TTFT p50 ms: bare SDK / magent2 (added)",
            f"{bare_ttft:.0f} / {ttft:.0f} (+{ttft - bare_ttft:.0f})",
        ),
        (
            label,
            "bare SDK alone, CPU ms/delta: SDK defaults / tuned",
            f"{default_cpu:.3f} / {tuned_cpu:.3f}",
        ),
        (label, "side by side, CPU ms/delta: bare SDK / worker", f"{bare_cpu:.3f} / {worker:.3f}"),
        (
            label,
            "  ours (worker - bare) / gateway / redis / model",
            f"{ours:.3f} / {gateway:.3f} / {redis:.3f} / {model:.3f}",
        ),
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


def _bare_command(model_port: int, runs: int, *flags: str) -> list[str]:
    return [sys.executable, "-m", "bench.llm", "--bare", str(model_port), "--runs", str(runs), *flags]


def _bare_alone(model_port: int, runs: int, *, tuned: bool) -> dict[str, float]:
    """The bare SDK in a process of its own, with nothing else running."""
    result = subprocess.run(
        _bare_command(model_port, runs, *(["--tuned"] if tuned else [])),
        env=python_env(OPENAI_AGENTS_DISABLE_TRACING="1"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    figures: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


async def _side_by_side(model_port: int, port: int, runs: int) -> tuple[dict[str, float], float]:
    """The tuned bare SDK and magent2, N runs each, started together: both meet the same load on
    the machine, so their CPU per delta and time to first token compare. The bare SDK's figures,
    and magent2's median time to first token."""
    bare = await asyncio.create_subprocess_exec(
        *_bare_command(model_port, runs, "--tuned", "--side-by-side"),
        env=python_env(OPENAI_AGENTS_DISABLE_TRACING="1"),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert bare.stdin is not None and bare.stdout is not None
    while (await bare.stdout.readline()).strip() != b"ready":
        pass
    bare.stdin.write(b"go\n")
    await bare.stdin.drain()
    ttft = await through_magent2(port, runs)
    out, _ = await bare.communicate()
    figures: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return figures, ttft


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
    parser.add_argument("--repeat", type=int, default=2, help="rounds per figure (median)")
    parser.add_argument("--bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--tuned", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--side-by-side", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        figures = bare_sdk(
            args.bare, args.runs[0], tuned=args.tuned, ready=_told_to_go if args.side_by_side else None
        )
        print(json.dumps(run(figures) if args.tuned else asyncio.run(figures)))
        return
    print_table(asyncio.run(measure(args.runs, args.concurrency, args.repeat)))


if __name__ == "__main__":
    main()
