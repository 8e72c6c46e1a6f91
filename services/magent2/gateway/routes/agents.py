"""Agents known to the bus (one inbox each)."""

from __future__ import annotations

from fastapi import APIRouter

from magent2.gateway.deps import Authorized, GatewayDep

router = APIRouter(prefix="/agents", tags=["agents"], dependencies=Authorized)


@router.get("")
async def agents(gateway: GatewayDep) -> dict[str, list[dict[str, str]]]:
    keys = gateway.keys
    inboxes = await gateway.bus.streams(keys.inbox_prefix)
    return {"agents": [{"name": i.removeprefix(keys.inbox_prefix), "inbox": i} for i in inboxes]}
