"""Agents known to the bus (one inbox each), with their live queue: workers alive, backlog,
runs in flight, approvals waiting, dead letters."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path

from magent2.contracts import AGENT_NAME_PATTERN
from magent2.gateway.deps import Authorized, GatewayDep
from magent2.observer.models import AgentList, AgentStatus

router = APIRouter(prefix="/agents", tags=["agents"], dependencies=Authorized)


@router.get("", response_model=AgentList)
async def agents(gateway: GatewayDep) -> AgentList:
    return AgentList(agents=await gateway.observer.agents())


@router.get("/{name}", response_model=AgentStatus)
async def agent(name: Annotated[str, Path(pattern=AGENT_NAME_PATTERN)], gateway: GatewayDep) -> AgentStatus:
    if not await gateway.bus.exists(gateway.keys.inbox(name)):
        raise HTTPException(404, f"unknown agent {name!r}: no worker of it has started")
    return await gateway.observer.agent(name)
