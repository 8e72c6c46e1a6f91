"""fan_out / fan_in: split a task into child conversations for an agent, then gather their outcomes.

Each child is a conversation of its own (linked to its parent in the observer's graph) whose
envelope names a done topic; the worker that finishes the child publishes a `done` signal with
its outcome in the same atomic completion as the final event (`child_done`), so fan_in sees every
child exactly once, whichever worker ran it and whenever the waiting starts."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Sequence
from typing import Any

from agents import RunContextWrapper, function_tool

from magent2.bus import Bus, Keys, Publication
from magent2.bus.delivery import deliver
from magent2.contracts import (
    AGENT_NAME_PATTERN,
    SIGNAL_TOPIC_PATTERN,
    CancelledEvent,
    ChildOutcome,
    ChildStatus,
    ErrorEvent,
    MessageEnvelope,
    OutputEvent,
    Signal,
    parse_event,
)
from magent2.observer.index import PARENT, ObserverIndex
from magent2.tools.chat import HOPS, next_hop
from magent2.tools.output import as_json

DONE_TOPIC = "done_topic"  # envelope metadata of a child: where its outcome is signalled
MAX_WAIT_S = 600.0


class FanOut:
    def __init__(
        self,
        bus: Bus,
        keys: Keys,
        agent_name: str,
        *,
        index: ObserverIndex,
        max_hops: int,
        max_children: int,
        events_ttl_s: int | None,
    ) -> None:
        self.bus, self.keys, self.agent_name, self.index = bus, keys, agent_name, index
        self.max_hops, self.max_children, self.events_ttl_s = max_hops, max_children, events_ttl_s

    async def fan_out(
        self,
        current: MessageEnvelope | None,
        agent: str,
        tasks: Sequence[str],
        responsibilities: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        name = agent.removeprefix("agent:")
        if not re.fullmatch(AGENT_NAME_PATTERN, name):
            return {"started": False, "error": f"invalid agent name {agent!r}"}
        if not tasks or any(not task.strip() for task in tasks):
            return {"started": False, "error": "give at least one task, none of them empty"}
        if len(tasks) > self.max_children:
            return {"started": False, "error": f"{len(tasks)} tasks; at most {self.max_children} at once"}
        if responsibilities is not None and len(responsibilities) != len(tasks):
            return {"started": False, "error": "give one responsibility per task, or none"}
        hops = next_hop(current)
        if hops > self.max_hops:
            return {"started": False, "error": f"hop limit reached ({self.max_hops}); not fanning out"}
        group = uuid.uuid4().hex[:12]
        children = []
        for n, task in enumerate(tasks):
            responsibility = responsibilities[n] if responsibilities else ""
            envelope = MessageEnvelope(
                conversation_id=f"fanout-{group}-{n}",
                sender=f"agent:{self.agent_name}",
                recipient=f"agent:{name}",
                content=f"Your responsibility: {responsibility}\n\n{task}" if responsibility else task,
                metadata={
                    HOPS: hops,
                    "origin_message_id": current.id if current else None,
                    PARENT: current.conversation_id if current else None,
                    DONE_TOPIC: f"fanout/{group}/{n}",
                    "responsibility": responsibility,
                    "fanout": {"group": group, "index": n, "of": len(tasks)},
                },
            )
            await deliver(
                self.bus,
                self.keys,
                envelope,
                events_ttl_s=self.events_ttl_s,
                index=self.index.updates(envelope),
            )
            children.append(
                {
                    "conversation_id": envelope.conversation_id,
                    "message_id": envelope.id,
                    "done_topic": envelope.metadata[DONE_TOPIC],
                }
            )
        return {"started": True, "agent": name, "children": children}

    async def fan_in(self, done_topics: Sequence[str], timeout_s: float = 120.0) -> dict[str, Any]:
        """Every child's outcome, waiting up to `timeout_s` for the last one."""
        bad = [topic for topic in done_topics if not re.fullmatch(SIGNAL_TOPIC_PATTERN, topic)]
        if bad or not done_topics:
            return {"complete": False, "error": f"give the done_topic of each child (invalid: {bad})"}
        streams = {self.keys.signal(topic): topic for topic in done_topics}
        outcomes: dict[str, ChildOutcome] = {}
        deadline = time.monotonic() + min(max(timeout_s, 0.0), MAX_WAIT_S)
        while len(outcomes) < len(streams):
            left_ms = int((deadline - time.monotonic()) * 1000)
            waiting = {stream: "0-0" for stream in streams if streams[stream] not in outcomes}
            found = await self.bus.read_many(
                waiting, count=1, block_ms=max(left_ms, 1) if left_ms > 0 else None
            )
            for stream, [first, *_] in found.items():
                signal = Signal.model_validate_json(first.payload)
                outcomes[streams[stream]] = ChildOutcome.model_validate_json(signal.payload)
            if left_ms <= 0:
                break
        results = [
            {"done_topic": topic, **outcomes[topic].model_dump(mode="json")}
            for topic in done_topics
            if topic in outcomes
        ]
        missing = [topic for topic in done_topics if topic not in outcomes]
        result: dict[str, Any] = {"complete": not missing, "results": results}
        if missing:
            result.update(missing=missing, error=f"{len(missing)} child(ren) not done within {timeout_s:g}s")
        return result


