"""The observer API: recent conversations, one conversation with its events, and its graph of
who talked to whom."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query

from magent2.bus import START
from magent2.contracts import CONVERSATION_ID_PATTERN
from magent2.gateway.deps import Authorized, GatewayDep
from magent2.gateway.problems import invalid_cursor
from magent2.observer.models import ConversationDetail, ConversationPage, Graph

router = APIRouter(tags=["observer"], dependencies=Authorized)

ConversationId = Annotated[str, Path(pattern=CONVERSATION_ID_PATTERN)]


def _unknown(conversation_id: str) -> HTTPException:
    return HTTPException(
        404, f"no conversation {conversation_id!r} in the index (never used, or older than its TTL)"
    )


@router.get("/conversations", response_model=ConversationPage)
async def conversations(
    gateway: GatewayDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[float | None, Query(description="`next_before` of the previous page")] = None,
) -> ConversationPage:
    """Recent conversations, newest message first."""
    return await gateway.observer.conversations(limit=limit, before=before)


@router.get("/conversations/{conversation_id}", response_model=ConversationDetail)
async def conversation(
    conversation_id: ConversationId,
    gateway: GatewayDep,
    after: Annotated[str, Query(description="Events after this cursor (`next_cursor`)")] = START,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ConversationDetail:
    """The conversation's summary and its stored events, oldest first, paged by cursor."""
    if (problem := invalid_cursor(after)) is not None:
        raise HTTPException(400, problem)
    found = await gateway.observer.conversation(conversation_id, after=after, limit=limit)
    if found is None:
        raise _unknown(conversation_id)
    return found


@router.get("/graph/{conversation_id}", response_model=Graph, response_model_by_alias=True)
async def graph(conversation_id: ConversationId, gateway: GatewayDep) -> Graph:
    """Who talked to whom: users and agents as nodes, messages as edges, including agent-to-agent
    hops and the child conversations started from it (fan-out)."""
    found = await gateway.observer.graph(conversation_id)
    if found is None:
        raise _unknown(conversation_id)
    return found
