"""Reading the observer's index and the bus for the observer API: conversations (newest first),
one conversation with its events, who talked to whom, and each agent's live queue."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from magent2.bus import START, Bus, Keys
from magent2.bus.api import GROUP, QueueHealth, parse_id
from magent2.contracts import AgentCard, PendingApproval
from magent2.observer.index import CHILD, EDGE
from magent2.observer.models import (
    AgentStatus,
    ConversationDetail,
    ConversationPage,
    ConversationStatus,
    ConversationSummary,
    Graph,
    GraphEdge,
    GraphNode,
    StoredEvent,
)

ALIVE_WITHIN_MS = 10_000  # a worker reads its inbox at least every second while it runs
GRAPH_MAX_CONVERSATIONS = 50  # a conversation and its descendants, breadth first


def _edges(tally: dict[str, str]) -> dict[tuple[str, str], int]:
    found = {}
    for name, count in tally.items():
        if name.startswith(EDGE):
            sender, _, recipient = name.removeprefix(EDGE).partition(">")
            found[(sender, recipient)] = int(count)
    return found


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _from_ms(ms: int) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, UTC) if ms else None


@dataclass(frozen=True)
class QueueFacts:
    """An agent's queue: its inbox's consumer group, approvals waiting, dead letters."""

    health: QueueHealth
    awaiting_approval: int
    dead_letters: int


async def queue_facts(bus: Bus, keys: Keys, agent: str) -> QueueFacts:
    health, waiting, dead = await asyncio.gather(
        bus.queue_health(keys.inbox(agent), GROUP),
        bus.ranked_count(keys.approvals_due(agent)),
        bus.length(keys.dead_letters(agent)),
    )
    return QueueFacts(health, waiting, dead)


class Observer:
    def __init__(self, bus: Bus, keys: Keys) -> None:
        self.bus, self.keys = bus, keys

    async def conversations(self, *, limit: int, before: float | None = None) -> ConversationPage:
        ranked = await self.bus.ranked(self.keys.conversations(), below=before, limit=limit)
        found = await asyncio.gather(*(self.summary(conversation) for conversation, _ in ranked))
        # a conversation whose record expired before the ranking forgot it is left out
        return ConversationPage(
            conversations=[summary for summary in found if summary is not None],
            next_before=ranked[-1][1] if len(ranked) == limit else None,
        )

    async def summary(self, conversation_id: str) -> ConversationSummary | None:
        tally = await self.bus.tally(self.keys.conversation(conversation_id))
        if not tally:
            return None
        edges = _edges(tally)
        agents = sorted({p.removeprefix("agent:") for e in edges for p in e if p.startswith("agent:")})
        status, last_event = await asyncio.gather(
            self._status(conversation_id, agents), self.bus.last_id(self.keys.events(conversation_id))
        )
        last_activity = max(
            filter(None, [_when(tally.get("last_activity")), _from_ms(parse_id(last_event)[0])]), default=None
        )
        return ConversationSummary(
            id=conversation_id,
            agents=agents,
            messages=int(tally.get("messages", 0)),
            created_at=_when(tally.get("created_at")),
            last_activity=last_activity,
            status=status,
            parent=tally.get("parent"),
            children=sorted(
                (n.removeprefix(CHILD) for n in tally if n.startswith(CHILD)), key=lambda c: tally[CHILD + c]
            ),
        )

    async def _status(self, conversation_id: str, agents: list[str]) -> ConversationStatus:
        raw = await self.bus.get_value(self.keys.approval(conversation_id))
        if raw is not None and PendingApproval.model_validate_json(raw).resumed is None:
            return "awaiting_approval"
        unfinished = await asyncio.gather(
            *(self.bus.unfinished(self.keys.inbox(agent), conversation_id) for agent in agents)
        )
        return "running" if any(unfinished) else "idle"

    async def conversation(
        self, conversation_id: str, *, after: str = START, limit: int = 100
    ) -> ConversationDetail | None:
        summary = await self.summary(conversation_id)
        if summary is None:
            return None
        stored = await self.bus.read(self.keys.events(conversation_id), after, count=limit)
        return ConversationDetail(
            **summary.model_dump(),
            events=[StoredEvent(cursor=m.id, event=json.loads(m.payload)) for m in stored],
            next_cursor=stored[-1].id if len(stored) == limit else None,
        )

    async def graph(self, conversation_id: str) -> Graph | None:
        """Who talked to whom in the conversation and the child conversations started from it."""
        tally = await self.bus.tally(self.keys.conversation(conversation_id))
        if not tally:
            return None
        edges: dict[tuple[str, str], int] = {}
        visited, queue = [conversation_id], [tally]
        while queue:
            current = queue.pop(0)
            for pair, count in _edges(current).items():
                edges[pair] = edges.get(pair, 0) + count
            children = [n.removeprefix(CHILD) for n in current if n.startswith(CHILD)]
            children = [c for c in children if c not in visited][: GRAPH_MAX_CONVERSATIONS - len(visited)]
            visited += children
            tallies = await asyncio.gather(*(self.bus.tally(self.keys.conversation(c)) for c in children))
            queue += [t for t in tallies if t]
        participants = sorted({p for pair in edges for p in pair})
        return Graph(
            conversation_id=conversation_id,
            nodes=[GraphNode(id=p, kind="agent" if p.startswith("agent:") else "user") for p in participants],
            edges=[GraphEdge(from_=a, to=b, messages=n) for (a, b), n in sorted(edges.items())],
            conversations=visited,
        )

    async def agents(self) -> list[AgentStatus]:
        inboxes = await self.bus.streams(self.keys.inbox_prefix)
        return list(
            await asyncio.gather(*(self.agent(i.removeprefix(self.keys.inbox_prefix)) for i in inboxes))
        )

    async def agent(self, name: str) -> AgentStatus:
        queue, card = await asyncio.gather(
            queue_facts(self.bus, self.keys, name), self.bus.get_value(self.keys.agent_card(name))
        )
        health = queue.health
        return AgentStatus(
            name=name,
            inbox=self.keys.inbox(name),
            workers_alive=sum(1 for c in health.consumers if c.idle_ms < ALIVE_WITHIN_MS),
            backlog=health.backlog,
            in_flight=health.in_flight,
            oldest_pending_seconds=round(health.oldest_pending_s, 3),
            awaiting_approval=queue.awaiting_approval,
            dead_letters=queue.dead_letters,
            last_activity=_from_ms(health.last_entry_ms),
            on_new_message=(AgentCard.model_validate_json(card) if card else AgentCard()).on_new_message,
        )