def child_done(
    keys: Keys, envelope: MessageEnvelope, published: Sequence[Publication], ttl_s: int | None
) -> list[Publication]:
    """The done signal of a fan-out child, from the final event among its completion's
    publications; nothing for any other message."""
    topic = envelope.metadata.get(DONE_TOPIC)
    if not isinstance(topic, str) or not re.fullmatch(SIGNAL_TOPIC_PATTERN, topic):
        return []
    events = keys.events(envelope.conversation_id)
    for payload in reversed([p for pub in published if pub.stream == events for p in pub.payloads]):
        event = parse_event(payload)
        if (
            not isinstance(event, OutputEvent | ErrorEvent | CancelledEvent)
            or event.message_id != envelope.id
        ):
            continue
        if isinstance(event, OutputEvent):
            outcome = _outcome(envelope, "done", event.text)
        elif isinstance(event, ErrorEvent):
            outcome = _outcome(envelope, "error", event.message)
        else:
            outcome = _outcome(envelope, "cancelled", event.partial_text)
        signal = Signal(topic=topic, sender=envelope.recipient, payload=outcome.to_json())
        return [Publication(keys.signal(topic), [signal.to_json()], ttl_s)]
    return []


def _outcome(envelope: MessageEnvelope, status: ChildStatus, output: str) -> ChildOutcome:
    return ChildOutcome(
        conversation_id=envelope.conversation_id, message_id=envelope.id, status=status, output=output
    )


def fanout_tools(fanout: FanOut) -> list[Any]:
    @function_tool
    async def fan_out(
        ctx: RunContextWrapper[Any], agent: str, tasks: list[str], responsibilities: list[str] | None = None
    ) -> str:
        """Split work into parallel child conversations, one per task, each run by `agent`.
        Returns each child's conversation_id and done_topic; pass the done_topics to fan_in.

        Args:
            agent: the agent that runs every task (may be this agent itself).
            tasks: one instruction per child.
            responsibilities: optionally, one short role per task, told to its child.
        """
        current = ctx.context if isinstance(ctx.context, MessageEnvelope) else None
        return as_json(await fanout.fan_out(current, agent, tasks, responsibilities))

    @function_tool
    async def fan_in(done_topics: list[str], timeout_s: float = 120.0) -> str:
        """Wait for child conversations started by fan_out and return each one's outcome
        (status done, error or cancelled, and its output).

        Args:
            done_topics: the done_topic of each child, as fan_out returned them.
            timeout_s: how long to wait for the last child, in seconds (at most 600).
        """
        return as_json(await fanout.fan_in(done_topics, timeout_s))

    return [fan_out, fan_in]
