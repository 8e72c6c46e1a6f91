"""Agents known to the bus (one inbox each)."""

from __future__ import annotations

from fastapi import APIRouter

from magent2.gateway.deps import Authorized, BusDep, KeysDep

router = APIRouter(prefix="/agents", tags=["agents"], dependencies=Authorized)


@router.get("")
async def agents(bus: BusDep, keys: KeysDep) -> dict[str, list[dict[str, str]]]:
    inboxes = await bus.streams(keys.inbox_prefix)
    return {"agents": [{"name": i.removeprefix(keys.inbox_prefix), "inbox": i} for i in inboxes]}
