"""`Runner` on the OpenAI Agents SDK: `Runner.run_streamed`, its events mapped to ours."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import openai
from agents import Agent, MaxTurnsExceeded, RunConfig, RunContextWrapper, RunState
from agents import Runner as SdkRunner
from agents.exceptions import AgentsException, ModelBehaviorError
from agents.items import ToolCallItem, ToolCallOutputItem
from agents.models.interface import Model
from agents.stream_events import RawResponsesStreamEvent, RunItemStreamEvent
from agents.stream_events import StreamEvent as SdkEvent

from magent2.contracts import (
    ApprovalCall,
    MessageEnvelope,
    OpenAIApi,
    OpenAIHttpClient,
    OutputEvent,
    PendingApproval,
    StreamEvent,
    TokenEvent,
    ToolStepEvent,
)
from magent2.startup import StartupError
from magent2.tools.redaction import Redactor
from magent2.worker.runner import RunFailed, RunPaused
from magent2.worker.sessions import SessionFactory

log = logging.getLogger("magent2.worker")

SUMMARY_CHARS = 300

# openai errors worth another attempt with the same input
_RETRYABLE = (
    openai.APIConnectionError,
    openai.APITimeoutError,
    openai.RateLimitError,
    openai.InternalServerError,
)


def http_client(kind: OpenAIHttpClient) -> Any:
    """The HTTP client under the OpenAI client, with the OpenAI client's own defaults. aiohttp
    spends ~20-30% less CPU per streamed delta than httpx here (`python -m bench.llm`)."""
    return openai.DefaultAioHttpClient() if kind == "aiohttp" else openai.DefaultAsyncHttpxClient()


def build_model(
    name: str, *, api_key: str | None, base_url: str | None, api: OpenAIApi, http: Any = None
) -> Model:
    """The model through the OpenAI API `api` (Responses or Chat Completions); `http` from
    `http_client` (None: the OpenAI client's default, httpx)."""
    from agents import OpenAIChatCompletionsModel, OpenAIResponsesModel

    client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url or None, http_client=http)
    if api == "chat_completions":
        return OpenAIChatCompletionsModel(model=name, openai_client=client)
    return OpenAIResponsesModel(model=name, openai_client=client)


def build_litellm_model(name: str, *, api_key: str | None, base_url: str | None) -> Model:
    """`<provider>/<model>` through LiteLLM (Anthropic, Gemini, Bedrock, Ollama, …)."""
    # LiteLLM would fetch its model price list from the internet at import: use its bundled copy.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        from agents.extensions.models.litellm_model import LitellmModel
    except ImportError:
        raise StartupError(
            f"AGENT_MODEL litellm/{name} needs LiteLLM: pip install 'magent2[litellm]' "
            "(the worker image has it)"
        ) from None
    return LitellmModel(model=name, api_key=api_key, base_url=base_url or None)


def summarize(value: Any, limit: int = SUMMARY_CHARS) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class AgentsSdkRunner:
    def __init__(
        self,
        agent: Agent[Any],
        sessions: SessionFactory,
        *,
        max_turns: int = 10,
        run_config: RunConfig | None = None,
        redact: Callable[[str], str] | None = None,
        http: Any = None,
        max_input_chars: int | None = None,
    ) -> None:
        self.agent, self.sessions, self.max_turns = agent, sessions, max_turns
        self.http = http  # the model's HTTP client, closed with the runner
        self.max_input_chars = max_input_chars
        # tool_step events go to every client of the conversation: secrets never ride along
        self.redact = redact or Redactor.build()
        self.run_config = run_config or RunConfig()
        self._connected = False
        self._connecting = asyncio.Lock()

    async def _connect_mcp_servers(self) -> None:
        """Start the agent's MCP servers before its first run (they are supervised: one that fails
        to start is retried in the background and its tools fail until it is up)."""
        async with self._connecting:
            if self._connected:
                return
            for server in self.agent.mcp_servers:
                try:
                    await server.connect()  # type: ignore[no-untyped-call]
                except Exception as exc:
                    log.warning("MCP server %s is not up yet: %s", server.name, exc)
            self._connected = True

    async def run(
        self, envelope: MessageEnvelope, resume: PendingApproval | None = None
    ) -> AsyncIterator[StreamEvent]:
        if not self._connected:
            await self._connect_mcp_servers()
        conversation = envelope.conversation_id
        size = len(envelope.content)
        if resume is None and self.max_input_chars is not None and size > self.max_input_chars:
            # Checked before the SDK starts: an SDK input guardrail runs beside the first model
            # call, which is then paid for, and costs ~2 ms of CPU per run even when it passes.
            raise RunFailed(
                f"input rejected: {size} characters, over the limit of {self.max_input_chars} "
                "(AGENT_MAX_INPUT_CHARS)",
                retryable=False,
            )
        start: str | RunState[Any, Any] = envelope.content
        if resume is not None:
            start = await self._decided(resume, envelope)
        result = SdkRunner.run_streamed(
            self.agent,
            start,
            context=envelope,
            max_turns=self.max_turns,
            session=self.sessions(conversation),
            run_config=self.run_config,
        )
        tools = _ToolSteps(conversation, self.redact)
        for call in resume.calls if resume else ():  # started in the paused run; they run now
            tools.started[call.call_id] = (call.tool, time.perf_counter())
        index = 0
        try:
            async for sdk_event in result.stream_events():
                if (token := _token_text(sdk_event)) is not None:
                    yield TokenEvent(conversation_id=conversation, text=token, index=index)
                    index += 1
                elif (step := tools.step(sdk_event)) is not None:
                    yield step
        except MaxTurnsExceeded as exc:
            raise RunFailed(f"max turns ({self.max_turns}) exceeded", retryable=False) from exc
        except _RETRYABLE as exc:
            raise RunFailed(f"model unavailable: {exc}", retryable=True) from exc
        except (openai.APIError, ModelBehaviorError, AgentsException) as exc:
            raise RunFailed(f"model error: {exc}", retryable=False) from exc
        finally:
            if not result.is_complete:  # we stopped early (cancelled): so does the model call
                result.cancel()
        if result.interruptions:
            calls = [self._approval_call(item) for item in result.interruptions]
            # The context (the envelope) is not kept: resuming puts the resume envelope there.
            raise RunPaused(result.to_state().to_string(context_serializer=lambda _: {}), calls)
        usage = result.context_wrapper.usage
        yield OutputEvent(
            conversation_id=conversation,
            text=str(result.final_output or ""),
            message_id=envelope.id,
            usage={
                "requests": usage.requests,
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "total_tokens": usage.total_tokens,
            },
        )

    async def _decided(self, paused: PendingApproval, envelope: MessageEnvelope) -> RunState[Any, Any]:
        """The paused run's state with every call approved or rejected as decided."""
        state = await RunState.from_string(
            self.agent, paused.state, context_override=RunContextWrapper(context=envelope)
        )
        for item in state.get_interruptions():
            call_id = _call_id(item.raw_item)
            decision = paused.decisions.get(call_id)
            if decision is not None and decision.decision == "approve":
                state.approve(item)
            else:
                reason = decision.reason if decision and decision.reason else "no reason given"
                by = "timed out" if decision and decision.by == "timeout" else "rejected by a person"
                state.reject(item, rejection_message=f"The tool call was {by}: {reason}")
        return state

    def _approval_call(self, item: Any) -> ApprovalCall:
        raw = item.raw_item
        return ApprovalCall(
            call_id=_call_id(raw),
            tool=str(_field(raw, "name") or getattr(item, "tool_name", None) or "tool"),
            arguments=_redact_values(_parse_args(_field(raw, "arguments")), self.redact),
        )

    async def aclose(self) -> None:
        for server in self.agent.mcp_servers:
            with contextlib.suppress(Exception):
                await server.cleanup()  # type: ignore[no-untyped-call]
        if self.http is not None:
            await self.http.aclose()


