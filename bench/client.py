"""The benchmarks' load generator (`bench/loadgen`, Go): built on first use with the local Go
toolchain into .tools/bin, then run as a process of its own so its CPU is not the server's."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

SOURCE = Path(__file__).parent / "loadgen"
BINARY = Path(__file__).parents[1] / ".tools" / "bin" / "magent2-loadgen"


@dataclass(frozen=True)
class Run:
    messages: int
    elapsed_s: float
    latency_ms: list[float]  # POST -> output (POST -> 202 when only posting)
    first_token_ms: list[float]

    @property
    def rate(self) -> float:
        return self.messages / self.elapsed_s


@cache
def binary() -> Path:
    """Build the load generator (Go's build cache makes a rebuild of unchanged code instant)."""
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("the benchmarks' load generator needs Go (https://go.dev/doc/install)")
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([go, "build", "-o", str(BINARY), "."], cwd=SOURCE, check=True)
    return BINARY


async def load(
    port: int,
    *,
    conversations: int = 1,
    messages: int = 100,
    prefix: str,
    agent: str = "Bench",
    posts: int = 0,
) -> Run:
    """`conversations` at once, `messages` each (or, with `posts`, that many POSTs alone)."""
    args = [
        f"-addr=127.0.0.1:{port}",
        f"-agent={agent}",
        f"-prefix={prefix}",
        f"-conversations={conversations}",
        f"-messages={0 if posts else messages}",
        f"-posts={posts}",
    ]
    process = await asyncio.create_subprocess_exec(
        str(binary()), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    figures = json.loads(out) if out.strip() else {"errors": [err.decode()]}
    if process.returncode != 0 or figures.get("errors"):
        raise RuntimeError(f"load generator failed: {figures.get('errors') or err.decode()}")
    return Run(figures["messages"], figures["elapsed_s"], figures["latency_ms"], figures["first_token_ms"])
