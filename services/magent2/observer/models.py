"""Response models of the observer API (`/conversations`, `/graph`, `/agents`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

ConversationStatus = Literal["running", "idle", "awaiting_approval"]


class ConversationSummary(BaseModel):
    id: str
    agents: list[str] = Field(description="Agents that sent or received a message in it")
    messages: int = Field(description="Messages accepted into it (sends and agent-to-agent hops)")
    created_at: datetime | None
    last_activity: datetime | None = Field(description="Its last message or event")
    status: ConversationStatus
    parent: str | None = Field(default=None, description="The conversation that started this one")
    children: list[str] = Field(default_factory=list, description="Conversations started from it")


class ConversationPage(BaseModel):
    conversations: list[ConversationSummary]
    next_before: float | None = Field(
        default=None, description="Pass as ?before= for the next (older) page; null on the last one"
    )


class StoredEvent(BaseModel):
    cursor: str
    event: dict[str, Any]


class ConversationDetail(ConversationSummary):
    events: list[StoredEvent]
    next_cursor: str | None = Field(
        default=None, description="Pass as ?after= for the next page of events; null when read to the end"
    )


class GraphNode(BaseModel):
    id: str = Field(examples=["user:alice", "agent:DevAgent"])
    kind: Literal["user", "agent"]


class GraphEdge(BaseModel):
    from_: str = Field(alias="from", serialization_alias="from")
    to: str
    messages: int

    model_config = {"populate_by_name": True}


class Graph(BaseModel):
    conversation_id: str
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    conversations: list[str] = Field(description="This conversation and the child conversations included")


class AgentStatus(BaseModel):
    name: str
    inbox: str
    workers_alive: int = Field(description="Workers that read the inbox within the last 10 s")
    backlog: int = Field(description="Messages not yet delivered to any worker")
    in_flight: int = Field(description="Messages delivered and running (not yet acked)")
    oldest_pending_seconds: float
    awaiting_approval: int = Field(description="Conversations paused until a person decides")
    dead_letters: int
    last_activity: datetime | None = Field(description="When its inbox last received a message")
    on_new_message: str


class AgentList(BaseModel):
    agents: list[AgentStatus]
