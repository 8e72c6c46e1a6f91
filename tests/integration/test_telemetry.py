"""OpenTelemetry end to end: a gateway and a worker process export OTLP/HTTP to a real receiver in
the test (it decodes the protobuf it gets). One trace covers send -> queue wait -> run -> model call
and tool call, with ids as attributes and no secrets, prompts or tool arguments."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from magent2.bus import RedisStreamsBus
from tests.support import (
    SCRIPTED,
    eventually,
    free_port,
    running,
    serve_app,
    spawn,
    wait_for_outputs,
    wait_http,
)

pytestmark = pytest.mark.e2e

SECRET = "sk-secret-never-exported"


def _value(any_value: Any) -> Any:
    return getattr(any_value, any_value.WhichOneof("value")) if any_value.WhichOneof("value") else None


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    spans: list[dict[str, Any]] = []

    async def traces(request: Request) -> Response:
        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.body())
        for resource_spans in export.resource_spans:
            service = {a.key: _value(a.value) for a in resource_spans.resource.attributes}["service.name"]
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    spans.append(
                        {
                            "service": service,
                            "name": span.name,
                            "trace": span.trace_id.hex(),
                            "id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex(),
                            "attributes": {a.key: _value(a.value) for a in span.attributes},
                        }
                    )
        return Response(b"", media_type="application/x-protobuf")

    async with serve_app(Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])])) as url:
        yield url, spans


async def test_one_trace_from_send_to_the_tool_call_across_processes(
    receiver: tuple[str, list[dict[str, Any]]], redis_url: str
) -> None:
    url, spans = receiver
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": url, "OTEL_BSP_SCHEDULE_DELAY": "100", "REDIS_URL": redis_url}
    worker_env = {
        **otel,
        "AGENT_NAME": "Traced",
        **SCRIPTED,
        "AGENT_TOOLS": "terminal",
        "TERMINAL_ALLOWED_COMMANDS": "echo",
        "OPENAI_API_KEY": SECRET,
    }
    port = free_port()
    conversation = f"t-{uuid.uuid4().hex[:8]}"
    bus = RedisStreamsBus(redis_url)
    with (
        running(spawn(["magent2.worker"], **worker_env)),
        running(spawn(["magent2.gateway"], **otel, GATEWAY_PORT=str(port))),
    ):
        wait_http(f"http://127.0.0.1:{port}/health")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:

            async def known() -> bool:
                return "Traced" in (await http.get("/agents")).text

            await eventually(known, timeout=30, what="the worker")
            body = {"conversation_id": conversation, "sender": "user:t", "recipient": "agent:Traced"}
            sent = await http.post(
                "/send", json=body | {"content": 'call terminal {"command": "echo traced-arg"}'}
            )
            message_id = sent.json()["id"]
            await wait_for_outputs(bus, conversation, 1, timeout=30)

        def names() -> set[str]:
            return {span["name"] for span in spans}

        wanted = {
            "magent2.send",
            "magent2.queue_wait",
            "magent2.run",
            "agents.function terminal",
            "agents.generation",
        }
        await eventually(lambda: wanted <= names(), timeout=20, what=f"spans {wanted} (got {names()})")
    await bus.close()
    send = next(s for s in spans if s["name"] == "magent2.send")
    in_trace = [s for s in spans if s["trace"] == send["trace"]]
    assert wanted <= {s["name"] for s in in_trace}  # one trace, across both processes
    by_id = {s["id"]: s for s in in_trace}
    run = next(s for s in in_trace if s["name"] == "magent2.run")
    assert (
        run["parent"] == send["id"]
        and run["service"] == "magent2-worker"
        and send["service"] == "magent2-gateway"
    )
    tool = next(s for s in in_trace if s["name"] == "agents.function terminal")
    ancestor = tool
    while ancestor["parent"] in by_id and ancestor["name"] != "magent2.run":
        ancestor = by_id[ancestor["parent"]]
    assert ancestor["name"] == "magent2.run"  # the tool call sits under the run
    for span in (send, run):
        assert span["attributes"]["magent2.message_id"] == message_id
        assert span["attributes"]["magent2.conversation_id"] == conversation
    generation = next(s for s in in_trace if s["name"] == "agents.generation")
    assert generation["attributes"]["agents.span_type"] == "generation"
    everything = repr(spans)
    assert SECRET not in everything and "traced-arg" not in everything  # no key, no tool arguments


def test_model_spans_carry_the_model_and_token_counts_only() -> None:
    from agents.tracing.span_data import FunctionSpanData, GenerationSpanData

    from magent2.telemetry import _safe_attributes

    generation = GenerationSpanData(
        input=[{"role": "user", "content": "a secret prompt"}],
        output=[{"content": "an answer"}],
        model="gpt-test",
        usage={"input_tokens": 12, "output_tokens": 5},
    )
    assert _safe_attributes(generation) == {
        "agents.span_type": "generation",
        "gen_ai.request.model": "gpt-test",
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 5,
    }
    tool = FunctionSpanData(name="terminal", input='{"command": "cat /etc/secret"}', output="s3cret")
    assert _safe_attributes(tool) == {"agents.span_type": "function", "agents.name": "terminal"}