def _token_text(event: SdkEvent) -> str | None:
    if isinstance(event, RawResponsesStreamEvent) and event.data.type == "response.output_text.delta":
        return str(event.data.delta)
    return None


TOOL_ERROR_PREFIX = "An error occurred while running the tool"


class _ToolSteps:
    """Turns tool_called / tool_output items into start and success|error tool_step events."""

    def __init__(self, conversation_id: str, redact: Callable[[str], str]) -> None:
        self.conversation_id, self.redact = conversation_id, redact
        self.started: dict[str, tuple[str, float]] = {}

    def step(self, event: SdkEvent) -> ToolStepEvent | None:
        if not isinstance(event, RunItemStreamEvent):
            return None
        item = event.item
        if isinstance(item, ToolCallItem):
            raw = item.raw_item
            call_id = _call_id(raw)
            name = str(_field(raw, "name") or "tool")
            self.started[call_id] = (name, time.perf_counter())
            return ToolStepEvent(
                conversation_id=self.conversation_id,
                name=name,
                args=_redact_values(_parse_args(_field(raw, "arguments")), self.redact),
                status="start",
                tool_call_id=call_id,
            )
        if isinstance(item, ToolCallOutputItem):
            call_id = str(_field(item.raw_item, "call_id") or "")
            name, began = self.started.pop(call_id, ("tool", time.perf_counter()))
            error = _tool_error(item.output)
            return ToolStepEvent(
                conversation_id=self.conversation_id,
                name=name,
                status="error" if error else "success",
                result_summary=None if error else self.redact(summarize(item.output)),
                error=self.redact(error) if error else None,
                duration_ms=round((time.perf_counter() - began) * 1000, 3),
                tool_call_id=call_id,
            )
        return None


def _redact_values(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redact_values(item, redact) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact_values(item, redact) for item in value]
    return value


def _field(raw: Any, name: str) -> Any:
    return raw.get(name) if isinstance(raw, dict) else getattr(raw, name, None)


def _call_id(raw: Any) -> str:
    return str(_field(raw, "call_id") or _field(raw, "id") or "")


def _parse_args(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, str):
        try:
            parsed = json.loads(arguments or "{}")
        except json.JSONDecodeError:
            return {"raw": arguments}
        return parsed if isinstance(parsed, dict) else {"value": parsed}
    return arguments if isinstance(arguments, dict) else {}


def _tool_error(output: Any) -> str | None:
    """Tools report failure as {"error": ...} (as JSON text, see tools/output.py); the SDK's own
    handler as a fixed sentence."""
    if isinstance(output, str):
        if output.startswith(TOOL_ERROR_PREFIX):
            return summarize(output)
        if output.startswith("{"):
            with contextlib.suppress(ValueError):
                output = json.loads(output)
    if isinstance(output, dict) and output.get("error"):
        return summarize(output["error"])
    return None
