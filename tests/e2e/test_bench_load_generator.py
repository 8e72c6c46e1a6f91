"""The benchmarks' Go load generator against a real gateway and worker: every message answered,
timed to its first token and its output; POST-only mode; a failure is reported, not hidden."""

from __future__ import annotations

import shutil

import pytest

from bench.__main__ import wait_agent
from bench.client import load
from tests.support import free_port, running, spawn, wait_http

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(shutil.which("go") is None, reason="needs Go")]


async def test_conversations_are_timed_to_first_token_and_output(redis_url: str) -> None:
    port = free_port()
    env = {"REDIS_URL": redis_url, "GATEWAY_PORT": str(port)}
    with (
        running(spawn(["magent2.worker"], **env, AGENT_NAME="Bench")),
        running(spawn(["magent2.gateway"], **env)),
    ):
        wait_http(f"http://127.0.0.1:{port}/health")
        wait_agent(f"http://127.0.0.1:{port}", "Bench")
        run = await load(port, conversations=4, messages=5, prefix="lg")
        assert run.messages == 20 and len(run.latency_ms) == len(run.first_token_ms) == 20
        assert all(
            0 < first <= total for first, total in zip(run.first_token_ms, run.latency_ms, strict=False)
        )
        posts = await load(port, posts=30, prefix="lg-posts")
        assert posts.messages == 30 and posts.first_token_ms == []
        with pytest.raises(RuntimeError, match="unknown agent"):
            await load(port, messages=1, prefix="lg-nobody", agent="Nobody")
