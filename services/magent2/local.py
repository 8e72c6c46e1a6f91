"""`magent2 up`: the gateway and one worker per Agent manifest in one process.

In-memory bus by default (no Redis, no cluster); `--redis-url` shares a real Redis instead."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

import uvicorn

from magent2 import telemetry
from magent2.bus.build import build_bus
from magent2.contracts import AgentManifest, describe_tools, unknown_tools
from magent2.gateway.app import create_app
from magent2.loop import settle_heap
from magent2.manifests import ManifestError
from magent2.settings import GatewaySettings, WorkerSettings
from magent2.startup import StartupError, listen, require_bus
from magent2.worker.build import build_runner, build_worker
from magent2.worker.worker import Worker

log = logging.getLogger("magent2.local")


def worker_settings(manifest: AgentManifest, base: WorkerSettings) -> WorkerSettings:
    """The settings a worker of this Agent gets; process env (OPENAI_API_KEY, …) fills the rest."""
    spec = manifest.spec
    if spec.instructions_from is not None:
        raise ManifestError(
            f"Agent {manifest.metadata.name}: instructionsFrom refers to cluster objects; "
            "use instructions in local mode"
        )
    overrides: dict[str, Any] = {
        "agent_name": manifest.agent_name,
        "agent_model": spec.model,
        "agent_max_turns": spec.model_settings.max_turns,
        "agent_temperature": spec.model_settings.temperature,
        "agent_concurrency": spec.concurrency,
        "agent_on_new_message": spec.on_new_message,
        "agent_approval_tools": spec.approval.tools,
        "agent_approval_timeout_seconds": spec.approval.timeout_seconds,
        "agent_approval_on_timeout": spec.approval.on_timeout,
    }
    if spec.instructions is not None:
        overrides["agent_instructions"] = spec.instructions
        overrides["agent_instructions_file"] = None
    if spec.openai.base_url:
        overrides["openai_base_url"] = spec.openai.base_url
    if spec.openai.api:
        overrides["openai_api"] = spec.openai.api
    if spec.provider is not None and spec.provider.base_url:  # its key: LITELLM_API_KEY in the env
        overrides["litellm_base_url"] = spec.provider.base_url
    if spec.tools is not None:
        servers = [server.name for server in spec.mcp_servers]
        if unknown := unknown_tools(spec.tools, servers):
            raise ManifestError(
                f"Agent {manifest.metadata.name}: unknown tools {', '.join(unknown)}; "
                f"known: {describe_tools(servers)}"
            )
        overrides["agent_tools"] = spec.tools
    terminal = spec.terminal
    overrides.update(
        terminal_timeout_seconds=terminal.timeout_seconds,
        terminal_output_cap_bytes=terminal.output_cap_bytes,
        terminal_function_output_max_chars=terminal.function_output_max_chars,
        terminal_redact_substrings=terminal.redact_substrings,
        terminal_redact_patterns=terminal.redact_patterns,
        mcp_servers=spec.mcp_servers,
    )
    if terminal.allowed_commands is not None:
        overrides["terminal_allowed_commands"] = terminal.allowed_commands
    return base.model_copy(update=overrides)


async def serve(
    manifests: list[AgentManifest],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    redis_url: str | None = None,
    started: asyncio.Event | None = None,
) -> None:
    sock = listen(host, port, hint="--port (make run PORT=...)")
    base = WorkerSettings(REDIS_URL=redis_url)
    telemetry.setup("local")
    gateway_settings = GatewaySettings(REDIS_URL=redis_url, GATEWAY_HOST=host, GATEWAY_PORT=port)
    bus = build_bus(base)
    if redis_url:
        try:
            await require_bus(bus, redis_url)
        except StartupError:
            sock.close()
            await bus.close()
            raise
    workers: list[Worker] = []
    for manifest in manifests:
        settings = worker_settings(manifest, base)
        workers.append(build_worker(settings, bus, build_runner(settings, bus)))
    app = create_app(gateway_settings, bus=bus, known_agents=[w.agent_name for w in workers])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))

    def shut_down() -> None:
        server.should_exit = True
        for worker in workers:
            worker.stop()

    # uvicorn handles SIGINT/SIGTERM while it serves, then re-raises them: this handler takes them
    # then, so workers drain instead of the process dying on the default action.
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, shut_down)

    settle_heap()
    tasks = [asyncio.create_task(w.run(), name=f"worker:{w.agent_name}") for w in workers]
    names = ", ".join(w.agent_name for w in workers)
    log.info(
        "magent2 up: http://%s:%d serving %s (%s bus)",
        host,
        port,
        names,
        "redis" if redis_url else "in-memory",
    )
    serving = asyncio.create_task(server.serve(sockets=[sock]), name="gateway")
    try:
        while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn has no "started" event
            await asyncio.sleep(0.01)
        if server.started:
            print(
                f"magent2 is up on http://{host}:{port} — agents: {names}\n"
                f"  console http://{host}:{port}/ui/ · API docs http://{host}:{port}/docs · "
                "`magent2 client` or `magent2 tui` to chat",
                flush=True,
            )
            if started is not None:
                started.set()
        await serving
    finally:
        shut_down()
        await asyncio.gather(*tasks, return_exceptions=True)
        for worker in workers:
            await worker.runner.aclose()
        await bus.close()
