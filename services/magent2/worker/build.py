"""Assemble a worker from settings: bus, runner (echo or Agents SDK) and sessions.

The Agents SDK is imported only when a model is configured: it takes over a second to import,
which echo workers and the gateway need not pay."""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from magent2 import telemetry
from magent2.bus import Bus, Keys, RedisStreamsBus
from magent2.contracts import LITELLM_PREFIX, AgentCard
from magent2.settings import WorkerSettings
from magent2.worker.metrics import WorkerMetrics
from magent2.worker.runner import EchoRunner, Runner
from magent2.worker.worker import Worker

if TYPE_CHECKING:
    from magent2.worker.sessions import SessionFactory

log = logging.getLogger("magent2.worker")


def build_sessions(settings: WorkerSettings, bus: Bus) -> SessionFactory:
    from magent2.worker.sessions import redis_sessions, sqlite_sessions

    if isinstance(bus, RedisStreamsBus):
        return redis_sessions(bus.wire, prefix=settings.bus_prefix, ttl_s=settings.events_ttl_seconds)
    return sqlite_sessions(settings.agent_session_path)


def build_runner(settings: WorkerSettings, bus: Bus) -> Runner:
    litellm = settings.agent_model.startswith(LITELLM_PREFIX)
    if (
        settings.openai_api_key is None
        and settings.openai_base_url is None
        and not settings.agent_model_factory
        and not litellm
    ):
        log.info("no OPENAI_API_KEY: %s answers with the echo runner", settings.agent_name)
        return EchoRunner(settings.echo_token_delay_seconds)
    from agents import Agent, ModelSettings, RunConfig

    from magent2.tools.registry import build_toolset, terminal_policy
    from magent2.worker.sdk_runner import AgentsSdkRunner, build_litellm_model, build_model, http_client

    http = None
    if settings.agent_model_factory:
        model = load_model_factory(settings.agent_model_factory)(settings.agent_model)
    elif litellm:
        model = build_litellm_model(
            settings.agent_model.removeprefix(LITELLM_PREFIX),
            api_key=settings.litellm_api_key.get_secret_value() if settings.litellm_api_key else None,
            base_url=settings.litellm_base_url,
        )
        log.info("%s: model %s through LiteLLM", settings.agent_name, settings.agent_model)
    else:
        http = http_client(settings.openai_http_client)
        model = build_model(
            settings.agent_model,
            api_key=settings.openai_api_key.get_secret_value() if settings.openai_api_key else "unused",
            base_url=settings.openai_base_url,
            api=settings.model_api,
            http=http,
        )
        log.info(
            "%s: model %s through the %s API (%s)",
            settings.agent_name,
            settings.agent_model,
            settings.model_api,
            settings.openai_http_client,
        )
    if telemetry.enabled():  # the SDK's spans join the run's OpenTelemetry trace
        telemetry.bridge_sdk_spans(keep_openai_upload=settings.openai_tracing)
    toolset = build_toolset(settings, bus)
    log.info("%s tools: %s", settings.agent_name, ", ".join(toolset.names) or "none")
    agent: Agent[Any] = Agent(
        name=settings.agent_name,
        instructions=settings.instructions,
        model=model,
        model_settings=ModelSettings(temperature=settings.agent_temperature),
        tools=toolset.function_tools,
        mcp_servers=toolset.mcp_servers,
    )
    return AgentsSdkRunner(
        agent,
        build_sessions(settings, bus),
        max_turns=settings.agent_max_turns,
        redact=terminal_policy(settings).redact,
        run_config=RunConfig(tracing_disabled=not (settings.openai_tracing or telemetry.enabled())),
        http=http,
        max_input_chars=settings.max_input_chars,
    )


def load_model_factory(path: str) -> Any:
    """AGENT_MODEL_FACTORY=package.module:callable — a callable taking the model name and returning
    an Agents SDK `Model` (a custom provider, or a scripted model in tests)."""
    module_name, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def build_worker(settings: WorkerSettings, bus: Bus, runner: Runner) -> Worker:
    return Worker(
        bus,
        runner,
        agent_name=settings.agent_name,
        keys=Keys(settings.bus_prefix),
        concurrency=settings.agent_concurrency,
        visibility_timeout_s=settings.visibility_timeout_seconds,
        shutdown_grace_s=settings.shutdown_grace_seconds,
        max_attempts=settings.max_attempts,
        max_deliveries=settings.max_deliveries,
        events_ttl_s=settings.events_ttl_seconds,
        card=AgentCard(on_new_message=settings.agent_on_new_message),
        metrics=WorkerMetrics(model="echo" if isinstance(runner, EchoRunner) else settings.agent_model),
        approval_timeout_s=settings.agent_approval_timeout_seconds,
        approval_on_timeout=settings.agent_approval_on_timeout,
    )
