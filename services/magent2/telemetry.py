"""OpenTelemetry for the gateway and the workers, configured only by the standard OTEL_* variables
(off unless OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set): a `send`
span in the gateway whose context travels in the envelope's metadata (`traceparent`), the queue
wait and the run in the worker, and the Agents SDK's own spans (model calls, tool calls) bridged
into the same trace. Attributes carry ids, names, models and token counts; never prompts, tool
arguments or results."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import context, trace
from opentelemetry.trace import Span, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from magent2.contracts import MessageEnvelope

TRACEPARENT = "traceparent"  # envelope metadata key (W3C Trace Context)
_propagator = TraceContextTextMapPropagator()
_tracer = trace.get_tracer("magent2")
_on = False  # set by `setup`: without an exporter the hot paths skip tracing entirely


def enabled() -> bool:
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def setup(service: str) -> bool:
    """Export spans over OTLP/HTTP when an OTLP endpoint is configured; whether it is."""
    global _on
    if not enabled():
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or f"magent2-{service}"})
    provider = TracerProvider(resource=resource)  # flushed at exit
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _on = True
    return True


def _attributes(envelope: MessageEnvelope) -> dict[str, str]:
    return {
        "magent2.conversation_id": envelope.conversation_id,
        "magent2.message_id": envelope.id,
        "magent2.agent": envelope.agent_name,
        "magent2.sender": envelope.sender,
    }


@contextmanager
def send_span(envelope: MessageEnvelope) -> Iterator[None]:
    """The gateway's acceptance of a message; its context goes into the envelope's metadata."""
    if not _on:
        yield
        return
    with _tracer.start_as_current_span(
        "magent2.send", kind=trace.SpanKind.PRODUCER, attributes=_attributes(envelope)
    ):
        carrier: dict[str, str] = {}
        _propagator.inject(carrier)
        if TRACEPARENT in carrier:
            envelope.metadata[TRACEPARENT] = carrier[TRACEPARENT]
        yield


@contextmanager
def run_span(envelope: MessageEnvelope, *, accepted_ms: int) -> Iterator[None]:
    """The worker's run of a message, in the sender's trace, after a span for its wait in the queue."""
    if not _on:
        yield
        return
    traceparent = envelope.metadata.get(TRACEPARENT)
    parent = _propagator.extract({TRACEPARENT: traceparent}) if isinstance(traceparent, str) else None
    attributes = _attributes(envelope)
    waited = _tracer.start_span(
        "magent2.queue_wait", context=parent, attributes=attributes, start_time=accepted_ms * 1_000_000
    )
    waited.end()
    with _tracer.start_as_current_span(
        "magent2.run", context=parent, kind=trace.SpanKind.CONSUMER, attributes=attributes
    ):
        yield


class SdkSpans:
    """An Agents SDK trace processor that re-creates the SDK's spans (agent, model calls, tool
    calls, guardrails) as OpenTelemetry spans under the current run span."""

    def __init__(self) -> None:
        self._open: dict[str, tuple[Span, Any]] = {}

    def on_trace_start(self, trace_: Any) -> None:
        return None

    def on_trace_end(self, trace_: Any) -> None:
        return None

    def on_span_start(self, span: Any) -> None:
        parent = self._open.get(span.parent_id) if span.parent_id else None
        ctx = trace.set_span_in_context(parent[0]) if parent else context.get_current()
        data = span.span_data
        name = f"agents.{data.type}" + (
            f" {getattr(data, 'name', '')}" if getattr(data, "name", None) else ""
        )
        otel = _tracer.start_span(name, context=ctx, start_time=time.time_ns())
        self._open[span.span_id] = (otel, data)

    def on_span_end(self, span: Any) -> None:
        found = self._open.pop(span.span_id, None)
        if found is None:
            return
        otel, data = found
        for key, value in _safe_attributes(data).items():
            otel.set_attribute(key, value)
        if span.error:
            otel.set_status(Status(StatusCode.ERROR, str(span.error.get("message", "error"))))
        otel.end()

    def shutdown(self) -> None:
        return None

    def force_flush(self) -> None:
        return None


def _safe_attributes(data: Any) -> dict[str, Any]:
    """Names, models and token counts of an SDK span: nothing a user or a tool wrote."""
    found: dict[str, Any] = {"agents.span_type": data.type}
    if getattr(data, "name", None):
        found["agents.name"] = str(data.name)
    model = getattr(data, "model", None)
    response = getattr(data, "response", None)
    if model is None and response is not None:
        model = getattr(response, "model", None)
    if model:
        found["gen_ai.request.model"] = str(model)
    usage = getattr(data, "usage", None) or (
        getattr(response, "usage", None) if response is not None else None
    )
    for ours, theirs in (
        ("input_tokens", "gen_ai.usage.input_tokens"),
        ("output_tokens", "gen_ai.usage.output_tokens"),
    ):
        count = usage.get(ours) if isinstance(usage, dict) else getattr(usage, ours, None)
        if isinstance(count, int):
            found[theirs] = count
    return found


def bridge_sdk_spans(*, keep_openai_upload: bool) -> None:
    """Send the SDK's spans to OpenTelemetry; its upload to OpenAI only when asked for."""
    from agents.tracing import add_trace_processor, set_trace_processors

    if keep_openai_upload:
        add_trace_processor(SdkSpans())  # type: ignore[arg-type]
    else:
        set_trace_processors([SdkSpans()])  # type: ignore[list-item]
